"""routes.yaml loading: the whole contract, and every mistake reported as file:line:col."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.errors import ConfigError
from bridge.routing.config import load_config
from bridge.routing.model import TlsConfig
from bridge.routing.paths import PathError, PathPattern, normalize_path, split_target, substitute
from bridge.routing.table import RouteTable

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p) for p in info.value.problems]


def test_repository_example_loads_with_every_field() -> None:
    config = load_config(ROOT / "routes.yaml")
    assert config.listen.https == ("0.0.0.0", 8443)
    assert config.listen.admin == ("127.0.0.1", 9901)
    assert config.limits.subscriber_buffer == 256 * 1024
    assert config.limits.header_timeout == 10.0
    app = config.upstreams["app"]
    assert (app.host, app.port, app.timeout, app.host_mode) == ("127.0.0.1", 9000, 10.0, "client")
    prices, updates, page, rest = config.routes
    assert prices.stream is not None and prices.stream.every == 1.0
    assert prices.stream.protocols == frozenset({"sse", "websocket"})
    assert prices.params == ("symbol",)
    assert updates.stream is not None and updates.stream.longpoll is not None
    assert (updates.stream.longpoll.cursor, updates.stream.longpoll.param) == ("seq", "since")
    assert updates.stream.emit == "patch" and updates.stream.vary == ("x-user",)
    assert updates.stream.origins == ("https://app.example.com",)
    assert page.push == ("/static/app.css", "/static/app.js")
    assert rest.path == "/{rest*}" and rest.upstream is app
    assert config.tls == TlsConfig()  # omitted: the development certificate beside the file


def test_every_mistake_at_once_with_line_and_column(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
listen:
  https: "127.0.0.1:99999"
  bogus: 1
upstreams:
  app:
    url: "http://127.0.0.1:9000"
routes:
  - path: /p/{id}
    stream:
      upstream: nope
      poll: /api?x={other}
      every: 2 seconds
      longpoll: {cursor: a, param: b}
      emit: diff
  - path: /x
    upstream: app
    upstream: app
  - path: /y
    on: true
  - path: /z/{a}/{a}
    upstream: app
""",
    )
    shown = str(path)
    assert problems(path) == [
        f'{shown}:2:10: listen.https: expected "host:port", e.g. "0.0.0.0:8443" or "[::1]:8443"',
        f'{shown}:3:3: listen: unknown key "bogus" (expected one of: admin, admin_public, http, http3, http_mode, https)',
        f"{shown}:10:7: routes[0].stream: exactly one of every or longpoll is required",
        f'{shown}:10:17: routes[0].stream.upstream: unknown upstream "nope" (upstreams: app)',
        f"{shown}:11:13: routes[0].stream.poll: {{other}} is not a parameter of the route path (has: id)",
        f'{shown}:12:14: routes[0].stream.every: expected a duration like "2s" (units: ms, s, m, h)',
        f'{shown}:14:13: routes[0].stream.emit: expected one of snapshot, patch, merge, got "diff"',
        f'{shown}:17:5: routes[1]: duplicate key "upstream"',
        f"{shown}:18:5: routes[2]: a route needs upstream (proxy) or stream (push stream)",
        f'{shown}:19:5: routes[2].on: "on" is read as a YAML 1.1 boolean; quote it',
        f"{shown}:20:11: routes[3].path: duplicate parameter {{a}}",
    ]


