"""Shared fixtures: one development certificate set per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

from bridge.certs import ensure_dev_certs

# Property tests assert on results, never on time: a loaded CI machine must not fail one with
# hypothesis's per-example deadline (200 ms), as happened to the diff and render properties.
settings.register_profile("bridge", deadline=None)
settings.load_profile("bridge")


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    ensure_dev_certs(directory)
    return directory
