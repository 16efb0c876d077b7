"""`notify:` in routes.yaml: the token required (a `${NAME}` reference allowed, its value
never in a message nor in `check --print`), a usable header name, the default header."""

from __future__ import annotations

import textwrap

import pytest

from bridge.errors import ConfigError
from bridge.routing.config import parse_config
from bridge.routing.model import Expanded
from bridge.routing.printer import render

BASE = """\
listen: {http: "127.0.0.1:8080"}
upstreams: {app: {url: "http://127.0.0.1:9000"}}
routes: [{path: "/{rest*}", upstream: app}]
"""
SECRET = "s3cret-notify-token-value"


def load(text: str):  # type: ignore[no-untyped-def]
    return parse_config(BASE + textwrap.dedent(text), "r.yaml")


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(text)
    return [str(p).removeprefix("r.yaml:") for p in info.value.problems]


def test_token_from_the_environment_is_masked_when_printed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_TOKEN_T", SECRET)
    config = load('notify: {token: "${NOTIFY_TOKEN_T}"}')
    assert config.notify is not None
    assert config.notify.token == SECRET and isinstance(config.notify.token, Expanded)
    assert config.notify.header == "Bridge-Notify"
    printed = render(config)
    assert SECRET not in printed and "${NOTIFY_TOKEN_T}" in printed
    written = load(f"notify: {{token: {SECRET}, header: X-Changed}}")
    assert written.notify is not None and written.notify.header == "X-Changed"
    assert SECRET not in render(written) and "<masked>" in render(written)


def test_absent_is_off() -> None:
    assert load("").notify is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("notify: {header: X-Changed}", "4:9: notify.token: missing"),
        ('notify: {token: "${NOT_SET_ANYWHERE_T}"}', "not set in the environment"),
        ('notify: {token: "two words"}', "notify.token: not a bearer token"),
        (f'notify: {{token: {SECRET}, header: "Bad Name"}}', "is not a usable header name"),
        (f"notify: {{token: {SECRET}, header: Content-Length}}", "not a usable header name"),
        (f"notify: {{token: {SECRET}, bogus: 1}}", "bogus"),
    ],
)
def test_problems(text: str, expected: str) -> None:
    found = problems(text)
    assert any(expected in p for p in found), found
    assert not any("two words" in p for p in found)  # the token itself is never quoted
