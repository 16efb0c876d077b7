"""Requests on a stream route: Server-Sent Events subscribers and legacy polling clients.

- `Accept: text/event-stream` → an SSE subscription on the route's channel (ROUTES.md).
- A WebSocket handshake → the WebSocket handler, when one is installed.
- Any other GET/HEAD → the channel's latest snapshot with its ETag (304 on `If-None-Match`,
  `Prefer: wait=N` long-polls), so old polling clients stop costing the upstream too.

A query parameter the stream does not understand (`bridge.routing.query`) is decided by the
router before this handler: `is_subscription` tells it whether the request would subscribe
(refused with 400) or is a plain GET (passed through to the upstream).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from functools import partial
from urllib.parse import parse_qs

from .. import settings
from ..errors import ErrorCode, StreamError
from ..events import Headers
from ..hub.hub import Hub
from ..hub.item import Format
from ..hub.render import sse_retry
from ..routing.model import Route, StreamSpec
from ..stream.exchange import Exchange
from .authorize import Admission, admit, finish_watched, sse_deny
from .sink import ExchangeSink
from .util import header, is_websocket

WebSocketHandler = Callable[[Exchange, Route, dict[str, str], str | None], Awaitable[None]]

_PREFER_WAIT = re.compile(rb"(?:^|[,;\s])wait\s*=\s*(\d+)", re.IGNORECASE)
_SSE_HEADERS: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def is_subscription(exchange: Exchange, spec: StreamSpec) -> bool:
    """True when this handler would subscribe the request (WebSocket or SSE), not answer it
    with a snapshot."""
    if is_websocket(exchange):
        return True
    request = exchange.request
    accept = header(request.headers, b"accept") or b""
    return request.method == "GET" and b"text/event-stream" in accept and "sse" in spec.protocols


class StreamHandler:
    def __init__(self, hub: Hub, *, websocket: WebSocketHandler | None = None) -> None:
        self.hub = hub
        self.websocket = websocket

    async def __call__(
        self, exchange: Exchange, route: Route, params: dict[str, str], path: str, query: str
    ) -> None:
        spec = route.stream
        assert spec is not None
        request = exchange.request
        last_id = _last_event_id(request.headers, query)
        if is_websocket(exchange):
            if "websocket" not in spec.protocols or self.websocket is None:
                if request.method == "CONNECT":
                    # RFC 8441: the extended CONNECT is a method this resource does not allow.
                    raise StreamError(
                        ErrorCode.METHOD_NOT_ALLOWED,
                        "WebSocket is not enabled on this stream",
                        [(b"allow", b"GET, HEAD")],
                    )
                # HTTP/1.1: the GET is fine, the protocol switch is not; 426, as RFC 6455 §4.4
                # answers a handshake the server cannot take (RFC 9110 §15.5.22).
                raise StreamError(
                    ErrorCode.UPGRADE_REQUIRED, "WebSocket is not enabled on this stream"
                )
            await self.websocket(exchange, route, params, last_id)
            return
        if request.method not in ("GET", "HEAD"):
            raise StreamError(ErrorCode.METHOD_NOT_ALLOWED, headers=[(b"allow", b"GET, HEAD")])
        admission = await admit(self.hub, exchange, route, params)  # `authorize`, new `vary`
        if admission is None:
            return  # refused, and answered
        accept = header(request.headers, b"accept") or b""
        if b"text/event-stream" in accept and "sse" in spec.protocols:
            if request.method == "HEAD":
                # RFC 9110 §9.3.2: the head a GET would get and no body, so no subscription
                # (and no poller) for a request that can never receive an event.
                await exchange.respond(200, list(_SSE_HEADERS))
                return
            await self.sse(exchange, route, params, last_id, admission)
        else:
            await self.snapshot(exchange, route, params)

    async def sse(
        self,
        exchange: Exchange,
        route: Route,
        params: dict[str, str],
        last_id: str | None,
        admission: Admission,
    ) -> None:
        request = exchange.request

        def end(final: bytes | None) -> None:
            # The hub ends this subscriber (stuck, or shutting down); the sink wrote `final`.
            exchange.end_detached()

        sink = ExchangeSink(exchange, end, tunnel=False)
        subscription = self.hub.subscribe(route, params, request.headers, sink, Format.SSE, last_id)
        exchange.access.kind = "sse"
        exchange.on_drain = subscription.on_drain
        exchange.on_abort = subscription.cancel
        unwatch = admission.watch(sse_deny(exchange, subscription, sink))
        # From here the stream runs on callbacks: no task stays parked per subscriber.
        exchange.detach(partial(finish_watched, exchange, subscription, unwatch))
        # Of the request, only what its access-log line needs is kept for the stream's life: a
        # browser's dozen headers (cookies included) are a kilobyte or two per subscriber.
        exchange.request = request.with_headers(_log_headers(request.headers))
        exchange.start_response(200, list(_SSE_HEADERS))
        # A jittered reconnect hint, so a restart does not bring every client back at once.
        sink.open(sse_retry(subscription.channel.retry_ms()))

    async def snapshot(self, exchange: Exchange, route: Route, params: dict[str, str]) -> None:
        request = exchange.request
        timeout = (
            route.stream.longpoll.timeout
            if route.stream and route.stream.longpoll
            else settings.SNAPSHOT_WAIT
        )
        item = await self.hub.latest(route, params, request.headers, timeout=timeout)
        if item is None:
            raise StreamError(
                ErrorCode.UPSTREAM_TIMEOUT,
                "no snapshot from the upstream yet",
                [(b"retry-after", b"1")],
            )
        condition = header(request.headers, b"if-none-match")
        matches = _etag_matches(condition, item.etag)
        wait = requested = _prefer_wait(request.headers)
        waited = bool(matches and wait)
        # Waiting makes sense only for a client that already has the current state; any
        # other gets the snapshot at once (RFC 7240 §4.3: `wait` is a hint, not a demand).
        while matches and wait > 0:
            started = exchange.duration
            changed = await self.hub.wait_change(
                route, params, request.headers, after=item.id, timeout=wait
            )
            if changed is None:
                break
            # A change back to the client's own state (A -> B -> A) is no news to it.
            item = changed
            matches = _etag_matches(condition, item.etag)
            wait -= exchange.duration - started
        headers: Headers = [(b"etag", item.etag), (b"cache-control", b"no-cache")]
        if waited:
            headers.append((b"preference-applied", b"wait=%d" % int(requested)))
        if matches:
            await exchange.respond(304, headers)
            return
        body = item.state
        headers += [
            (b"content-type", item.content_type.encode()),
            (b"content-length", str(len(body)).encode()),
        ]
        await exchange.respond(200, headers, body)


def _log_headers(headers: Headers) -> Headers:
    return [(n, v) for n, v in headers if n in (b"referer", b"user-agent")]


def _last_event_id(headers: Headers, query: str) -> str | None:
    value = header(headers, b"last-event-id")
    if value is not None:
        return value.decode("utf-8", "replace")
    if "last_event_id" in query:
        found = parse_qs(query.lstrip("?")).get("last_event_id")
        if found:
            return found[0]
    return None


def _etag_matches(condition: bytes | None, etag: bytes) -> bool:
    if not condition:
        return False
    if condition.strip() == b"*":
        return True
    # RFC 9110 §13.1.2: If-None-Match uses weak comparison.
    return any(tag.strip().removeprefix(b"W/") == etag for tag in condition.split(b","))


def _prefer_wait(headers: Headers) -> float:
    for name, value in headers:
        if name == b"prefer":
            found = _PREFER_WAIT.search(value)
            if found:
                return min(float(found.group(1)), settings.MAX_PREFER_WAIT)
    return 0.0
