"""routes.yaml loading: every field of docs/configuration.md, and every mistake reported as file:line:col."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from bridge.errors import ConfigError
from bridge.routing.config import load_config, parse_config
from bridge.routing.model import (
    AccessLogConfig,
    Config,
    Listen,
    LongPoll,
    Route,
    StreamSpec,
    TlsConfig,
    Upstream,
    keys,
)
from bridge.routing.units import (
    format_duration,
    normalize_origin,
    parse_address,
    parse_duration,
    parse_size,
)
from bridge.settings import Limits

ROOT = Path(__file__).resolve().parents[2]
KB, MB, GB = 1024, 1024**2, 1024**3

MINIMAL = """\
listen: {http: ":8080"}
upstreams: {app: {url: "http://127.0.0.1:9000"}}
"""


def write(tmp_path: Path, text: str, name: str = "routes.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path | str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p) for p in info.value.problems]


def problems_of(text: str) -> list[str]:
    """Messages (without the file prefix) for a config given as text."""
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), "r.yaml")
    return [str(p).removeprefix("r.yaml:") for p in info.value.problems]


FULL = """\
listen:
  https: "0.0.0.0:8443"
  http3: "0.0.0.0:8443"
  http: "[::1]:8080"
  http_mode: serve
  admin: "127.0.0.1:9901"
tls:
  cert: certs/server.crt
  key: /etc/bridge/server.key
access_log:
  path: logs/access.log
  format: json
limits:
  max_connections: 100
  max_subscribers: 200
  max_subscribers_per_stream: 50
  header_timeout: 250ms
  tls_handshake_timeout: 1.5s
  keepalive_timeout: 2m
  max_request_body: 100B
  max_ws_message: 512KB
  max_snapshot: 1GB
  subscriber_buffer: 10MB
  h2_max_concurrent_streams: 64
upstreams:
  app:
    url: "http://127.0.0.1:9000"
    timeout: 1h
    host: upstream
  legacy:
    url: "http://Legacy.internal/base/"
routes:
  - path: /prices/{symbol}
    upstream: legacy
    stream:
      upstream: app
      poll: /api/prices?symbol={symbol}
      every: 1s
      emit: merge
      event: price
      protocols: [websocket]
      vary: [Authorization, X-User]
      history: 0
      heartbeat: 5s
      send: /api/orders/{symbol}
      ws_format: raw
      origins: ["HTTPS://App.Example.com:443", "http://localhost:3000", "http://[::1]:80"]
  - path: /updates
    stream:
      upstream: app
      poll: /api/updates
      longpoll: {cursor: meta.seq, param: since, timeout: 20s}
  - path: /
    upstream: app
    push: [/static/app.css, "/static/app.js?v=2"]
  - path: /auto
    upstream: app
    push: auto
  - path: /{rest*}
    upstream: legacy
