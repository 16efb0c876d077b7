"""`bridge check --print`: the effective configuration, printed as routes.yaml text that loads
back to the same `Config`, with every default filled in and secrets masked."""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from bridge.routing.config import parse_config
from bridge.routing.model import SECRET, Config, Expanded, written_as
from bridge.routing.printer import MASKED, dump, render, section
from bridge.settings import Limits
from tests.support.harness import config_text
from tests.unit.test_config import FULL, MINIMAL

ROOT = Path(__file__).resolve().parents[2]
ROUTE = "routes: [{path: /, upstream: app}]\n"
MERGED = """\
routes:
  - path: /a/{id}
    stream: &live {upstream: app, poll: "/api/a/{id}", every: 2s, emit: patch, heartbeat: 5s}
  - path: /b
    stream:
      <<: *live
      poll: /api/b
      every: 500ms
      protocols: [sse]
"""
BROKER = """\
broker: "redis://cache.internal:6380/3?lease=750ms"
limits: {header_timeout: 1.25s, keepalive_timeout: 90m, shutdown_grace: 0.3333s}
"""


def e2e_config(module: str, name: str = "ROUTES") -> str:
    """An end-to-end test's routes in the harness's config (`tests/support/harness.py`)."""
    routes = getattr(importlib.import_module(f"tests.e2e.{module}"), name)
    return config_text(
        routes,
        upstream_url="http://127.0.0.1:9000",
        certs=Path("/etc/certs"),
        extra_listen='admin: "127.0.0.1:0"',
        http3=True,
    )


FIXTURES = {
    "full": FULL,
    "minimal": MINIMAL + ROUTE,
    "merged": MINIMAL + MERGED,
    "broker": MINIMAL + ROUTE + BROKER,
    **{
        f"e2e-{module}": e2e_config(f"test_{module}")
        for module in ("admin", "push", "proxy", "websocket", "stream_edges", "hardening")
    },
    "e2e-reload": e2e_config("test_reload", "BEFORE"),
    "routes.yaml": (ROOT / "routes.yaml").read_text(),
}


def comparable(config: Config) -> Config:
    """`config` without what depends on where it was written: the file's name, its warnings
    and each route's line."""
    routes = tuple(dataclasses.replace(route, line=0) for route in config.routes)
    return dataclasses.replace(config, source=Path("-"), warnings=(), routes=routes)


@pytest.mark.parametrize("name", FIXTURES)
def test_printed_config_loads_back_to_the_same_config(tmp_path: Path, name: str) -> None:
    original = parse_config(FIXTURES[name], tmp_path / "routes.yaml")
    printed = render(original)
    again = parse_config(printed, tmp_path / "printed.yaml")
    assert comparable(again) == comparable(original), printed
    assert again.warnings == (), "a filled-in default the loader warns about"
    assert render(again).split("\n", 2)[2] == printed.split("\n", 2)[2]  # a fixed point


def test_every_key_of_every_section_is_printed_with_its_default() -> None:
    printed = yaml.safe_load(render(parse_config(MINIMAL + ROUTE, "r.yaml")))
    assert printed["limits"] == {
        "max_connections": 20000,
        "max_subscribers": 20000,
        "max_subscribers_per_stream": 20000,
        "header_timeout": "10s",
        "tls_handshake_timeout": "10s",
        "keepalive_timeout": "75s",
        "max_request_body": "10MB",
        "max_ws_message": "1MB",
        "max_snapshot": "1MB",
        "subscriber_buffer": "256KB",
        "h2_max_concurrent_streams": 128,
        "max_channels_per_route": 1000,
        "shutdown_grace": "10s",
    }
    assert set(printed["limits"]) == {f.name for f in dataclasses.fields(Limits)}
    assert printed["listen"] == {"http": ":8080", "http_mode": "redirect", "admin_public": False}
    assert printed["access_log"] == {"path": "-", "format": "combined"}
    assert printed["tls"] == {}  # no files: the development certificate
    assert printed["upstreams"] == {
        "app": {"url": "http://127.0.0.1:9000", "timeout": "10s", "host": "client"}
    }
    assert printed["routes"] == [{"path": "/", "upstream": "app", "push": []}]
    assert printed["broker"] == "memory"


