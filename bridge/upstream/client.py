"""The upstream HTTP/1.1 client: h11 over asyncio, with a keep-alive pool per origin.

Our own client (not a general-purpose library) because the proxy needs exact header control
and backpressure both ways: while nobody reads a response body, the connection stops reading
from the socket beyond `settings.READ_HIGH_WATER`, so a slow client slows the upstream.
Every await is bounded: connect + send + response head by the upstream's `timeout`, each body
read by `settings.UPSTREAM_IDLE_TIMEOUT`.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

import h11

from .. import settings
from ..errors import ErrorCode, StreamError
from ..events import Headers
from ..routing.model import Upstream

_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


class UpstreamError(StreamError):
    """The upstream failed us; the subclass says how."""


class UpstreamUnreachable(UpstreamError):
    def __init__(self, detail: str) -> None:
        super().__init__(ErrorCode.UPSTREAM_UNREACHABLE, detail)


class UpstreamTimeout(UpstreamError):
    def __init__(self, detail: str) -> None:
        super().__init__(ErrorCode.UPSTREAM_TIMEOUT, detail)


class _Stale(Exception):
    """A pooled connection turned out dead before any response byte: safe to retry."""


class _Connection(asyncio.Protocol):
    def __init__(self, origin: tuple[str, str, int]) -> None:
        self.origin = origin
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=settings.MAX_HEADER_BYTES)
        self.transport: asyncio.Transport | None = None
        self._inbound: deque[bytes] = deque()
        self._size = 0
        self._eof = False
        self._reader: asyncio.Future[None] | None = None
        self._drain: asyncio.Future[None] | None = None
        self._paused = False
        self._write_paused = False
        self.idle_since = 0.0
        self.got_bytes = False

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self._inbound.append(data)
        self._size += len(data)
        self.got_bytes = True
        if self._size > settings.READ_HIGH_WATER and not self._paused and self.transport:
            self._paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._wake()
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)

    def _wake(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    # used by the pool and responses
    @property
    def alive(self) -> bool:
        return (
            self.transport is not None
            and not self.transport.is_closing()
            and not self._eof
            and not self._inbound
        )

    def write(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data and self.transport is not None:
            if self.transport.is_closing():
                raise ConnectionResetError("upstream connection closed")
            self.transport.write(data)

    async def drain(self) -> None:
        while self._write_paused and not self._eof:
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain
        if self._eof and self.transport is not None and self.transport.is_closing():
            raise ConnectionResetError("upstream connection closed")

    async def next_event(self, timeout: float) -> h11.Event:
        """The next h11 event, waiting at most `timeout` seconds for bytes (TimeoutError)."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            while not self._inbound:
                if self._eof:
                    self.h11.receive_data(b"")
                    break
                # A timer handle instead of asyncio.wait_for: wait_for costs a Task per call,
                # and this is awaited several times per proxied request.
                loop = asyncio.get_running_loop()
                reader = self._reader = loop.create_future()
                timer = loop.call_later(timeout, _expire, reader)
                try:
                    await reader
                finally:
                    timer.cancel()
                    self._reader = None
            else:
                data = self._inbound.popleft()
                self._size -= len(data)
                if self._paused and self._size < settings.READ_HIGH_WATER // 2 and self.transport:
                    self._paused = False
                    self.transport.resume_reading()
                self.h11.receive_data(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def _expire(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class UpstreamResponse:
    def __init__(
        self,
        pool: UpstreamPool,
        conn: _Connection,
        status: int,
        reason: bytes,
        headers: Headers,
        http_version: str,
    ) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self.status = status
        self.reason = reason
        self.headers = headers
        self.http_version = http_version
        self._done = False

    async def read(self) -> bytes:
        conn = self._conn
        if self._done or conn is None:
            return b""
        try:
            event = await conn.next_event(settings.UPSTREAM_IDLE_TIMEOUT)
        except TimeoutError:
            await self.aclose()
            raise UpstreamTimeout("upstream body stalled") from None
        except h11.RemoteProtocolError as exc:
            await self.aclose()
            raise UpstreamUnreachable(f"upstream sent an invalid body: {exc}") from None
        if isinstance(event, h11.Data):
            return bytes(event.data)
        if isinstance(event, h11.EndOfMessage):
            self._done = True
            return b""
        await self.aclose()
        raise UpstreamUnreachable("upstream closed the connection mid-body")

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[bytes]:
        while True:
            piece = await self.read()
            if not piece:
                return
            yield piece

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._done:
            self._pool._release(conn)
        else:
            conn.close()


class UpstreamPool:
    def __init__(
        self,
        *,
        connect_timeout: float = settings.UPSTREAM_CONNECT_TIMEOUT,
        idle_timeout: float = settings.UPSTREAM_IDLE_TIMEOUT,
        max_idle_per_origin: int = settings.UPSTREAM_POOL_MAX_IDLE,
        pool_idle: float = settings.UPSTREAM_POOL_IDLE,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.max_idle_per_origin = max_idle_per_origin
        self.pool_idle = pool_idle
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self.connections_opened = 0

    def _checkout(self, origin: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        now = time.monotonic()
        while idle:
            conn = idle.pop()  # LIFO: the warmest connection, and old ones age out
            if conn.alive and now - conn.idle_since < self.pool_idle:
                return conn
            conn.close()
        return None

    def _release(self, conn: _Connection) -> None:
        h = conn.h11
        if h.our_state is h11.DONE and h.their_state is h11.DONE and conn.alive:
            h.start_next_cycle()
            idle = self._idle.setdefault(conn.origin, [])
            if len(idle) < self.max_idle_per_origin:
                conn.idle_since = time.monotonic()
                idle.append(conn)
                return
        conn.close()

    async def _connect(self, upstream: Upstream, timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(
                    lambda: _Connection(upstream.origin), upstream.host, upstream.port
                ),
                min(timeout, self.connect_timeout),
            )
        except TimeoutError:
            raise UpstreamTimeout(f"connect to {upstream.authority} timed out") from None
        except OSError as exc:
            raise UpstreamUnreachable(
                f"cannot connect to {upstream.authority}: {exc.strerror or exc}"
            ) from None
        self.connections_opened += 1
        return conn

    async def request(
        self,
        upstream: Upstream,
        method: str,
        target: str,
        headers: Headers,
        body: bytes | AsyncIterator[bytes] | None = None,
        *,
        content_length: int | None = None,
        timeout: float | None = None,
        on_informational: Callable[[int, Headers], None] | None = None,
    ) -> UpstreamResponse:
        timeout = upstream.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        replayable = not isinstance(body, AsyncIterator) and (method in _IDEMPOTENT or not body)
        head = list(headers)
        if isinstance(body, bytes):
            head = [(n, v) for n, v in head if n != b"content-length"]
            head.append((b"content-length", str(len(body)).encode()))
        elif body is not None:
            head = [(n, v) for n, v in head if n not in (b"content-length", b"transfer-encoding")]
            if content_length is not None:
                head.append((b"content-length", str(content_length).encode()))
            else:
                head.append((b"transfer-encoding", b"chunked"))
        target = upstream.base_path + target
        for attempt in range(2):
            conn = self._checkout(upstream.origin)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(upstream, max(0.001, deadline - time.monotonic()))
            try:
                return await self._exchange(
                    conn, method, target, head, body, deadline, on_informational
                )
            except _Stale:
                conn.close()
                if reused and replayable and attempt == 0:
                    continue
                raise UpstreamUnreachable("upstream closed the connection") from None
            except BaseException:
                conn.close()
                raise
        raise UpstreamUnreachable("upstream closed the connection")  # pragma: no cover

    async def _exchange(
        self,
        conn: _Connection,
        method: str,
        target: str,
        head: Headers,
        body: bytes | AsyncIterator[bytes] | None,
        deadline: float,
        on_informational: Callable[[int, Headers], None] | None,
    ) -> UpstreamResponse:
        try:
            conn.write(h11.Request(method=method, target=target, headers=head))
        except h11.LocalProtocolError as exc:
            raise StreamError(ErrorCode.BAD_REQUEST, f"cannot forward request: {exc}") from None
        except ConnectionError:
            raise _Stale() from None
        try:
            if isinstance(body, bytes):
                if body:
                    conn.write(h11.Data(data=body))
            elif body is not None:
                async for piece in body:
                    conn.write(h11.Data(data=piece))
                    await asyncio.wait_for(conn.drain(), settings.SEND_TIMEOUT)
            conn.write(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            raise StreamError(ErrorCode.BAD_REQUEST, f"request body: {exc}") from None
        except (ConnectionError, TimeoutError):
            if not conn.got_bytes:
                raise _Stale() from None
            raise UpstreamUnreachable("upstream stopped reading the request body") from None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamTimeout("upstream did not answer in time")
            try:
                event = await conn.next_event(remaining)
            except TimeoutError:
                raise UpstreamTimeout("upstream did not answer in time") from None
            except h11.RemoteProtocolError as exc:
                if not conn.got_bytes:
                    raise _Stale() from None
                raise UpstreamUnreachable(f"upstream sent an invalid response: {exc}") from None
            if isinstance(event, h11.ConnectionClosed):
                raise _Stale() if not conn.got_bytes else UpstreamUnreachable("upstream closed")
            if isinstance(event, h11.InformationalResponse):
                if on_informational is not None:
                    on_informational(event.status_code, list(event.headers))
                continue
            if isinstance(event, h11.Response):
                headers = [(bytes(n), bytes(v)) for n, v in event.headers]
                names = {n for n, _ in headers}
                if b"content-length" in names and b"transfer-encoding" in names:
                    raise UpstreamUnreachable(
                        "upstream sent both Content-Length and Transfer-Encoding"
                    )
                response = UpstreamResponse(
                    self,
                    conn,
                    event.status_code,
                    bytes(event.reason),
                    headers,
                    event.http_version.decode(),
                )
                return response
            raise UpstreamUnreachable(f"unexpected upstream event {type(event).__name__}")

    async def fetch(
        self,
        upstream: Upstream,
        target: str,
        headers: Headers,
        *,
        timeout: float,
        max_bytes: int,
    ) -> tuple[int, Headers, bytes]:
        """GET and read the whole (bounded) body: what the stream poller needs."""
        response = await self.request(upstream, "GET", target, headers, timeout=timeout)
        try:
            pieces: list[bytes] = []
            size = 0
            async for piece in response:
                size += len(piece)
                if size > max_bytes:
                    raise UpstreamError(
                        ErrorCode.UPSTREAM_UNREACHABLE, f"answer larger than {max_bytes} bytes"
                    )
                pieces.append(piece)
            return response.status, response.headers, b"".join(pieces)
        finally:
            await response.aclose()

    async def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
