"""End to end, each test that speaks HTTP/2 runs on both HTTP/2 engines (tests/conftest.py
`h2_engine`, `wants_engines`): found from its source, so a new HTTP/2 test needs no marker."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _engine(h2_engine: str) -> str:
    return h2_engine
