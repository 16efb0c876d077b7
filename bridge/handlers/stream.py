"""Requests on a stream route: Server-Sent Events subscribers and legacy polling clients.

- `Accept: text/event-stream` → an SSE subscription on the route's channel (docs/configuration.md).
- A WebSocket handshake → the WebSocket handler, when one is installed.
- Any other GET/HEAD → the channel's latest snapshot with its ETag (304 on `If-None-Match`,
  `Prefer: wait=N` long-polls), so old polling clients stop costing the upstream too. On a
  `longpoll:` stream a GET carrying the stream's `param` (`?since=41`) is answered at once if
  the cursor has passed it, else held without a task (hub/waiters.py) until it does or
  `longpoll.timeout`, as the long-poll upstream itself would.

Before a stream's first state, requests hear how its first poll went (docs/configuration.md "Upstream
trouble"): a 4xx from the upstream is everyone's answer (with its `WWW-Authenticate`); other
failures leave subscribers to heartbeats, and a plain GET that cannot be answered gets 502
with a one-line cause (504 when the upstream did not answer in time).

A query parameter the stream does not understand (`bridge.routing.query`) is decided by the
router before this handler: `is_subscription` tells it whether the request would subscribe
(refused with 400) or is a plain GET (passed through to the upstream).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from functools import partial
from http import HTTPStatus
from urllib.parse import parse_qs

from .. import settings
from ..errorpage import error_headers
from ..errors import ErrorCode, StreamError
from ..events import Headers
from ..hub.hub import Hub
from ..hub.item import Format, Item
from ..hub.render import sse_retry
from ..hub.waiters import NoSnapshot
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
            if await self._admitted(exchange, route, params):
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
            if await self._admitted(exchange, route, params):
                await self.sse(exchange, route, params, last_id, admission)
        else:
            await self.snapshot(exchange, route, params, query)

    async def _admitted(self, exchange: Exchange, route: Route, params: dict[str, str]) -> bool:
        """A new subscriber of a stream with no state yet waits for the first poll's outcome:
        False (answered) when the upstream refused it."""
        try:
            await self.hub.first_outcome(
                route, params, exchange.request.headers, timeout=settings.SUBSCRIBER_FIRST_WAIT
            )
        except NoSnapshot as exc:
            _no_snapshot(exchange, exc)
            return False
        return True

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

    async def snapshot(
        self, exchange: Exchange, route: Route, params: dict[str, str], query: str
    ) -> None:
        request = exchange.request
        spec = route.stream
        assert spec is not None
        try:
            item = await self.hub.latest(route, params, request.headers, timeout=_first_wait(spec))
        except NoSnapshot as exc:
            _no_snapshot(exchange, exc)
            return
        longpoll = spec.longpoll
        since = _query_value(query, longpoll.param) if longpoll is not None else None
        if longpoll is not None and since is not None:
            answer = partial(_answer_held, exchange)
            held = self.hub.hold(
                route, params, request.headers, since, answer, timeout=longpoll.timeout
            )
            if held is not None:
                # Parked like a subscriber: no task waits; the hub answers it (see waiters.py).
                exchange.on_abort = held.cancel
                exchange.detach(held.cancel)
                return
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
        await exchange.respond(200, [*headers, *_body_headers(item)], item.state)


def _answer_held(exchange: Exchange, item: Item | None) -> None:
    """A held long-poll GET's answer: the state now (new, or unchanged at its timeout)."""
    if not exchange.aborted:
        if item is None:
            _no_snapshot(exchange, NoSnapshot(None, 0.0))
        else:
            headers: Headers = [(b"etag", item.etag), (b"cache-control", b"no-cache")]
            exchange.respond_now(200, [*headers, *_body_headers(item)], item.state)
    exchange.end_detached()


def _body_headers(item: Item) -> Headers:
    return [
        (b"content-type", item.content_type.encode()),
        (b"content-length", str(len(item.state)).encode()),
    ]


def _no_snapshot(exchange: Exchange, exc: NoSnapshot) -> None:
    """What a request that needed the stream's first state is told (docs/configuration.md "Upstream
    trouble"): the upstream's 4xx as it gave it, else 502 (504: no answer in time) and why."""
    failure = exc.failure
    headers: Headers = []
    if failure is None:
        status, text = 504, f"no answer from the upstream within {exc.waited:g}s"
    elif failure.refusal:
        status, text = failure.code, "from the upstream"
        if failure.challenge:
            headers.append((b"www-authenticate", failure.challenge.encode("latin-1", "replace")))
    else:
        status, text = (504 if failure.code == 504 else 502), failure.cause
    if status >= 500:
        headers.append((b"retry-after", b"1"))
    exchange.access.note = text
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "upstream error"
    # The cause is the upstream's doing: one printable line, bounded.
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)[:200]
    body = f"{status} {phrase}: {clean}\n".encode("utf-8", "replace")
    exchange.respond_now(status, [*error_headers(body), *headers], body)


def _first_wait(spec: StreamSpec) -> float:
    """How long a plain GET waits for a stream's first state: the first poll's own bound and a
    little more, so the poll's verdict (and its cause) comes before this one."""
    longpoll = spec.longpoll
    if longpoll is not None:
        bound = longpoll.timeout + settings.LONGPOLL_MARGIN
    else:
        bound = spec.upstream.timeout
    return bound + settings.FIRST_POLL_MARGIN


def _query_value(query: str, name: str) -> str | None:
    if name not in query:
        return None
    found = parse_qs(query.lstrip("?")).get(name)
    return found[0] if found else None


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
