"""A real loopback upstream for bridge's tests, on the same HTTP server core as the demo app.

    async with Upstream() as up:
        up.set_json("/api/price", {"p": 1})          # JSON with ETag + Last-Modified, 304s
        up.set_status("/down", 503, headers=[retry_after(2)])
        up.set_delay("/api/price", 0.5)              # slow first byte
        up.set_stream("/big", 10 * MB)               # stream_bytes(0, 10 * MB), chunked
        up.longpoll("/api/updates"); up.publish("/api/updates", {"v": 2})
        up.ws_echo("/ws")
        up.route("/custom", handler)                 # any async handler
        up.url, up.port, up.requests, up.count("/api"), up.connections

Routes match a path exactly, or as a prefix when registered with a trailing `*` (the longest
prefix wins). `/echo` (and `/echo/*`) answers with what it received, as JSON. Every request
is recorded in arrival order. Everything listens on 127.0.0.1, port 0.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from bridge.demo.httpserver import (
    Answer,
    Headers,
    HttpServer,
    ServerRequest,
    ServerResponse,
    WebSocket,
    WebSocketAccept,
    etag_of,
    http_date,
    is_not_modified,
)

Handler = Callable[[ServerRequest], Awaitable["ServerResponse | WebSocketAccept | Answer"]]

KiB = 1024
MB = 1024 * 1024
MAX_RECORDED = 100_000  # requests kept in `requests`; the oldest go first beyond this
ECHO_TEXT_MAX = 64 * KiB  # /echo returns bodies up to this size as text, larger ones hashed
LONGPOLL_TIMEOUT = 30.0  # default hold of a long-poll request without a change
LONGPOLL_TIMEOUT_MAX = 300.0
WAIT_STEP = 0.01  # the polling step of wait_for_requests()

T = TypeVar("T")


def retry_after(value: float | datetime) -> tuple[bytes, bytes]:
    """A `Retry-After` header: delay-seconds, or an HTTP-date (RFC 9110 §10.2.3)."""
    if isinstance(value, datetime):
        return (b"retry-after", http_date(value.timestamp()))
    return (b"retry-after", str(max(0, round(value))).encode())


def stream_bytes(offset: int, size: int) -> bytes:
    """`size` bytes of the deterministic stream at `offset`: byte i is `i % 251`.

    251 is prime, so the pattern never lines up with chunk sizes: a lost, repeated or
    reordered chunk changes the content and is caught by comparing to this.
    """
    period = bytes(range(251))
    start = offset % 251
    reps = (start + size) // 251 + 1
    return (period * reps)[start : start + size]


@dataclass
class _JsonResource:
    body: bytes
    etag: bytes
    last_modified: float
    etag_enabled: bool
    headers: Headers


@dataclass
class _LongPoll:
    cursor_field: str
    param: str
    seq: int = 0
    value: dict[str, Any] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    holding: int = 0

    def body(self) -> bytes:
        return json.dumps({self.cursor_field: self.seq, **self.value}).encode()


class Upstream:
    """A recording, scriptable HTTP/1.1 upstream on 127.0.0.1 (see the module docstring)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.requests: list[ServerRequest] = []
        self.routes: dict[str, Handler] = {}
        self._server = HttpServer(self._handle)
        self._delays: dict[str, float] = {}
        self._json: dict[str, _JsonResource] = {}
        self._longpolls: dict[str, _LongPoll] = {}
        self.route("/echo", self._echo)
        self.route("/echo/*", self._echo)

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> Upstream:
        self.port = await self._server.start(self.host, 0)
        return self

    async def stop(self) -> None:
        await self._server.stop()

    async def __aenter__(self) -> Upstream:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (keep-alive reuse keeps this low)."""
        return self._server.connections

    @property
    def open_connections(self) -> int:
        return self._server.open_connections

    # --- what happened --------------------------------------------------------------------------

    def count(self, path_prefix: str = "/") -> int:
        return sum(1 for r in self.requests if r.path.startswith(path_prefix))

    def requests_to(self, path_prefix: str) -> list[ServerRequest]:
        return [r for r in self.requests if r.path.startswith(path_prefix)]

    async def wait_for_requests(self, path_prefix: str, n: int, timeout: float = 5.0) -> None:
        """Wait until at least `n` requests under `path_prefix` arrived (TimeoutError if not)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.count(path_prefix) < n:  # bounded by the deadline
            if loop.time() >= deadline:
                raise TimeoutError(f"{self.count(path_prefix)} of {n} requests to {path_prefix}")
            await asyncio.sleep(WAIT_STEP)

    # --- registering behaviour ------------------------------------------------------------------

    def route(self, path: str, handler: Handler) -> None:
        """Serve `path` (or every path under it, when it ends in `*`) with `handler`."""
        self.routes[path] = handler

    def set_json(
        self,
        path: str,
        value: Any,
        etag: bool = True,
        *,
        last_modified: bool = True,
        headers: Headers | None = None,
    ) -> None:
        """Serve `value` as JSON; calling again with a new value changes it.

        With validators, a matching `If-None-Match` (or, without one, an `If-Modified-Since`
        not older than the last change) is answered 304. Last-Modified grows by at least a
        second per change, so two changes within one second still compare as different.
        """
        body = json.dumps(value, separators=(",", ":")).encode()
        old = self._json.get(path)
        if old is not None and old.body == body:
            # The same content: its validators stay, so conditional requests still get 304.
            old.etag_enabled = etag
            old.headers = list(headers or [])
            return
        stamp = float(int(time.time()))
        if old is not None:
            stamp = max(stamp, old.last_modified + 1)
        self._json[path] = _JsonResource(
            body=body,
            etag=etag_of(body),
            last_modified=stamp if last_modified else -1.0,
            etag_enabled=etag,
            headers=list(headers or []),
        )
        self.route(path, self._serve_json)

    def json_value(self, path: str) -> Any:
        return json.loads(self._json[path].body)

    def set_status(
        self,
        path: str,
        status: int,
        headers: Headers | None = None,
        body: bytes = b"",
        *,
        times: int | None = None,
    ) -> None:
        """Answer `path` with `status`. With `times`, only the next `times` requests get it;
        after that the path's previous handler (if any) answers again."""
        previous = self.routes.get(path)
        remaining = [times]

        async def handler(request: ServerRequest) -> ServerResponse | WebSocketAccept | Answer:
            if remaining[0] is not None:
                if remaining[0] <= 0:
                    if previous is None:
                        return ServerResponse.text("not found\n", 404)
                    return await previous(request)
                remaining[0] -= 1
            return ServerResponse(status, list(headers or []), body)

        self.route(path, handler)

    def set_delay(self, path: str, seconds: float) -> None:
        """Hold every answer under `path` (exact, or prefix with `*`) for `seconds` before its
        first byte; 0 removes the delay. Applies to whatever handler serves the path."""
        if seconds > 0:
            self._delays[path] = seconds
        else:
            self._delays.pop(path, None)

    def set_stream(
        self,
        path: str,
        total_bytes: int,
        chunk: int = 64 * KiB,
        *,
        content_length: bool = False,
        pause: float = 0.0,
    ) -> None:
        """Stream `stream_bytes(0, total_bytes)` in pieces of `chunk` bytes, chunked (or with
        a Content-Length), optionally sleeping `pause` seconds between pieces."""

        async def handler(request: ServerRequest) -> ServerResponse:
            headers: Headers = [(b"content-type", b"application/octet-stream")]
            if content_length:
                headers.append((b"content-length", str(total_bytes).encode()))
            return ServerResponse(200, headers, _pieces(total_bytes, chunk, pause))

        self.route(path, handler)

    def longpoll(
        self,
        path: str,
        cursor_field: str = "seq",
        param: str = "since",
        initial: dict[str, Any] | None = None,
    ) -> None:
        """A long-poll endpoint whose state moves with `publish(path, obj)`.

        No `param`: the current state at once. `param=N` with N below the current cursor:
        at once. Otherwise held until the next publish or `timeout` seconds (query
        parameter, default 30), then the current state — unchanged if nothing was published.
        The answer is `{cursor_field: seq, **obj}`; seq starts at 0 and grows by 1 a publish.
        """
        self._longpolls[path] = _LongPoll(cursor_field, param, value=dict(initial or {}))
        self.route(path, self._serve_longpoll)

    def publish(self, path: str, value: dict[str, Any]) -> int:
        """Advance the long-poll at `path` to `value`; releases held requests. Returns seq."""
        state = self._longpolls[path]
        state.seq += 1
        state.value = dict(value)
        state.changed.set()
        state.changed = asyncio.Event()  # later waiters wait for the next publish
        return state.seq

    def holding(self, path: str) -> int:
        """How many requests the long-poll at `path` is holding right now."""
        return self._longpolls[path].holding

    def ws_echo(self, path: str) -> None:
        """A WebSocket endpoint that sends every message back, text as text, bytes as bytes."""

        async def echo(ws: WebSocket) -> None:
            async for message in ws:
                await ws.send(message)

        async def handler(request: ServerRequest) -> WebSocketAccept:
            return WebSocketAccept(echo)

        self.route(path, handler)

    # --- serving --------------------------------------------------------------------------------

    async def _handle(self, request: ServerRequest) -> ServerResponse | WebSocketAccept | Answer:
        self.requests.append(request)
        if len(self.requests) > MAX_RECORDED:
            del self.requests[0]
        delay = _lookup(self._delays, request.path)
        if delay:
            await asyncio.sleep(delay)
        handler = _lookup(self.routes, request.path)
        if handler is None:
            return ServerResponse.text("not found\n", 404)
        return await handler(request)

    async def _serve_json(self, request: ServerRequest) -> ServerResponse:
        resource = self._json[request.path]
        validators: Headers = []
        if resource.etag_enabled:
            validators.append((b"etag", resource.etag))
        if resource.last_modified >= 0:
            validators.append((b"last-modified", http_date(resource.last_modified)))
        tag = resource.etag if resource.etag_enabled else None
        stamp = resource.last_modified if resource.last_modified >= 0 else None
        if is_not_modified(request, tag, stamp):
            return ServerResponse(304, [*validators, *resource.headers])
        kind = (b"content-type", b"application/json")
        return ServerResponse(200, [kind, *validators, *resource.headers], resource.body)

    async def _serve_longpoll(self, request: ServerRequest) -> ServerResponse:
        state = self._longpolls[request.path]
        since_text = request.query.get(state.param)
        try:
            since = int(since_text) if since_text is not None else None
            hold = float(request.query.get("timeout", LONGPOLL_TIMEOUT))
        except ValueError:
            return ServerResponse.text(f"{state.param} must be an integer\n", 400)
        if since is not None and since >= state.seq:
            changed = state.changed
            state.holding += 1
            try:
                await asyncio.wait_for(changed.wait(), min(max(hold, 0.0), LONGPOLL_TIMEOUT_MAX))
            except TimeoutError:
                pass
            finally:
                state.holding -= 1
        kind = (b"content-type", b"application/json")
        return ServerResponse(200, [kind, (b"cache-control", b"no-store")], state.body())

    async def _echo(self, request: ServerRequest) -> ServerResponse:
        body = request.body
        text: str | None = None
        if len(body) <= ECHO_TEXT_MAX:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        return ServerResponse.json(
            {
                "method": request.method,
                "target": request.target,
                "path": request.path,
                "query": request.query,
                "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in request.headers],
                "body": text,
                "body_length": len(body),
                "body_sha256": hashlib.sha256(body).hexdigest(),
                "connection_id": request.connection_id,
                "client": list(request.client),
            }
        )


def _lookup(table: dict[str, T], path: str) -> T | None:
    """Exact match first, then the longest `prefix*` entry that `path` starts with."""
    if path in table:
        return table[path]
    best: tuple[int, T] | None = None
    for key, value in table.items():
        if key.endswith("*") and path.startswith(key[:-1]):
            if best is None or len(key) > best[0]:
                best = (len(key), value)
    return best[1] if best else None


async def _pieces(total: int, chunk: int, pause: float) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:  # bounded: `sent` grows by at least one byte a turn
        size = min(max(chunk, 1), total - sent)
        yield stream_bytes(sent, size)
        sent += size
        if pause and sent < total:
            await asyncio.sleep(pause)
