"""Shared fixtures: one development certificate set per test session, and the HTTP/2 engine.

`h2_engine` runs a test once per HTTP/2 engine (nghttp2, h2): the protocol tests take it for
every test of a module (`pytestmark = pytest.mark.usefixtures("h2_engine")`); end-to-end, every
test that speaks HTTP/2 gets it (tests/e2e/conftest.py). The engine is chosen where bridge
chooses it: `Http2Protocol`'s default engine in memory, `engines.http2` for a running bridge.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from bridge.certs import ensure_dev_certs
from bridge.protocol import h2shim, http2, ngh2shim
from bridge.protocol.h2engine import H2, NGHTTP2, EngineFactory
from tests.support import harness

H2_ENGINES = (NGHTTP2, H2)
# What an HTTP/2 test's body contains: a client asked for h2, or h2's own client objects.
_HTTP2_SIGNS = ("http2=True", "H2Sse", "h2.", "H2Client", "h2ws", '"h2"', "--http2", "nghttp")
_FACTORIES: dict[str, EngineFactory] = {NGHTTP2: ngh2shim.NghttpEngine, H2: h2shim.H2Engine}

# Property tests assert on results, never on time: a loaded CI machine must not fail one with
# hypothesis's per-example deadline (200 ms), as happened to the diff and render properties.
settings.register_profile("bridge", deadline=None)
settings.load_profile("bridge")


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("certs")
    ensure_dev_certs(directory)
    return directory


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "h2_engine" in metafunc.fixturenames and wants_engines(metafunc):
        metafunc.parametrize("h2_engine", H2_ENGINES, indirect=True)


def wants_engines(metafunc: pytest.Metafunc) -> bool:
    """Protocol modules ask for the fixture outright; end to end (where every test has it,
    tests/e2e/conftest.py), the tests whose source speaks HTTP/2."""
    if "e2e" not in Path(metafunc.definition.path).parts:
        return True
    try:
        source = inspect.getsource(metafunc.function)
    except (OSError, TypeError):
        return False
    return any(sign in source for sign in _HTTP2_SIGNS)


@pytest.fixture
def h2_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name: str | None = getattr(request, "param", None)
    if name is None:  # a test that does not speak HTTP/2: bridge's default, untouched
        yield NGHTTP2
        return
    if ngh2shim.unusable() is not None and name == NGHTTP2:
        pytest.fail(f"the nghttp2 engine cannot run here: {ngh2shim.unusable()}")
    factory = _FACTORIES[name]
    monkeypatch.setattr(http2, "engine_factory", lambda asked=NGHTTP2: factory)
    monkeypatch.setattr(harness, "H2_ENGINE", name)
    yield name
