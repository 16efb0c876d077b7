"""Query strings on routes (docs/configuration.md "Query strings"): a route path's query template, a stream's
`ignore_query`, the parameters a stream does not understand, and what `bridge check` says."""

from __future__ import annotations

import pytest

from bridge.errors import ConfigError
from bridge.routing.config import parse_config
from bridge.routing.query import reads, stray_query
from bridge.routing.table import RouteTable, describe

HEAD = """\
listen: {http: "127.0.0.1:8080"}
upstreams: {app: {url: "http://127.0.0.1:9000"}}
routes:
"""

ROUTES = (
    HEAD
    + """\
  - path: /api/quotes?symbol={symbol}
    stream:
      upstream: app
      poll: /api/quotes?symbol={symbol}
      every: 1s
      ignore_query: [_, v]
  - path: /api/pair/{base}?quote={quote}&venue={v}
    stream: {upstream: app, poll: "/pair/{base}/{quote}?at={v}", every: 1s}
  - path: /updates
    stream: {upstream: app, poll: /updates, longpoll: {cursor: seq, param: since}}
  - path: /{rest*}
    upstream: app
"""
)


@pytest.fixture
def table() -> RouteTable:
    return RouteTable(parse_config(ROUTES).routes)


def test_a_query_template_fills_its_parameter(table: RouteTable) -> None:
    found = table.match("/api/quotes", "?symbol=ACME")
    assert found is not None and found[0].index == 0 and found[1] == {"symbol": "ACME"}
    # decoded as a form, like the app does; the other parameters do not matter for matching
    found = table.match("/api/quotes", "?_=1700000000&symbol=A%26B+C")
    assert found is not None and found[1] == {"symbol": "A&B C"}
    found = table.match("/api/pair/EUR", "?venue=x&quote=USD")
    assert found is not None and found[1] == {"base": "EUR", "quote": "USD", "v": "x"}


@pytest.mark.parametrize("query", ["", "?", "?symbol=", "?symbol", "?sym=ACME", "?Symbol=ACME"])
def test_without_its_parameter_the_route_does_not_match(table: RouteTable, query: str) -> None:
    found = table.match("/api/quotes", query)
    assert found is not None and found[0].path == "/{rest*}"  # the next route that matches


def test_a_query_template_needs_every_parameter(table: RouteTable) -> None:
    found = table.match("/api/pair/EUR", "?quote=USD")
    assert found is not None and found[0].path == "/{rest*}"


def test_config_knows_what_each_route_reads() -> None:
    quotes, pair, updates, rest = parse_config(ROUTES).routes
    assert (quotes.params, quotes.query) == (("symbol",), ("symbol",))
    assert quotes.stream is not None and quotes.stream.ignore_query == ("_", "v")
    assert (pair.params, pair.query) == (("base", "quote", "v"), ("quote", "venue"))
    assert reads(pair) == ("quote", "venue")
    assert updates.stream is not None and updates.stream.ignore_query == ()  # the default
    assert reads(updates) == ("since",)  # a long-poll cursor comes back in the query
    assert reads(rest) == ()


@pytest.mark.parametrize(
    "index,query,stray",
    [
        (0, "", None),
        (0, "?symbol=A", None),
        (0, "?symbol=A&_=1700000000123", None),  # jQuery's cache-buster
        (0, "?symbol=A&v=2&last_event_id=5", None),
        (0, "?symbol=A&format=csv", "format"),
        (0, "?symbol=A&symbol=B", "symbol"),  # which one the app takes is a guess
        (0, "?symbol=A&flag", "flag"),
        (1, "?quote=USD&venue=x&_=1", "_"),  # ignored only where listed
        (2, "?since=41", None),
        (2, "?since=41&last_event_id=7", None),
        (2, "?since=41&limit=10", "limit"),
    ],
)
def test_stray_query_names_the_first_parameter_not_understood(
    index: int, query: str, stray: str | None
) -> None:
    route = parse_config(ROUTES).routes[index]
    assert stray_query(route, query) == stray


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return [str(p).removeprefix("routes.yaml:") for p in info.value.problems]


def test_query_template_mistakes_are_reported_where_they_are_written() -> None:
    assert problems(HEAD + "  - {path: '/q?s={s}&s={t}', upstream: app}\n") == [
        "4:12: routes[0].path: query parameter 's' is named twice"
    ]
    assert problems(HEAD + "  - {path: '/q?s=fixed', upstream: app}\n") == [
        "4:12: routes[0].path: query template 's=fixed': expected name={name}"
    ]
    # a poll may use only what the route path reads
    text = HEAD + "  - path: /q?s={s}\n    stream: {upstream: app, poll: '/x?t={t}', every: 1s}\n"
    assert problems(text) == [
        "5:35: routes[0].stream.poll: {t} is not a parameter of the route path (has: s)"
    ]


def test_ignore_query_mistakes() -> None:
    text = (
        HEAD
        + "  - path: /q?s={s}\n"
        + "    stream: {upstream: app, poll: '/x', every: 1s, ignore_query: [_, s, 'a b', _]}\n"
        + "  - path: /u\n"
        + "    stream:\n"
        + "      {upstream: app, poll: /u, longpoll: {cursor: n, param: since},"
        + " ignore_query: since}\n"
        + "  - path: /v\n"
        + "    stream:\n"
        + "      {upstream: app, poll: /v, longpoll: {cursor: n, param: since},"
        + " ignore_query: [since]}\n"
    )
    assert problems(text) == [
        "5:70: routes[0].stream.ignore_query[1]: s is read by this route; it cannot also be"
        " ignored",
        '5:73: routes[0].stream.ignore_query[2]: "a b" is not a plain query parameter name',
        '8:84: routes[1].stream.ignore_query: expected a list, e.g. [_], got "since"',
        "11:85: routes[2].stream.ignore_query[0]: since is read by this route; it cannot also be"
        " ignored",
    ]


@pytest.mark.parametrize(
    "first,second,why",
    [
        ("/q", "/q?s={s}", "matches the same paths first"),
        ("/q/{a}", "/q/{b}?s={s}", "matches the same paths first"),
        ("/q?s={a}", "/q?s={b}", "matches the same paths first"),
    ],
)
def test_a_query_template_only_narrows_a_route(first: str, second: str, why: str) -> None:
    text = (
        HEAD + f"  - {{path: '{first}', upstream: app}}\n  - {{path: '{second}', upstream: app}}\n"
    )
    assert problems(text) == [f"5:12: routes[1].path: never matched: routes[0] ({first}) {why}"]


@pytest.mark.parametrize(
    "first,second",
    [("/q?s={s}", "/q"), ("/q/{b}?s={s}", "/q/{a}"), ("/q?s={s}", "/q?t={t}")],
)
def test_a_route_after_a_narrower_one_is_reachable(first: str, second: str) -> None:
    text = (
        HEAD + f"  - {{path: '{first}', upstream: app}}\n  - {{path: '{second}', upstream: app}}\n"
    )
    assert len(parse_config(text).routes) == 2


def test_check_prints_what_each_stream_reads_and_ignores() -> None:
    lines = describe(parse_config(ROUTES)).splitlines()
    routes = lines[lines.index("routes:") + 1 :]
    assert routes[0].endswith("query reads symbol; ignores _, v")
    assert routes[1].endswith("query reads quote, venue; ignores none")
    assert routes[2].endswith("query reads since; ignores none")
    assert "query" not in routes[3]