"""


def test_every_field_loads_to_the_expected_dataclasses(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    config = load_config(path, check_files=False)  # its files are the subject of other tests
    app = Upstream(
        "app", "http://127.0.0.1:9000", "http", "127.0.0.1", 9000, "", 3600.0, "upstream"
    )
    legacy = Upstream(
        "legacy", "http://Legacy.internal/base/", "http", "legacy.internal", 80, "/base", 10.0
    )
    expected = Config(
        source=path,
        listen=Listen(
            https=("0.0.0.0", 8443),
            http3=("0.0.0.0", 8443),
            http=("::1", 8080),
            http_mode="serve",
            admin=("127.0.0.1", 9901),
        ),
        tls=TlsConfig(cert=tmp_path / "certs/server.crt", key=Path("/etc/bridge/server.key")),
        access_log=AccessLogConfig(path=str(tmp_path / "logs/access.log"), format="json"),
        limits=Limits(
            max_connections=100,
            max_subscribers=200,
            max_subscribers_per_stream=50,
            header_timeout=0.25,
            tls_handshake_timeout=1.5,
            keepalive_timeout=120.0,
            max_request_body=100,
            max_ws_message=512 * KB,
            max_snapshot=GB,
            subscriber_buffer=10 * MB,
            h2_max_concurrent_streams=64,
        ),
        upstreams={"app": app, "legacy": legacy},
        routes=(
            Route(
                index=0,
                path="/prices/{symbol}",
                line=33,
                upstream=legacy,
                stream=StreamSpec(
                    upstream=app,
                    poll="/api/prices?symbol={symbol}",
                    every=1.0,
                    longpoll=None,
                    emit="merge",
                    event="price",
                    protocols=frozenset({"websocket"}),
                    vary=("authorization", "x-user"),
                    history=0,
                    heartbeat=5.0,
                    send="/api/orders/{symbol}",
                    ws_format="raw",
                    origins=("https://app.example.com", "http://localhost:3000", "http://[::1]"),
                ),
                params=("symbol",),
            ),
            Route(
                index=1,
                path="/updates",
                line=48,
                upstream=None,
                stream=StreamSpec(
                    upstream=app,
                    poll="/api/updates",
                    every=None,
                    longpoll=LongPoll(cursor="meta.seq", param="since", timeout=20.0),
                ),
            ),
            Route(
                index=2,
                path="/",
                line=53,
                upstream=app,
                push=("/static/app.css", "/static/app.js?v=2"),
            ),
            Route(index=3, path="/auto", line=56, upstream=app, push_auto=True),
            Route(index=4, path="/{rest*}", line=59, upstream=legacy, params=("rest",)),
        ),
    )
    assert config == expected
    # The defaults of a stream block are docs/configuration.md's.
    spec = config.routes[1].stream
    assert spec is not None
    assert (spec.emit, spec.event, spec.protocols, spec.vary) == (
        "snapshot",
        "message",
        frozenset({"sse", "websocket"}),
        (),
    )
    assert (spec.history, spec.heartbeat, spec.send, spec.ws_format, spec.origins) == (
        100,
        15.0,
        None,
        "envelope",
        (),
    )


def test_optional_sections_default(tmp_path: Path) -> None:
    config = load_config(
        write(tmp_path, MINIMAL + "tls:\nlimits:\nroutes: [{path: /, upstream: app}]\n")
    )
    assert config.listen == Listen(http=("", 8080))
    assert config.tls == TlsConfig()
    assert config.access_log == AccessLogConfig(path="-", format="combined")
    assert config.limits == Limits()
    assert config.upstreams["app"].timeout == 10.0
    assert config.upstreams["app"].host_mode == "client"


SECTIONS = [  # where a section is written, its model, and a file with "bogus: 1" in it
    ("", Config, "bogus: 1\n" + MINIMAL + "routes: [{path: /, upstream: app}]\n"),
    ("listen", Listen, MINIMAL + "routes: [{path: /, upstream: app}]\n"),
    ("tls", TlsConfig, MINIMAL + "tls: {bogus: 1}\nroutes: [{path: /, upstream: app}]\n"),
    (
        "access_log",
        AccessLogConfig,
        MINIMAL + "access_log: {bogus: 1}\nroutes: [{path: /, upstream: app}]\n",
    ),
    ("limits", Limits, MINIMAL + "limits: {bogus: 1}\nroutes: [{path: /, upstream: app}]\n"),
    (
        "upstreams.app",
        Upstream,
        'listen: {http: ":8080"}\nupstreams: {app: {url: "http://a", bogus: 1}}\n'
        "routes: [{path: /, upstream: app}]\n",
    ),
    ("routes[0]", Route, MINIMAL + "routes: [{path: /, upstream: app, bogus: 1}]\n"),
    (
        "routes[0].stream",
        StreamSpec,
        MINIMAL + "routes: [{path: /, stream: {upstream: app, poll: /, every: 1s, bogus: 1}}]\n",
    ),
    (
        "routes[0].stream.longpoll",
        LongPoll,
        MINIMAL + "routes: [{path: /, stream: {upstream: app, poll: /,"
        " longpoll: {cursor: c, param: p, bogus: 1}}}]\n",
    ),
]


@pytest.mark.parametrize(
    ("where", "section", "text"), SECTIONS, ids=[s[0] or "top" for s in SECTIONS]
)
def test_a_sections_keys_are_its_model_fields(where: str, section: type, text: str) -> None:
    """The schema takes a section's keys from its dataclass (`keys`), so a field added there
    is a key the file may write, and nothing else is."""
    if where == "listen":
        text = text.replace('{http: ":8080"}', '{http: ":8080", bogus: 1}')
    (problem,) = problems_of(text)
    known = ", ".join(sorted(keys(section)))
    what = 'unknown key "bogus"' if where else 'unknown top-level key "bogus"'
    assert problem.endswith(f"{where}: {what} (expected one of: {known})".lstrip(": "))


def test_what_a_file_leaves_out_is_its_model_default() -> None:
    """Each default is stated once, on the dataclass: the loader passes only what is written."""
    config = parse_config(
        MINIMAL
        + "routes: [{path: /, stream: {upstream: app, poll: /, longpoll: {cursor: c, param: p}}}]"
    )
    stream = config.routes[0].stream
    assert stream is not None and stream.longpoll is not None
    for instance in (config.listen, config.upstreams["app"], stream, stream.longpoll):
        for field in dataclasses.fields(instance):
            if field.default is not dataclasses.MISSING and field.name not in ("http", "longpoll"):
                assert getattr(instance, field.name) == field.default, field.name


def test_repository_routes_yaml_loads_with_every_field() -> None:
    config = load_config(ROOT / "routes.yaml")
    assert config.listen.https == ("0.0.0.0", 8443)
    assert config.listen.http3 == ("0.0.0.0", 8443)  # UDP: it may share the TCP port
    assert config.listen.http == ("0.0.0.0", 8080)
    assert config.listen.http_mode == "redirect"
    assert config.listen.admin == ("127.0.0.1", 9901)
    assert config.tls == TlsConfig()  # omitted: the development certificate in certs/
    assert config.limits == Limits()  # the example spells out every default
    app = config.upstreams["app"]
    assert (app.host, app.port, app.timeout, app.host_mode) == ("127.0.0.1", 9000, 10.0, "client")
    prices, updates, page, rest = config.routes
    assert prices.path == "/prices/{symbol}" and prices.stream is not None
    assert (prices.stream.poll, prices.stream.every) == ("/api/prices?symbol={symbol}", 1.0)
    assert updates.path == "/updates" and updates.stream is not None
    assert updates.stream.longpoll == LongPoll(cursor="seq", param="since", timeout=30.0)
    assert updates.stream.emit == "patch"
    assert page.path == "/" and page.push == ("/static/app.css", "/static/app.js")
    assert rest.path == "/{rest*}" and rest.upstream is app and rest.stream is None


MISTAKES = """\
listen:
  https: "127.0.0.1:99999"
  http: "localhost:8080"
  bogus: 1
