"""Shared fixtures: one development certificate set per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.certs import ensure_dev_certs


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    ensure_dev_certs(directory)
    return directory