def test_a_stream_block_prints_every_default() -> None:
    stream = "routes: [{path: /s, stream: {upstream: app, poll: /api/s, every: 250ms}}]\n"
    printed = yaml.safe_load(render(parse_config(MINIMAL + stream, "r.yaml")))
    assert printed["routes"] == [
        {
            "path": "/s",
            "stream": {
                "upstream": "app",
                "poll": "/api/s",
                "every": "250ms",
                "emit": "snapshot",
                "event": "message",
                "protocols": ["sse", "websocket"],
                "vary": [],
                "history": 100,
                "heartbeat": "15s",
                "ws_format": "envelope",
                "origins": [],
                "ignore_query": [],
            },
        }
    ]


def test_values_print_in_the_files_own_units() -> None:
    printed = render(parse_config(MINIMAL + ROUTE + BROKER, "r.yaml"))
    assert "header_timeout: 1.25s\n" in printed
    assert "keepalive_timeout: 90m\n" in printed
    assert "shutdown_grace: 0.3333s\n" in printed
    assert "broker: redis://cache.internal:6380/3?lease=750ms\n" in printed
    assert 'http: ":8080"\n' in printed
    printed = render(parse_config(FULL, "r.yaml"))
    assert 'http: "[::1]:8080"\n' in printed
    assert "protocols: [websocket]\n" in printed
    assert "push: auto\n" in printed


def test_relative_paths_stay_relative_to_the_config_folder(tmp_path: Path) -> None:
    config = parse_config(FULL, tmp_path / "routes.yaml")
    printed = yaml.safe_load(render(config))
    assert printed["tls"] == {"cert": "certs/server.crt", "key": "/etc/bridge/server.key"}
    assert printed["access_log"]["path"] == "logs/access.log"
    outside = parse_config(FULL.replace("logs/access.log", "../x.log"), tmp_path / "routes.yaml")
    assert yaml.safe_load(render(outside))["access_log"]["path"] == "../x.log"  # as written


def test_defaults_that_mean_nothing_there_are_left_out() -> None:
    """Written out, they would draw the loader's "has no effect" warnings."""
    text = """\
listen: {https: ":8443"}
upstreams: {app: {url: "http://127.0.0.1:9000"}}
routes: [{path: /s, stream: {upstream: app, poll: /api/s, every: 1s, protocols: [sse]}}]
"""
    printed = yaml.safe_load(render(parse_config(text, "r.yaml")))
    assert "http_mode" not in printed["listen"]
    assert "ws_format" not in printed["routes"][0]["stream"]
    assert "origins" not in printed["routes"][0]["stream"]
    assert "push" not in printed["routes"][0]  # a stream-only route has no page to push for


def test_a_broker_password_is_masked() -> None:
    config = parse_config(MINIMAL + ROUTE + 'broker: "redis://:hunter2@cache:6379/0"', "r.yaml")
    printed = render(config)
    assert "hunter2" not in printed
    assert f"broker: redis://:{MASKED}@cache:6379/0?lease=5s\n" in printed
    parse_config(printed, "r.yaml")  # still a config the loader accepts


@dataclass(frozen=True)
class Notify:
    """A section with a secret, as `notify:` (docs/configuration.md) will be."""

    token: str = field(metadata=SECRET)
    header: str = "Bridge-Notify"
    headers: dict[str, str] = field(default_factory=dict, metadata=written_as("add") | SECRET)


def test_a_secret_field_prints_masked_and_a_reference_as_written() -> None:
    literal = section(Notify(token="s3cret", headers={"Authorization": "Bearer s3cret"}), ROOT)
    assert literal == {
        "token": MASKED,
        "header": "Bridge-Notify",
        "add": {"Authorization": MASKED},  # names are shown, values are not
    }
    token = Expanded("s3cret", "${BRIDGE_NOTIFY_TOKEN}")
    bearer = Expanded("Bearer s3cret", "Bearer ${APP_TOKEN}")
    referenced = section(Notify(token=token, headers={"Authorization": bearer}), ROOT)
    assert referenced["token"] == "${BRIDGE_NOTIFY_TOKEN}"
    assert referenced["add"] == {"Authorization": "Bearer ${APP_TOKEN}"}
    assert "s3cret" not in dump(referenced) + dump(literal)
    # A reference prints as written in any field, secret or not: the value never shows.
    event = Expanded("price", "${EVENT}")
    assert section(Notify(token="x", header=event), ROOT)["header"] == "${EVENT}"
