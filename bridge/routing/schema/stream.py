"""A route's `stream:` block: the upstream endpoint polled (`every`) or long-polled
(`longpoll`), how its changes reach subscribers (`emit`, `event`, `protocols`, `vary`,
`history`, `heartbeat`, and for WebSocket `send`, `ws_format`, `origins`), which query
parameters never change its answer (`ignore_query`; see `bridge.routing.query`), and who may
subscribe (`authorize`).

Keys left out keep `StreamSpec`'s defaults; `upstream`, `poll` and one of `every` or
`longpoll` are required.
"""

from __future__ import annotations

import re
from typing import Any

from yaml.nodes import Node

from ..model import Authorize, LongPoll, StreamSpec, Upstream, choices, keys
from ..paths import PARAM, QUERY_NAME, TARGET, PathError, template_params
from ..units import normalize_origin
from ..yamlwalk import Walker
from .upstreams import upstream_ref

STREAM_KEYS = keys(StreamSpec)
LONGPOLL_KEYS = keys(LongPoll)
AUTHORIZE_KEYS = keys(Authorize)
EMITS = choices(StreamSpec, "emit")
WS_FORMATS = choices(StreamSpec, "ws_format")
PROTOCOLS = ("sse", "websocket")
MAX_HISTORY = 100_000
# RFC 9110 §5.6.2 token: what a header name is made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def read_stream(
    w: Walker,
    node: Node,
    field: str,
    params: tuple[str, ...] | None,
    upstreams: dict[str, Upstream],
    declared: list[str],
    query: tuple[str, ...] = (),
) -> StreamSpec | None:
    """The stream block at `node`; `params` are the route path's parameter names (None when
    the path itself is broken, so any `{name}` is accepted), `query` the query parameters its
    query template reads."""
    items = w.mapping(node, field, STREAM_KEYS)
    if items is None:
        return None
    for required in ("upstream", "poll"):
        if required not in items:
            w.error(node, field, f"missing {required}")
    if ("every" in items) == ("longpoll" in items):
        w.error(node, field, "exactly one of every or longpoll is required")
    before = len(w.problems)

    upstream = None
    if "upstream" in items:
        upstream = upstream_ref(w, items["upstream"], f"{field}.upstream", upstreams, declared)
    poll = None
    if "poll" in items:
        poll = _target_template(w, items["poll"], f"{field}.poll", params)
    every = w.duration(items["every"], f"{field}.every") if "every" in items else None
    longpoll = _longpoll(w, items["longpoll"], f"{field}.longpoll") if "longpoll" in items else None

    values: dict[str, Any] = {}
    if "emit" in items:
        values["emit"] = w.choice(items["emit"], f"{field}.emit", EMITS)
    if "event" in items:
        values["event"] = _event_name(w, items["event"], f"{field}.event")
    if "protocols" in items:
        values["protocols"] = _protocols(w, items["protocols"], f"{field}.protocols")
    if "vary" in items:
        values["vary"] = _vary(w, items["vary"], f"{field}.vary")
    if "history" in items:
        values["history"] = w.integer(items["history"], f"{field}.history", 0, MAX_HISTORY)
    if "heartbeat" in items:
        values["heartbeat"] = w.duration(items["heartbeat"], f"{field}.heartbeat")
    if "send" in items:
        values["send"] = _target_template(w, items["send"], f"{field}.send", params)
    if "ws_format" in items:
        values["ws_format"] = w.choice(items["ws_format"], f"{field}.ws_format", WS_FORMATS)
    if "origins" in items:
        values["origins"] = _origins(w, items["origins"], f"{field}.origins")
    if "ignore_query" in items:
        read = query + ((longpoll.param,) if longpoll is not None else ())
        values["ignore_query"] = _ignore_query(
            w, items["ignore_query"], f"{field}.ignore_query", read
        )
    if "authorize" in items:
        values["authorize"] = _authorize(w, items["authorize"], f"{field}.authorize", params)

    protocols = values.get("protocols")
    if protocols is not None and "websocket" not in protocols:
        # Accepted (the block is valid), but these only ever apply to WebSocket subscribers.
        for key, why in (
            ("send", "only WebSocket messages are sent upstream"),
            ("ws_format", "it shapes WebSocket messages"),
            ("origins", "Origin is checked on WebSocket handshakes"),
        ):
            if key in items:
                w.warn(
                    items[key],
                    f"{field}.{key}",
                    f"has no effect: {why}, and protocols has no websocket",
                )
    # Every value read above is valid once no problem was added (an invalid one is None).
    if len(w.problems) != before or upstream is None or poll is None:
        return None
    if (every is None) == (longpoll is None):
        return None
    return StreamSpec(upstream=upstream, poll=poll, every=every, longpoll=longpoll, **values)


