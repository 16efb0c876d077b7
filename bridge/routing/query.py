"""Query parameters on a stream route: which it reads, which never change its answer, and the
ones it does not understand (docs/configuration.md "Query strings").

A stream answers from one snapshot per set of route parameters, so a query parameter it does
not read would be silently dropped: the wrong data, with no warning. It reads the parameters of
its path's query template and, on a `longpoll:` stream, the stream's cursor `param` (old
long-polling clients send it); `ignore_query` lists those that never change the answer (a
cache-buster such as jQuery's `_`); bridge's own `last_event_id` is always allowed. Any other
is a *stray*: a plain GET passes through to the upstream unchanged, so the app answers as it
did before bridge, and a subscription is refused with 400 naming it. A parameter the route
reads, given twice, is a stray too: which value the app would take is a guess.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from .model import Route

ALWAYS_ALLOWED = ("last_event_id",)


def reads(route: Route) -> tuple[str, ...]:
    """The query parameters the stream of `route` reads, in the order they are written."""
    spec = route.stream
    longpoll = spec.longpoll if spec is not None else None
    return route.query + ((longpoll.param,) if longpoll is not None else ())


def stray_query(route: Route, query: str) -> str | None:
    """The first query parameter of `query` (as received, with its '?') that the stream of
    `route` neither reads nor ignores, or None when every one is understood."""
    if len(query) <= 1 or route.stream is None:
        return None  # the common case: no query at all
    ignored = route.stream.ignore_query
    read = reads(route)
    seen: set[str] = set()
    for key, _ in parse_qsl(query[1:] if query[0] == "?" else query, keep_blank_values=True):
        if key in ALWAYS_ALLOWED or key in ignored:
            continue
        if key not in read or key in seen:
            return key
        seen.add(key)
    return None