@pytest.mark.parametrize(
    "text,expected",
    [
        ("", "1:1: the file is empty"),
        ("listen: [\n", "YAML syntax"),
        ("- a\n- b\n", "1:1: expected a mapping"),
        (
            'listen: {http: ":8080"}\nroutes: []\nupstreams: {u: {url: "https://x"}}\n',
            "https upstreams are not supported yet",
        ),
        ('listen: {http: ":8080"}\ntls: {cert: a.crt}\nroutes: []\n', "give both cert and key"),
        (
            'listen: {http: ":8080"}\nlimits: {max_snapshot: 1 megabyte, keepalive_timeout: 0s}\nroutes: []\n',
            "limits.max_snapshot",
        ),
        ("listen: {}\nroutes: []\n", "at least one of https or http is required"),
        (
            'listen: {http: ":8080"}\nupstreams: {a: {url: "http://x"}}\nroutes: [{path: /, upstream: a, push: [//evil.example/x.js]}]\n',
            "same-origin absolute path",
        ),
        (
            'listen: {http: ":8080"}\nupstreams: {a: {url: "http://x"}}\nroutes: [{path: /, stream: {upstream: a, poll: /p, every: 1s, origins: ["*"]}}]\n',
            "origins",
        ),
    ],
    ids=[
        "empty",
        "syntax",
        "not-mapping",
        "https-upstream",
        "half-tls",
        "limits",
        "no-listener",
        "push-cross-origin",
        "bad-origin",
    ],
)
def test_single_mistakes(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(write(tmp_path, text))
    assert any(expected in p for p in found), found


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    [message] = problems(tmp_path / "nope.yaml")
    assert message.startswith(f"{tmp_path / 'nope.yaml'}:1:1: cannot read")


def test_bridge_check_command(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "-c", str(ROOT / "routes.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ok.returncode == 0, ok.stderr
    assert (
        "/prices/{symbol}" in ok.stdout
        and "stream" in ok.stdout
        and "push /static/app.css" in ok.stdout
    )
    bad = write(tmp_path, "listen: {http: ':8080'}\nroutes:\n  - path: /x\n    upstream: nowhere\n")
    failed = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "-c", "routes.yaml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert failed.returncode == 1
    assert 'routes.yaml:4:15: routes[0].upstream: unknown upstream "nowhere"' in failed.stderr
    assert bad.exists()


def test_bridge_check_reports_every_mistake_with_the_path_as_given(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "routes.yaml").write_text(
        "listen:\n"
        '  https: "0.0.0.0:x"\n'
        "  bogus: 1\n"
        "upstreams:\n"
        "  app:\n"
        '    url: "http://127.0.0.1:9000"\n'
        "limits:\n"
        "  keepalive_timeout: soon\n"
        "routes:\n"
        "  - path: /a/{x\n"
        "    upstream: nope\n"
        "  - path: /b\n"
        "    upstream: app\n"
        "    upstream: app\n"
    )
    given = "./conf/routes.yaml"  # not normalised to conf/routes.yaml in the messages
    failed = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "-c", given],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert failed.returncode == 1
    assert failed.stdout == ""  # no route table for a file that is refused
    assert failed.stderr.splitlines() == [
        f'{given}:2:10: listen.https: expected "host:port", e.g. "0.0.0.0:8443" or "[::1]:8443"',
        f'{given}:3:3: listen: unknown key "bogus" (expected one of: admin, admin_public, http, http3, http_mode, https)',
        f'{given}:8:22: limits.keepalive_timeout: expected a duration like "2s" (units: ms, s, m, h)',
        f"{given}:10:11: routes[0].path: unbalanced '{{' or '}}'",
        f'{given}:11:15: routes[0].upstream: unknown upstream "nope" (upstreams: app)',
        f'{given}:14:5: routes[1]: duplicate key "upstream"',
        f"{given}: 6 problem(s); not serving",
    ]


@pytest.mark.parametrize(
    "raw,normal",
    [
        ("/static/../admin", "/admin"),
        ("/a/%2e%2e/b", "/b"),
        ("/%61", "/a"),
        ("/a%2Fb", "/a%2Fb"),
        ("/a%2fb", "/a%2Fb"),
        ("//a///b", "/a/b"),
        ("/a/./b/.", "/a/b/"),
        ("/", "/"),
        ("/a/b/..", "/a/"),
        ("/%7Euser", "/~user"),
        ("/%20x", "/%20x"),
    ],
)
def test_normalize_path(raw: str, normal: str) -> None:
    assert normalize_path(raw) == normal


@pytest.mark.parametrize("raw", ["/..", "/a/../..", "/%2e%2e", "/a/%2E%2E/%2e%2e/x"])
def test_paths_climbing_above_root_are_refused(raw: str) -> None:
    with pytest.raises(PathError):
        normalize_path(raw)


@pytest.mark.parametrize("target", ["*", "http://x/", "/a b", "/a\x00", "/a#frag"])
def test_bad_targets(target: str) -> None:
    with pytest.raises(PathError):
        split_target(target)


@given(st.text(alphabet="/.%2eEfF5aA~_-", max_size=40).map(lambda s: "/" + s))
def test_normalisation_is_idempotent_and_clean(raw: str) -> None:
    try:
        once = normalize_path(raw)
    except PathError:
        return
    assert normalize_path(once) == once
    assert "/./" not in once and "/../" not in once and "//" not in once
    assert not once.endswith("/..") and not once.endswith("/.")


def test_patterns() -> None:
    one = PathPattern("/prices/{symbol}")
    assert one.match("/prices/ACME") == {"symbol": "ACME"}
    assert one.match("/prices/") is None and one.match("/prices/a/b") is None
    rest = PathPattern("/admin/{rest*}")
    assert rest.match("/admin") == {"rest": ""}
    assert rest.match("/admin/") == {"rest": ""}
    assert rest.match("/admin/x/y") == {"rest": "x/y"}
    assert rest.match("/administrator") is None
    assert PathPattern("/{rest*}").match("/") == {"rest": ""}
    assert PathPattern("/Case").match("/case") is None
    for bad in ("/{a", "/{a}/{a}", "/{rest*}/x", "/x{a}", "/{1a}"):
        with pytest.raises(PathError):
            PathPattern(bad)


def test_first_match_wins(tmp_path: Path) -> None:
    config = load_config(ROOT / "routes.yaml")
    table = RouteTable(config.routes)
    assert table.match("/prices/X")[0].path == "/prices/{symbol}"  # type: ignore[index]
    assert table.match("/")[0].path == "/"  # type: ignore[index]
    assert table.match("/other/page")[0].path == "/{rest*}"  # type: ignore[index]


@given(st.text(max_size=30))
def test_substitute_never_injects_structure(value: str) -> None:
    out = substitute("/api/price?symbol={s}&x=1", {"s": value})
    assert out.startswith("/api/price?symbol=") and out.endswith("&x=1")
    middle = out[len("/api/price?symbol=") : -len("&x=1")]
    assert not any(ch in middle for ch in "/?#&= ")
