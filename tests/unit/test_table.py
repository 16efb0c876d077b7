"""The route table: first match wins on the normalised path; `describe` is `bridge check`'s."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from bridge.routing.config import load_config, parse_config
from bridge.routing.model import Route
from bridge.routing.paths import normalize_path
from bridge.routing.table import RouteTable, describe

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """\
listen:
  https: "[::1]:8443"
  http: "127.0.0.1:8080"
  admin: "127.0.0.1:9901"
tls: {cert: /etc/c.pem, key: /etc/k.pem}
access_log: {path: /var/log/bridge.log, format: json}
limits: {max_snapshot: 2MB, keepalive_timeout: 90s, max_connections: 10}
upstreams:
  app: {url: "http://127.0.0.1:9000"}
  api: {url: "http://10.0.0.2:8000/v1", timeout: 250ms, host: upstream}
routes:
  - path: /prices/latest
    upstream: app
  - path: /prices/{symbol}
    stream: {upstream: api, poll: "/prices?s={symbol}", every: 2s, event: price}
  - path: /feed
    upstream: app
    stream:
      upstream: api
      poll: /feed
      longpoll: {cursor: seq, param: since}
      emit: patch
      protocols: [sse]
      vary: [Authorization]
      send: /feed/post
  - path: /
    upstream: app
    push: [/a.css, /a.js]
  - path: /page
    upstream: app
    push: auto
  - path: /admin/{rest*}
    upstream: api
  - path: /{rest*}
    upstream: app
"""


@pytest.fixture(scope="module")
def table() -> RouteTable:
    return RouteTable.from_config(parse_config(CONFIG, "/etc/bridge/routes.yaml"))


@pytest.mark.parametrize(
    "path,index,params",
    [
        ("/prices/ACME", 1, {"symbol": "ACME"}),
        # The literal route comes first, so it wins over the parameter one below it.
        ("/prices/latest", 0, {}),
        ("/prices/latest2", 1, {"symbol": "latest2"}),
        ("/prices/a%2Fb", 1, {"symbol": "a/b"}),
        ("/prices", 6, {"rest": "prices"}),
        ("/prices/a/b", 6, {"rest": "prices/a/b"}),
        ("/feed", 2, {}),
        ("/feed/", 6, {"rest": "feed/"}),
        ("/", 3, {}),
        ("/page", 4, {}),
        ("/admin", 5, {"rest": ""}),
        ("/admin/", 5, {"rest": ""}),
        ("/admin/users/1", 5, {"rest": "users/1"}),
        ("/administrator", 6, {"rest": "administrator"}),
        ("/Admin/x", 6, {"rest": "Admin/x"}),
    ],
)
def test_first_match_wins(table: RouteTable, path: str, index: int, params: dict[str, str]) -> None:
    found = table.match(path)
    assert found is not None
    route, got = found
    assert (route.index, got) == (index, params)


@pytest.mark.parametrize(
    "raw,index",
    [
        ("/static/../admin/x", 5),
        ("/%61dmin/x", 5),
        ("//admin//x", 5),
        ("/prices/%2e/ACME", 1),
    ],
)
def test_matching_happens_on_the_normalised_path(table: RouteTable, raw: str, index: int) -> None:
    found = table.match(normalize_path(raw))
    assert found is not None and found[0].index == index


def test_no_match() -> None:
    table = RouteTable(
        [
            Route(index=0, path="/a/{x}", line=1, upstream=None, params=("x",)),
            Route(index=1, path="/b", line=2, upstream=None),
        ]
    )
    assert len(table) == 2
    assert table.match("/") is None
    assert table.match("/a") is None
    assert table.match("/b/") is None
    assert table.match("/a/1") == (table.routes[0], {"x": "1"})


def test_describe_prints_the_whole_table() -> None:
    config = parse_config(CONFIG, "/etc/bridge/routes.yaml")
    assert describe(config) == textwrap.dedent(
        """\
        listeners:
          https  [::1]:8443
          http   127.0.0.1:8080  (redirect)
          admin  127.0.0.1:9901
        tls: /etc/c.pem, /etc/k.pem
        access log: /var/log/bridge.log (json)
        limits: max_connections 10, keepalive_timeout 90s, max_snapshot 2MB
        upstreams:
          app  http://127.0.0.1:9000  timeout 10s  host client
          api  http://10.0.0.2:8000/v1  timeout 250ms  host upstream
        routes:
           0  /prices/latest    proxy   app
           1  /prices/{symbol}  stream  api /prices?s={symbol}  every 2s  emit snapshot  event price  [sse,websocket]  query reads none; ignores none
           2  /feed             stream  api /feed  longpoll since=seq 30s  emit patch  event message  [sse]  vary authorization  send /feed/post  query reads since; ignores none  else proxy app
           3  /                 proxy   app  push /a.css, /a.js
           4  /page             proxy   app  push auto
           5  /admin/{rest*}    proxy   api
           6  /{rest*}          proxy   app"""
    )


def test_describe_the_repository_example() -> None:
    text = describe(load_config(ROOT / "routes.yaml"))
    lines = text.splitlines()
    assert lines[:5] == [
        "listeners:",
        "  https  0.0.0.0:8443",
        "  http3  0.0.0.0:8443  (UDP + QUIC, HTTP/3; advertised with Alt-Svc)",
        "  http   0.0.0.0:8080  (redirect)",
        "  admin  127.0.0.1:9901",
    ]
    assert "limits:" not in text  # the example spells out the defaults
    routes = lines[lines.index("routes:") + 1 :]
    assert [line.split()[:3] for line in routes] == [
        ["0", "/prices/{symbol}", "stream"],
        ["1", "/updates", "stream"],
        ["2", "/", "proxy"],
        ["3", "/{rest*}", "proxy"],
    ]
    assert "every 1s" in routes[0] and "longpoll since=seq 30s" in routes[1]
    assert routes[2].endswith("push /static/app.css, /static/app.js")
