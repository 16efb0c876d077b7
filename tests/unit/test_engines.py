"""`engines:` in routes.yaml, and which HTTP/2 engine runs: nghttp2 by default when the pinned
ngh2 is installed, h2 otherwise (said once in the log), and what `bridge check` prints."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bridge.errors import ConfigError
from bridge.protocol import h2shim, http2, ngh2shim
from bridge.protocol.http2 import Http2Protocol, engine_factory, engine_in_use
from bridge.routing.config import parse_config
from bridge.routing.model import Engines
from bridge.server.context import ServerContext
from bridge.settings import Limits

ROOT = Path(__file__).resolve().parents[2]
BASE = """\
listen: {http: ":8080"}
upstreams: {app: {url: "http://127.0.0.1:9000"}}
routes: [{path: /, upstream: app}]
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + textwrap.dedent(text), "r.yaml")
    return [str(p).removeprefix("r.yaml:") for p in info.value.problems]


def test_engines_default_to_nghttp2_and_aioquic() -> None:
    assert parse_config(BASE).engines == Engines(http2="nghttp2", http3="aioquic")


def test_h2_can_be_chosen() -> None:
    config = parse_config(BASE + "engines: {http2: h2}\n")
    assert config.engines == Engines(http2="h2", http3="aioquic")


def test_unknown_engines_are_refused_with_the_choices() -> None:
    assert problems_of("engines: {http2: hyper}\n") == [
        '4:18: engines.http2: expected one of nghttp2, h2, got "hyper"'
    ]
    assert problems_of("engines: {http3: qh3}\n") == [
        "4:18: engines.http3: qh3 is not accepted yet: it does not pass bridge's HTTP/3 suite"
        " (docs/performance.md, HTTP/3 engines); use aioquic"
    ]
    (problem,) = problems_of("engines: {http1: httptools}\n")
    assert 'unknown key "http1"' in problem


def test_nghttp2_runs_where_the_pinned_ngh2_is_installed() -> None:
    assert ngh2shim.unusable() is None
    assert engine_in_use("nghttp2") == ("nghttp2", None)
    assert engine_in_use("h2") == ("h2", None)
    assert engine_factory("nghttp2") is ngh2shim.NghttpEngine
    assert engine_factory("h2") is h2shim.H2Engine


def test_another_ngh2_version_falls_back_to_h2_and_says_so_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ngh2shim, "version", lambda name: "0.4.0")
    monkeypatch.setattr(http2, "_warned", set())
    problem = ngh2shim.unusable()
    assert problem == "ngh2 0.4.0 is installed, bridge is tested with ngh2 0.3.0"
    name, why = engine_in_use("nghttp2")
    assert name == "h2" and why is not None and problem in why
    with caplog.at_level(logging.WARNING, logger="bridge.http2"):
        for _ in range(3):
            assert engine_factory("nghttp2") is h2shim.H2Engine
            ServerContext(limits=Limits(), handler=None, access_log=None)  # type: ignore[arg-type]
    fallbacks = [r for r in caplog.records if "runs on the h2 engine" in r.getMessage()]
    assert len(fallbacks) == 1
    assert "0.4.0" in fallbacks[0].getMessage()


def test_no_ngh2_at_all_falls_back_to_h2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ngh2shim, "ngh2", None)
    assert ngh2shim.unusable() == "ngh2 is not installed"
    assert engine_in_use("nghttp2")[0] == "h2"


def test_the_context_gives_connections_the_configured_engine() -> None:
    ctx = ServerContext(limits=Limits(), handler=None, access_log=None, h2_engine="h2")  # type: ignore[arg-type]
    assert ctx.h2_engine is h2shim.H2Engine
    assert ServerContext(limits=Limits(), handler=None, access_log=None).h2_engine is (  # type: ignore[arg-type]
        ngh2shim.NghttpEngine
    )
    adapter = Http2Protocol(scheme="https", engine=ctx.h2_engine)
    assert adapter.data_to_send().startswith(b"\x00\x00")  # the server's SETTINGS


def test_check_prints_the_engine_in_use(tmp_path: Path) -> None:
    path = tmp_path / "routes.yaml"
    for written, shown in (
        ("", "engines: http2 nghttp2, http3 aioquic"),
        ("engines: {http2: h2}\n", "engines: http2 h2, http3 aioquic"),
    ):
        path.write_text(BASE + written)
        out = subprocess.run(
            [sys.executable, "-m", "bridge", "check", "-c", str(path)],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        assert shown in out.splitlines()
        printed = subprocess.run(
            [sys.executable, "-m", "bridge", "check", "-c", str(path), "--print"],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        engine = shown.split()[2].rstrip(",")
        assert f"engines:\n  http2: {engine}\n  http3: aioquic\n" in printed