upstreams:
  app:
    url: "http://127.0.0.1:9000"
  secure:
    url: "https://example.com"
routes:
  - path: /p/{id}
    stream:
      upstream: nope
      poll: /api?x={other}
      every: 2 seconds
      longpoll: {cursor: seq, param: since}
      emit: diff
  - path: /x
    upstream: app
    upstream: app
  - path: /y
    on: true
  - path: /s
    upstream: secure
    push: [/static/../admin.js, //evil.example/x.js]
"""


def test_every_mistake_at_once_with_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, MISTAKES)
    shown = str(path)
    assert problems(path) == [
        f'{shown}:2:10: listen.https: expected "host:port", e.g. "0.0.0.0:8443" or "[::1]:8443"',
        f'{shown}:4:3: listen: unknown key "bogus" (expected one of: admin, admin_public, http, http3, http_mode, https)',
        f"{shown}:9:10: upstreams.secure.url: https upstreams are not supported yet; use http://",
        f"{shown}:13:7: routes[0].stream: exactly one of every or longpoll is required",
        f'{shown}:13:17: routes[0].stream.upstream: unknown upstream "nope" (upstreams: app, secure (invalid))',
        f"{shown}:14:13: routes[0].stream.poll: {{other}} is not a parameter of the route path (has: id)",
        f'{shown}:15:14: routes[0].stream.every: expected a duration like "2s" (units: ms, s, m, h)',
        f'{shown}:17:13: routes[0].stream.emit: expected one of snapshot, patch, merge, got "diff"',
        f'{shown}:20:5: routes[1]: duplicate key "upstream"',
        f"{shown}:21:5: routes[2]: a route needs upstream (proxy) or stream (push stream)",
        f'{shown}:22:5: routes[2].on: "on" is read as a YAML 1.1 boolean; quote it',
        f"{shown}:25:12: routes[3].push[0]: write the normalised path /admin.js",
        f"{shown}:25:33: routes[3].push[1]: expected a same-origin absolute path like /static/app.css",
    ]


def test_the_path_is_shown_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, MINIMAL + "routes:\n  - path: /x\n    upstream: nowhere\n")
    monkeypatch.chdir(tmp_path)
    assert problems("routes.yaml") == [
        'routes.yaml:5:15: routes[0].upstream: unknown upstream "nowhere" (upstreams: app)'
    ]
    assert problems(Path("./routes.yaml"))[0].startswith("routes.yaml:5:15: ")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("", ["1:1: the file is empty"]),
        ("# only a comment\n", ["1:1: the file is empty"]),
        (
            "listen: [\nroutes: x\n",
            [
                "3:1: YAML syntax: while parsing a flow sequence, expected ',' or ']', but got '<stream end>'"
            ],
        ),
        (
            "a: 1\n---\nb: 2\n",
            [
                "2:1: YAML syntax: expected a single document in the stream, but found another document"
            ],
        ),
        ("listen: {http: ':80'}\nx: \x07\n", ["2:4: YAML syntax: unacceptable character #x0007"]),
        ("- a\n- b\n", ["1:1: expected a mapping of keys to values, got a list"]),
        (
            MINIMAL + "routes: [{path: /, upstream: app}]\nextra: 1\n",
            [
                '4:1: unknown top-level key "extra" (expected one of: access_log, broker, engines,'
                " limits, listen, notify, routes, tls, upstreams)"
            ],
        ),
        (
            'listen: {http: ":8080"}\nupstreams: {}\n',
            ["1:1: routes: missing: at least one route is required"],
        ),
        (MINIMAL + "routes: []\n", ["3:9: routes: at least one route is required"]),
        (
            MINIMAL + "routes: {path: /}\n",
            ["3:9: routes: expected a list of routes, got a mapping"],
        ),
        (
            "routes: [{path: /, upstream: app}]\nupstreams: {app: {url: 'http://x'}}\n",
            ["1:1: listen: missing: at least one of listen.https or listen.http is required"],
        ),
        (
            "listen: {admin: ':9901'}\n" + MINIMAL[24:] + "routes: [{path: /, upstream: app}]\n",
            [
                "1:9: listen: at least one of https or http is required",
                '1:17: listen.admin: "*" is not a loopback address, and /streams exposes every'
                " stream; use 127.0.0.1 or [::1], or set listen.admin_public: true",
            ],
        ),
    ],
    ids=[
        "empty",
        "comment-only",
        "syntax",
        "two-documents",
        "control-character",
        "not-a-mapping",
        "unknown-top-level",
        "no-routes",
        "empty-routes",
        "routes-not-list",
        "no-listen",
        "no-listener",
    ],
)
def test_whole_file_problems(text: str, expected: list[str]) -> None:
    assert problems_of(text) == expected


ROUTE = "routes: [{path: /, upstream: app}]\n"


@pytest.mark.parametrize(
    "text,expected",
    [
        # YAML 1.1 surprises
        ("yes: 1\n" + MINIMAL + ROUTE, ['1:1: yes: "yes" is read as a YAML 1.1 boolean; quote it']),
        (
            'listen: {http: ":8080", http_mode: on}\nupstreams: {app: {url: "http://x"}}\n' + ROUTE,
            ['1:36: listen.http_mode: expected a string, got "on", a YAML 1.1 boolean (quote it)'],
        ),
        (
            'listen: {http: ":8080"}\nupstreams: {app: {url: "http://x"}, app: {url: "http://y"}}\n'
            + ROUTE,
            ['2:37: upstreams: duplicate key "app"'],
        ),
        (
            'listen: {http: ":8080"}\nupstreams: {off: {url: "http://x"}}\n' + ROUTE,
            [
                '2:13: upstreams.off: "off" is read as a YAML 1.1 boolean; quote it',
                '3:30: routes[0].upstream: unknown upstream "app" (upstreams: none are defined)',
            ],
        ),
        # listen
        (
            'listen: {https: ":8443", http: "0.0.0.0:x", admin: "[::1:9901"}\n'
            + MINIMAL[24:]
            + ROUTE,
            [
                '1:32: listen.http: expected "host:port", e.g. "0.0.0.0:8443" or "[::1]:8443"',
                '1:52: listen.admin: "[::1" is not an IPv6 address in brackets, e.g. "[::1]:8443"',
            ],
        ),
        (
            'listen: {http: "::1:8080", https: "bad host:1"}\n' + MINIMAL[24:] + ROUTE,
            [
                '1:16: listen.http: IPv6 addresses are written in brackets, e.g. "[::1]:8443"',
                '1:35: listen.https: "bad host" is not a host name or IP address; expected'
                ' "host:port", e.g. "0.0.0.0:8443" or "[::1]:8443"',
            ],
        ),
        (
            'listen: {https: ":8443", http: ":8443", http3: ":8443", http_mode: both}\n'
            + MINIMAL[24:]
            + ROUTE,
            [
                "1:32: listen.http: same address as listen.https",
                '1:68: listen.http_mode: expected one of redirect, serve, got "both"',
            ],
        ),
        (
            'listen: {http: ":8080", http3: ":8443"}\n' + MINIMAL[24:] + ROUTE,
            ["1:32: listen.http3: needs listen.https (its Alt-Svc is sent there)"],
        ),
        # broker
        (
            MINIMAL + "broker: redis://127.0.0.1:6379/99\n" + ROUTE,
            ["3:9: broker: the database must be a number from 0 to 15"],
        ),
        (
            MINIMAL + "broker: memcached://x\n" + ROUTE,
            ['3:9: broker: expected "memory" or "redis://host[:port][/db][?lease=5s]"'],
        ),
        (
            MINIMAL + "broker: redis://h/0?lease=1y&x=1\n" + ROUTE,
            ['3:9: broker: lease: expected a duration like "2s" (units: ms, s, m, h)'],
        ),
        (
            MINIMAL + "broker: redis://h/0?lease=10ms\n" + ROUTE,
            ["3:9: broker: lease: must be between 0.2s and 300s"],
        ),
        (
            MINIMAL + "broker: redis://h:99999/0\n" + ROUTE,
            [
                '3:9: broker: expected "memory" or "redis://host[:port][/db][?lease=5s]": Port out of range 0-65535'
            ],
        ),
        (
            MINIMAL + "broker: {url: redis://h}\n" + ROUTE,
            ["3:9: broker: expected a string, got a mapping"],
        ),
        # tls, access_log
        (
            MINIMAL + "tls: {cert: a.crt}\n" + ROUTE,
            ["3:6: tls: give both cert and key, or neither"],
        ),
        (
            MINIMAL + "tls: {cert: '', key: [a]}\n" + ROUTE,
            [
                "3:13: tls.cert: expected a file path",
                "3:22: tls.key: expected a string, got a list",
            ],
        ),
        (
            MINIMAL + "access_log: {path: -, format: text}\n" + ROUTE,
            ['3:31: access_log.format: expected one of combined, json, got "text"'],
        ),
        # limits
        (
            MINIMAL
            + "limits: {max_snapshot: 1 megabyte, keepalive_timeout: 0s, max_connections: -1,"
            " h2_max_concurrent_streams: '128', max_ws_message: 1.5B, burst: 3}\n" + ROUTE,
            [
                '3:24: limits.max_snapshot: expected a size like "512KB" (units: B, KB, MB, GB)',
                "3:55: limits.keepalive_timeout: must be greater than zero",
                "3:76: limits.max_connections: must be between 1 and 2147483647",
                "3:107: limits.h2_max_concurrent_streams: expected a whole number",
                '3:130: limits.max_ws_message: "1.5B" is not a whole number of bytes',
                '3:136: limits: unknown key "burst" (expected one of: h2_max_concurrent_streams,'
                " header_timeout, keepalive_timeout, max_channels_per_route, max_connections,"
                " max_request_body,"
                " max_snapshot, max_subscribers, max_subscribers_per_stream, max_ws_message,"
                " shutdown_grace, subscriber_buffer, tls_handshake_timeout)",
            ],
        ),
        # upstreams
        (
            'listen: {http: ":8080"}\nupstreams:\n'
            '  a: {url: "ftp://x"}\n'
            '  b: {url: "http://u:p@x"}\n'
            '  c: {url: "http://x/?q=1"}\n'
            '  d: {url: "http://x:0"}\n'
            '  e: {url: "http://x/a/../b"}\n'
            "  f: {timeout: 1s}\n"
            '  g: {url: "http://x", host: both, timeout: soon}\n'
            "  h i: {url: 'http://x'}\n" + ROUTE,
            [
                '3:12: upstreams.a.url: expected "http://host[:port][/base]"',
                "4:12: upstreams.b.url: no credentials in an upstream url",
                "5:12: upstreams.c.url: no query or fragment in an upstream url",
                '6:12: upstreams.d.url: expected "http://host[:port][/base]"',
                "7:12: upstreams.e.url: the base path must be a plain normalised path like /app",
                "8:6: upstreams.f: missing url",
                '9:30: upstreams.g.host: expected one of client, upstream, got "both"',
                '9:45: upstreams.g.timeout: expected a duration like "2s" (units: ms, s, m, h)',
                "10:3: upstreams.h i: an upstream name is letters, digits, '_', '-' and '.'",
                '11:30: routes[0].upstream: unknown upstream "app" (upstreams: a (invalid),'
                " b (invalid), c (invalid), d (invalid), e (invalid), f (invalid), g (invalid),"
                " h i (invalid))",
            ],
        ),
    ],
    ids=[
        "yes-key",
        "on-value",
        "duplicate-upstream",
        "off-upstream-name",
        "bad-addresses",
        "ipv6-and-host",
        "same-address-and-mode",
        "http3-without-https",
        "broker-db",
        "broker-scheme",
        "broker-lease-unit",
        "broker-lease-range",
        "broker-port",
        "broker-not-text",
        "half-tls",
        "empty-tls-path",
        "access-log-format",
        "limits",
        "upstream-urls",
    ],
)
def test_section_problems(text: str, expected: list[str]) -> None:
    assert problems_of(text) == expected


def route_problems(routes: str) -> list[str]:
    return problems_of(MINIMAL + "routes:\n" + textwrap.indent(textwrap.dedent(routes), "  "))


@pytest.mark.parametrize(
    "routes,expected",
    [
        (
            """\
            - upstream: app
            - path: prices/{id}
              upstream: app
            - path: /a/{id
              upstream: app
            - path: /{rest*}/x
              upstream: app
            - path: /a//b
              upstream: app
            - path: /a b
              upstream: app
            """,
            [
                "4:5: routes[0]: missing path",
                "5:11: routes[1].path: path must start with '/'",
                "7:11: routes[2].path: unbalanced '{' or '}'",
                "9:11: routes[3].path: {rest*} must be the last part of the path",
                "11:11: routes[4].path: never matches: requests are matched on the normalised"
                " path; write /a/b",
                "13:11: routes[5].path: ' ' cannot appear in a path; percent-encode it",
            ],
        ),
        (
            """\
            - path: /{rest*}
              upstream: app
            - path: /never
              upstream: app
            """,
            ["6:11: routes[1].path: never matched: routes[0] (/{rest*}) matches every path first"],
        ),
        (
            """\
            - path: /p/{a}
              upstream: app
            - path: /p/{b}
              upstream: app
            """,
            [
                "6:11: routes[1].path: never matched: routes[0] (/p/{a}) matches the same paths first"
            ],
        ),
        (
            """\
            - path: /p/{a}/x
              upstream: app
            - path: /p/latest/x
              upstream: app
            - path: /p/latest
              upstream: app
            """,
            ["6:11: routes[1].path: never matched: routes[0] (/p/{a}/x) matches it first"],
        ),
        (
            """\
            - path: /s/{id}
              stream: {poll: "/api/{id}", every: 1s, longpoll: {cursor: "", param: "a b", timeout: 0ms}}
            - path: /t
              stream: {upstream: app, poll: "api", longpoll: {}, history: 100001, heartbeat: forever}
            """,
            [
                "5:13: routes[0].stream: missing upstream",
                "5:13: routes[0].stream: exactly one of every or longpoll is required",
                "5:63: routes[0].stream.longpoll.cursor: expected a JSON field like seq or meta.cursor",
                "5:74: routes[0].stream.longpoll.param: expected a plain query parameter name",
                "5:90: routes[0].stream.longpoll.timeout: must be greater than zero",
                "7:35: routes[1].stream.poll: expected a path on the upstream, starting with /",
                "7:52: routes[1].stream.longpoll: missing cursor",
                "7:52: routes[1].stream.longpoll: missing param",
                "7:65: routes[1].stream.history: must be between 0 and 100000",
                '7:84: routes[1].stream.heartbeat: expected a duration like "2s" (units: ms, s, m, h)',
            ],
        ),
        (
            """\
            - path: /s/{id}
              stream:
                upstream: app
                poll: "/api/{id"
                every: 1s
                protocols: []
                vary: ["x user", X-A, x-a]
                origins: ["*", "https://u@x", "https://x/path", null]
                ws_format: json
                event: ""
                send: "/api/{id}#frag"
            """,
            [
                "7:13: routes[0].stream.poll: unbalanced '{' or '}'",
                "9:18: routes[0].stream.protocols: name at least one of sse, websocket",
                '10:14: routes[0].stream.vary[0]: "x user" is not a header name',
                '11:17: routes[0].stream.origins[0]: expected "scheme://host[:port]", got "*"',
                '11:22: routes[0].stream.origins[1]: expected "scheme://host[:port]", got'
                ' "https://u@x"',
                '11:37: routes[0].stream.origins[2]: expected "scheme://host[:port]", got'
                ' "https://x/path"',
                "11:55: routes[0].stream.origins[3]: expected a value, got nothing",
                '12:18: routes[0].stream.ws_format: expected one of envelope, raw, got "json"',
                "13:14: routes[0].stream.event: an event name is one non-empty line",
                "14:13: routes[0].stream.send: only URL characters: percent-encode others; no"
                " spaces or '#'",
            ],
        ),
        (
            """\
            - path: /s
              stream: {upstream: app, poll: /p, every: 1s, protocols: [sse, grpc]}
              push: [/a.css]
            - path: /page
              upstream: app
              push: yes
            - path: /page2
              upstream: app
              push: [/a.css, /a.css, "/../x", "/b.css#x", /%61.css]
            """,
            [
                '5:67: routes[0].stream.protocols[1]: expected sse or websocket, got "grpc"',
                "6:11: routes[0].push: push needs the route's upstream (the page)",
                '9:11: routes[1].push: expected a list of paths or "auto", got "yes"',
                "12:20: routes[2].push[1]: /a.css is listed twice",
                "12:28: routes[2].push[2]: expected a same-origin absolute path like"
                " /static/app.css (path climbs above '/')",
                "12:37: routes[2].push[3]: expected a same-origin absolute path like"
                " /static/app.css (control characters, spaces or '#' in request target)",
                "12:49: routes[2].push[4]: write the normalised path /a.css",
            ],
        ),
    ],
    ids=[
        "paths",
        "after-catch-all",
        "same-shape",
        "literal-after-template",
        "stream-required",
        "stream-fields",
        "push",
    ],
)
def test_route_problems(routes: str, expected: list[str]) -> None:
    assert route_problems(routes) == expected


def test_a_broken_upstream_is_reported_once_not_at_every_use() -> None:
    found = problems_of(
        """\
        listen: {http: ":8080"}
        upstreams: {app: {url: "https://x"}}
        routes:
          - path: /
            upstream: app
            stream: {upstream: app, poll: /p, every: 1s}
        """
    )
    assert found == ["2:24: upstreams.app.url: https upstreams are not supported yet; use http://"]


def test_a_broken_path_does_not_cascade_into_its_poll_params() -> None:
    found = route_problems(
        """\
        - path: /p/{id}/{id}
          stream: {upstream: app, poll: "/api/{id}", every: 1s}
        """
    )
    assert found == ["4:11: routes[0].path: duplicate parameter {id}"]


def test_quoted_yaml_words_are_plain_strings(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            MINIMAL
            + """\
routes:
  - path: /on
    stream: {upstream: app, poll: /p, every: 1s, event: "on", vary: ["yes"]}
""",
        )
    )
    spec = config.routes[0].stream
    assert spec is not None and spec.event == "on" and spec.vary == ("yes",)


def test_merge_keys_share_settings_and_explicit_keys_win(tmp_path: Path) -> None:
    text = """\
routes:
  - path: /a/{id}
    stream: &live {upstream: app, poll: "/api/a/{id}", every: 2s, emit: patch, heartbeat: 5s}
  - path: /b
    stream:
      <<: *live
      poll: /api/b
      every: 500ms
"""
    config = load_config(write(tmp_path, MINIMAL + text))
    a, b = (route.stream for route in config.routes)
    assert a is not None and b is not None
    assert (a.poll, a.every, a.emit, a.heartbeat) == ("/api/a/{id}", 2.0, "patch", 5.0)
    assert (b.poll, b.every, b.emit, b.heartbeat) == ("/api/b", 0.5, "patch", 5.0)


def test_nested_merges_are_flattened_once_each() -> None:
    """Each level merges the previous one three times: 3**30 walks if merges were re-read."""
    lines = [
        MINIMAL + "routes:",
        "  - path: /r0",
        "    stream: &m0 {upstream: app, poll: /p, every: 1s}",
    ]
    for i in range(1, 31):
        lines += [
            f"  - path: /r{i}",
            f"    stream: &m{i} {{<<: [*m{i - 1}, *m{i - 1}, *m{i - 1}]}}",
        ]
    config = parse_config("\n".join(lines) + "\n")
    assert len(config.routes) == 31
    assert all(route.stream and route.stream.poll == "/p" for route in config.routes)


def test_merge_of_a_non_mapping_is_refused() -> None:
    found = route_problems(
        """\
        - path: /
          upstream: app
          <<: [1]
        """
    )
    assert found == ["6:10: routes[0]: << merges a mapping (an *alias), or a list of them"]


def test_missing_or_unreadable_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert problems(missing) == [f"{missing}:1:1: cannot read: No such file or directory"]
    assert problems(tmp_path) == [f"{tmp_path}:1:1: cannot read: Is a directory"]
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"listen:\n  http: '\xff'\n")
    assert problems(binary) == [f"{binary}:2:1: not UTF-8 text"]


def test_relative_paths_are_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "conf").mkdir()
    write(
        tmp_path / "conf",
        MINIMAL
        + "tls: {cert: c.pem, key: ../k.pem}\naccess_log: {path: a.log}\n"
        + "routes: [{path: /, upstream: app}]\n",
    )
    monkeypatch.chdir(tmp_path)
    config = load_config("conf/routes.yaml", check_files=False)  # the files need not exist
    assert config.source == Path("conf/routes.yaml")
    assert config.tls == TlsConfig(tmp_path / "conf" / "c.pem", tmp_path / "conf" / "../k.pem")
    assert config.access_log.path == str(tmp_path / "conf" / "a.log")


@pytest.mark.parametrize(
    "text,seconds",
    [("250ms", 0.25), ("1s", 1.0), ("1.5s", 1.5), ("2m", 120.0), ("1h", 3600.0), ("0.5 s", 0.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["1", "1sec", "s", "-1s", "1.s", "1S", "1d", "1h30m", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    "text,size",
    [
        ("100B", 100),
        ("512KB", 512 * KB),
        ("1MB", MB),
        ("10MB", 10 * MB),
        ("1GB", GB),
        ("1.5KB", 1536),
    ],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["100", "1M", "1 megabyte", "1TB", "-1KB"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


@pytest.mark.parametrize(
    "text,address",
    [
        ("0.0.0.0:8443", ("0.0.0.0", 8443)),
        ("[::1]:8443", ("::1", 8443)),
        ("[::]:0", ("::", 0)),
        (":8443", ("", 8443)),
        ("localhost:80", ("localhost", 80)),
        ("my_service:80", ("my_service", 80)),
    ],
)
def test_addresses(text: str, address: tuple[str, int]) -> None:
    assert parse_address(text) == address


@pytest.mark.parametrize(
    "text",
    [
        "8443",
        "host:",
        "host:65536",
        "::1:80",
        "[::1]",
        "[x]:80",
        "a b:80",
        "h:\uff18\uff10",
    ],  # full-width digits
)
def test_bad_addresses(text: str) -> None:
    with pytest.raises(ValueError):
        parse_address(text)


@pytest.mark.parametrize(
    "raw,normal",
    [
        ("https://App.Example.COM", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://app.example.com:80/", "http://app.example.com"),
        ("http://app.example.com:8080", "http://app.example.com:8080"),
        ("https://[::1]:8443", "https://[::1]:8443"),
        ("ftp://x", None),
        ("null", None),
        ("https://", None),
        ("https://x?y", None),
    ],
)
def test_origins_are_normalised(raw: str, normal: str | None) -> None:
    assert normalize_origin(raw) == normal


def test_format_duration_round_trips() -> None:
    for text in ("250ms", "1s", "1.5s", "2m", "1h", "90s"):
        assert parse_duration(format_duration(parse_duration(text))) == parse_duration(text)


def test_broker_url_and_lease() -> None:
    config = parse_config(MINIMAL + "broker: redis://10.0.0.5:6380/3?lease=1.5s\n" + ROUTE)
    assert config.broker is not None
    assert (config.broker.host, config.broker.port, config.broker.db) == ("10.0.0.5", 6380, 3)
    assert config.broker.lease == 1.5 and config.broker.url == "redis://10.0.0.5:6380/3"
    plain = parse_config(MINIMAL + "broker: redis://:secret@cache\n" + ROUTE).broker
    assert plain is not None and plain.lease == 5.0 and (plain.port, plain.db) == (6379, 0)
    assert "secret" not in plain.shown and "secret" in plain.url
    assert parse_config(MINIMAL + "broker: memory\n" + ROUTE).broker is None
    assert parse_config(MINIMAL + ROUTE).broker is None


def test_max_channels_per_route_is_loaded_and_checked() -> None:
    config = parse_config(MINIMAL + "limits:\n  max_channels_per_route: 40\n" + ROUTE, "r.yaml")
    assert config.limits.max_channels_per_route == 40
    assert Limits().max_channels_per_route == 1000
    assert problems_of(MINIMAL + "limits:\n  max_channels_per_route: 0\n" + ROUTE) == [
        "4:27: limits.max_channels_per_route: must be between 1 and 2147483647"
    ]