def _target_template(
    w: Walker, node: Node, field: str, params: tuple[str, ...] | None
) -> str | None:
    """A `poll` or `send` target: path (+ query) on the upstream, `{params}` of the route."""
    value = w.text(node, field)
    if value is None:
        return None
    if not value.startswith("/") or value.startswith("//"):
        w.error(node, field, "expected a path on the upstream, starting with /")
        return None
    try:
        names = template_params(value)
    except PathError as exc:
        w.error(node, field, str(exc))
        return None
    if not TARGET.fullmatch(PARAM.sub("x", value)):
        w.error(node, field, "only URL characters: percent-encode others; no spaces or '#'")
        return None
    if params is not None:
        for name in names:
            if name not in params:
                known = ", ".join(params) or "none"
                w.error(
                    node, field, f"{{{name}}} is not a parameter of the route path (has: {known})"
                )
                return None
    return value


def _longpoll(w: Walker, node: Node, field: str) -> LongPoll | None:
    items = w.mapping(node, field, LONGPOLL_KEYS)
    if items is None:
        return None
    for key in ("cursor", "param"):
        if key not in items:
            w.error(node, field, f"missing {key}")
    cursor = w.text(items["cursor"], f"{field}.cursor") if "cursor" in items else None
    if cursor is not None and not all(part.strip() for part in cursor.split(".")):
        w.error(items["cursor"], f"{field}.cursor", "expected a JSON field like seq or meta.cursor")
        cursor = None
    param = w.text(items["param"], f"{field}.param") if "param" in items else None
    if param is not None and not QUERY_NAME.fullmatch(param):
        w.error(items["param"], f"{field}.param", "expected a plain query parameter name")
        param = None
    values: dict[str, float] = {}
    if "timeout" in items:
        timeout = w.duration(items["timeout"], f"{field}.timeout")
        if timeout is None:
            return None
        values["timeout"] = timeout
    if cursor is None or param is None:
        return None
    return LongPoll(cursor=cursor, param=param, **values)


def _authorize(
    w: Walker, node: Node, field: str, params: tuple[str, ...] | None
) -> Authorize | None:
    """`authorize:`; an empty mapping (`authorize: {}`) is every default."""
    items = w.mapping(node, field, AUTHORIZE_KEYS)
    if items is None:
        return None
    values: dict[str, Any] = {}
    if "check" in items:
        values["check"] = _target_template(w, items["check"], f"{field}.check", params)
    if "forward" in items:
        forward = _vary(w, items["forward"], f"{field}.forward")
        if forward is not None and not forward:
            w.error(items["forward"], f"{field}.forward", "name at least one header, e.g. [cookie]")
            forward = None
        values["forward"] = forward
    for key in ("cache", "recheck"):
        if key in items:
            values[key] = w.duration(items[key], f"{field}.{key}")
    if any(value is None for value in values.values()):
        return None
    return Authorize(**values)


def _event_name(w: Walker, node: Node, field: str) -> str | None:
    event = w.text(node, field)
    # An SSE field value ends at the first line break (WHATWG HTML §9.2.6).
    if event is not None and (not event.strip() or re.search(r"[\r\n]", event)):
        w.error(node, field, "an event name is one non-empty line")
        return None
    return event


def _protocols(w: Walker, node: Node, field: str) -> frozenset[str] | None:
    items = w.strings(node, field, "[sse, websocket]")
    if items is None:
        return None
    if not node.value:
        w.error(node, field, "name at least one of sse, websocket")
        return None
    chosen = set()
    for value, item, where in items:
        if value not in PROTOCOLS:
            w.error(item, where, f'expected sse or websocket, got "{value}"')
        chosen.add(value)
    return frozenset(chosen)


def _vary(w: Walker, node: Node, field: str) -> tuple[str, ...] | None:
    items = w.strings(node, field, "[authorization]")
    if items is None:
        return None
    names: list[str] = []
    for value, item, where in items:
        if not _TOKEN.fullmatch(value):
            w.error(item, where, f'"{value}" is not a header name')
        elif value.lower() not in names:
            names.append(value.lower())  # header names are case-insensitive (RFC 9110 §5.1)
    return tuple(names)


def _ignore_query(
    w: Walker, node: Node, field: str, read: tuple[str, ...]
) -> tuple[str, ...] | None:
    """Query parameter names; none of them one the route reads (`read`)."""
    items = w.strings(node, field, "[_]")
    if items is None:
        return None
    names: list[str] = []
    for value, item, where in items:
        if not QUERY_NAME.fullmatch(value):
            w.error(item, where, f'"{value}" is not a plain query parameter name')
        elif value in read:
            w.error(item, where, f"{value} is read by this route; it cannot also be ignored")
        elif value not in names:
            names.append(value)
    return tuple(names)


def _origins(w: Walker, node: Node, field: str) -> tuple[str, ...] | None:
    items = w.strings(node, field, '["https://app.example.com"]')
    if items is None:
        return None
    origins: list[str] = []
    for value, item, where in items:
        normal = normalize_origin(value)
        if normal is None:
            w.error(item, where, f'expected "scheme://host[:port]", got "{value}"')
        elif normal not in origins:
            origins.append(normal)
    return tuple(origins)
