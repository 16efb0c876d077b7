"""`upstreams.*.headers` with `${NAME}` from the environment, and `stream.authorize`: what the
loader reads, what it refuses (at file:line:col, never quoting a secret), what printing shows."""

from __future__ import annotations

import textwrap

import pytest

from bridge.errors import ConfigError
from bridge.routing.config import parse_config
from bridge.routing.model import Authorize, Expanded
from bridge.routing.printer import render

TOKEN = "tok-2b7e151628aed2a6"

CONFIG = """\
listen: {http: ":8080"}
upstreams:
  app:
    url: "http://127.0.0.1:9000"
    headers:
      Authorization: "Bearer ${APP_TOKEN}"
      X-Service: reports
routes:
  - path: /p/{s}
    stream:
      upstream: app
      poll: /api?s={s}
      every: 1s
      authorize:
        check: /api/can-see?s={s}
        forward: [Cookie]
        cache: 5s
        recheck: 1m
  - path: /q
    stream:
      upstream: app
      poll: /api/q
      every: 1s
      authorize: {}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text), "r.yaml")
    return [str(p).removeprefix("r.yaml:") for p in info.value.problems]


def test_headers_expand_the_environment_and_authorize_reads_its_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("APP_TOKEN", TOKEN)
    config = parse_config(CONFIG, "r.yaml")
    headers = dict(config.upstreams["app"].headers)
    assert headers == {"authorization": f"Bearer {TOKEN}", "x-service": "reports"}
    value = headers["authorization"]
    assert isinstance(value, Expanded) and value.written == "Bearer ${APP_TOKEN}"
    first, second = (route.stream for route in config.routes)
    assert first is not None and second is not None
    assert first.authorize == Authorize("/api/can-see?s={s}", ("cookie",), 5.0, 60.0)
    assert second.authorize == Authorize()  # every default: the poll target, cookie + auth
    printed = render(config)
    assert TOKEN not in printed and "reports" not in printed
    assert "authorization: Bearer ${APP_TOKEN}" in printed
    assert "x-service: <masked>" in printed


def test_an_unset_variable_is_a_problem_at_its_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APP_TOKEN", raising=False)
    assert problems_of(CONFIG) == [
        "6:22: upstreams.app.headers.Authorization: ${APP_TOKEN}: not set in the environment"
    ]


def test_a_bad_value_is_reported_without_showing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_TOKEN", TOKEN + "\r\nX-Evil: 1")
    found = problems_of(CONFIG)
    assert found == [
        "6:22: upstreams.app.headers.Authorization: the environment's value has a line break "
        "or control character"
    ]
    assert TOKEN not in found[0]


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ("Host: x", "6:7: upstreams.app.headers.Host: Host is set by bridge itself"),
        ('"a b": x', '6:7: upstreams.app.headers.a b: "a b" is not a header name'),
        ("- x", "6:7: upstreams.app.headers: expected a mapping of keys to values"),
    ],
)
def test_headers_refused(headers: str, message: str) -> None:
    text = CONFIG.replace(
        '      Authorization: "Bearer ${APP_TOKEN}"\n      X-Service: reports\n',
        f"      {headers}\n",
    )
    found = problems_of(text)
    assert any(p.startswith(message) or message in p for p in found), found


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("{check: api}", "routes[0].stream.authorize.check: expected a path on the upstream"),
        ("{check: '/x?{t}'}", "{t} is not a parameter of the route path"),
        ("{forward: []}", "routes[0].stream.authorize.forward: name at least one header"),
        ("{cache: 0s}", "routes[0].stream.authorize.cache: must be greater than zero"),
        ("{every: 1s}", 'routes[0].stream.authorize: unknown key "every"'),
    ],
)
def test_authorize_refused(monkeypatch: pytest.MonkeyPatch, block: str, message: str) -> None:
    monkeypatch.setenv("APP_TOKEN", TOKEN)
    text = CONFIG.replace(
        """      authorize:
        check: /api/can-see?s={s}
        forward: [Cookie]
        cache: 5s
        recheck: 1m
""",
        f"      authorize: {block}\n",
    )
    found = problems_of(text)
    assert any(message in p for p in found), found
