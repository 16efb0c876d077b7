"""In-process stand-ins for the two edges of the hub, for unit tests on a virtual clock.

- `ScriptedUpstream` is a `Fetcher`: a small origin with state (body, ETag, Last-Modified),
  conditional GETs, long-poll holding, failures and the real upstream client's exceptions —
  all timed by the `VirtualClock`. (The real upstream client is tested against real servers
  in tests/e2e; here the hub's own logic is under test.)
- `MemorySink` is a `Sink`: it keeps what was written and can play a connection whose peer
  stops reading (bytes stay "buffered" until `drain()`), like the server's sinks.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, Ping, TextMessage

from bridge.errors import ErrorCode
from bridge.events import Headers
from bridge.framing import UNFRAMED
from bridge.hub.clock import VirtualClock, wait_future
from bridge.hub.hub import Hub
from bridge.hub.item import Format
from bridge.hub.subscription import Subscription
from bridge.routing.model import LongPoll, Route, StreamSpec, Upstream
from bridge.settings import Limits
from bridge.upstream import UpstreamError, UpstreamTimeout, UpstreamUnreachable
from tests.support.sse import SseEvent, SseParser

UP = Upstream("app", "http://127.0.0.1:9", "http", "127.0.0.1", 9, "", 5.0)


def route(index: int = 0, **spec: Any) -> Route:
    """A stream route `/p/{s}` polling `/api?s={s}` every second unless told otherwise."""
    fields: dict[str, Any] = {"upstream": UP, "poll": "/api?s={s}", "every": 1.0, "longpoll": None}
    fields.update(spec)
    if fields.get("longpoll") is not None and "every" not in spec:
        fields["every"] = None
    return Route(
        index=index,
        path="/p/{s}",
        line=1,
        upstream=None,
        stream=StreamSpec(**fields),
        params=("s",),
    )


def longpoll_route(
    cursor: str = "seq", param: str = "since", timeout: float = 30.0, **spec: Any
) -> Route:
    return route(longpoll=LongPoll(cursor=cursor, param=param, timeout=timeout), **spec)


@dataclass
class Request:
    target: str
    headers: Headers
    timeout: float
    max_bytes: int
    at: float  # virtual time the request was sent

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)


class ScriptedUpstream:
    """An origin whose state tests change; answers like a well-behaved HTTP API."""

    def __init__(self, clock: VirtualClock, body: Any = None) -> None:
        self.clock = clock
        self.body = b'{"v": 1}'
        if body is not None:
            self.set(body)
        self.etags = True
        self.last_modified: bytes | None = None
        self.content_type = b"application/json"
        self.latency = 0.0  # virtual seconds per answer
        self.requests: list[Request] = []
        # Failure modes, checked in this order:
        self.error: Exception | None = None  # raised after `latency`
        self.answer: tuple[int, Headers, bytes] | None = None  # returned instead of the state
        self.stall = False  # never answer: the request times out
        # Long-poll: hold a request whose cursor is current for up to `hold` seconds.
        self.seq_field = "seq"
        self.param = "since"
        self.hold = 30.0
        self.enforce_max_bytes = True
        self._changed: asyncio.Future[None] | None = None

    # --- state ------------------------------------------------------------------------------

    def set(self, value: Any) -> None:
        """New state: a JSON value (serialized) or raw bytes."""
        self.body = value if isinstance(value, bytes) else json.dumps(value).encode()
        if self._changed is not None and not self._changed.done():
            self._changed.set_result(None)
        self._changed = None

    @property
    def etag(self) -> bytes:
        return b'"%s"' % hashlib.sha256(self.body).hexdigest()[:16].encode()

    @property
    def calls(self) -> int:
        return len(self.requests)

    def targets(self) -> list[str]:
        return [r.target for r in self.requests]

    # --- Fetcher ----------------------------------------------------------------------------

    async def fetch(
        self, upstream: Upstream, target: str, headers: Headers, *, timeout: float, max_bytes: int
    ) -> tuple[int, Headers, bytes]:
        request = Request(target, list(headers), timeout, max_bytes, self.clock.now())
        self.requests.append(request)
        if self.latency:
            await self.clock.sleep(self.latency)
        else:
            await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        if self.answer is not None:
            return self.answer
        if self.stall:
            await self.clock.sleep(timeout)
            raise UpstreamTimeout("upstream took too long")
        since = request.query.get(self.param)
        if since and self._current_cursor() == since[0]:
            if self._changed is None:
                self._changed = asyncio.get_running_loop().create_future()
            if not await wait_future(self.clock, self._changed, min(self.hold, timeout)):
                if self.hold >= timeout:
                    raise UpstreamTimeout("upstream took too long")
        return self._respond(request, max_bytes)

    def _current_cursor(self) -> str | None:
        try:
            value = json.loads(self.body)[self.seq_field]
        except (ValueError, KeyError, TypeError):
            return None
        return value if isinstance(value, str) else json.dumps(value)

    def _respond(self, request: Request, max_bytes: int) -> tuple[int, Headers, bytes]:
        headers: Headers = [(b"content-type", self.content_type)]
        if self.etags:
            headers.append((b"etag", self.etag))
            if request.header(b"if-none-match") == self.etag:
                return 304, headers, b""
        if self.last_modified is not None:
            headers.append((b"last-modified", self.last_modified))
            if not self.etags and request.header(b"if-modified-since") == self.last_modified:
                return 304, headers, b""
        if self.enforce_max_bytes and len(self.body) > max_bytes:
            raise UpstreamError(ErrorCode.UPSTREAM_UNREACHABLE, f"answer larger than {max_bytes}")
        return 200, headers, self.body


def refused() -> UpstreamUnreachable:
    return UpstreamUnreachable("cannot connect to 127.0.0.1:9: Connection refused")


class MemorySink:
    """A subscriber's connection in memory. `stalled`: the peer reads nothing, so every byte
    stays buffered until `drain()`, which then tells the subscription (as the server does)."""

    framing = UNFRAMED

    def __init__(self, *, stalled: bool = False) -> None:
        self.writes: list[bytes] = []
        self.stalled = stalled
        self.unsent = 0
        self.closed = False
        self.final: bytes | None = None
        self.subscription: Subscription | None = None

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self.writes.append(data)
        if self.stalled:
            self.unsent += len(data)

    def buffered(self) -> int:
        return self.unsent

    def close(self, final: bytes | None = b"") -> None:
        if not self.closed:
            self.closed = True
            self.final = final

    def drain(self, *, notify: bool = True) -> None:
        self.unsent = 0
        self.stalled = False
        if notify and self.subscription is not None:
            self.subscription.on_drain()

    @property
    def data(self) -> bytes:
        return b"".join(self.writes)

    def events(self) -> list[SseEvent]:
        """What an EventSource would dispatch from the SSE bytes written."""
        parser = SseParser()
        return parser.feed(self.data)

    def comments(self) -> int:
        parser = SseParser()
        parser.feed(self.data)
        return len(parser.comments)

    def values(self) -> list[Any]:
        return [json.loads(e.data) for e in self.events()]


def unchunk(data: bytes) -> bytes:
    """The payload of a sequence of complete HTTP/1.1 chunks (RFC 9112 §7.1)."""
    out = bytearray()
    pos = 0
    while pos < len(data):
        line_end = data.index(b"\r\n", pos)
        size = int(data[pos:line_end], 16)
        start = line_end + 2
        out += data[start : start + size]
        assert data[start + size : start + size + 2] == b"\r\n"
        pos = start + size + 2
    return bytes(out)


def ws_messages(data: bytes) -> list[Any]:
    """Server frames as a WebSocket client (wsproto) reads them."""
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(data)
    out: list[Any] = []
    for event in client.events():
        if isinstance(event, (TextMessage, BytesMessage, Ping)):
            out.append(event)
    return out


class Harness:
    def __init__(self, seed: int | None = None, **limits: Any) -> None:
        self.clock = VirtualClock()
        self.upstream = ScriptedUpstream(self.clock)
        rng = random.Random(seed) if seed is not None else None
        self.hub = Hub(self.upstream, limits=Limits(**limits), clock=self.clock, rng=rng)

    def subscribe(
        self,
        r: Route,
        s: str = "A",
        *,
        headers: Headers | None = None,
        fmt: Format = Format.SSE,
        last_event_id: str | None = None,
        sink: MemorySink | None = None,
    ) -> tuple[Subscription, MemorySink]:
        sink = sink or MemorySink()
        sub = self.hub.subscribe(r, {"s": s}, headers or [], sink, fmt, last_event_id)
        sink.subscription = sub
        return sub, sink

    async def advance(self, seconds: float) -> None:
        await self.clock.advance(seconds)


def run(body: Any, timeout: float = 30.0) -> None:
    """Run an async test body under a (real-time) timeout."""
    asyncio.run(asyncio.wait_for(body(), timeout))
