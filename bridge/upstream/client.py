"""The upstream HTTP/1.1 client: llhttp (httptools) over an asyncio Protocol, with a keep-alive
pool per origin. Answers are parsed by `reader.ResponseReader`; requests are written directly.

Our own client (not a general-purpose library) because the proxy needs exact header control and
backpressure both ways:

- Request bodies are written piece by piece, and the next piece is pulled from the caller only
  once the socket has drained below the transport's write watermark.
- While nobody reads a response body, the connection stops reading from the socket once more
  than `settings.READ_HIGH_WATER` bytes wait unread, so a slow client slows the upstream down
  through TCP flow control instead of filling our memory. Reads are at most
  `settings.READ_CHUNK` (a `BufferedProtocol` into one shared buffer): a plain Protocol gets
  whatever the loop read, 256 KiB at a time on uvloop, on top of the high watermark, for each
  of hundreds of responses a client may stall (issue 13 item 3).

Every await is bounded: `timeout` (default: the upstream's own) covers connecting, sending and
the response head (see `UpstreamPool.request`); each body read is bounded by the pool's
`idle_timeout`. Waits are a bare future with one timer per connection, re-armed lazily (it
fires at the deadline it was set for and, if the current deadline is later, sets itself again):
`asyncio.wait_for` would cost a Task per await, and a timer per wait is a timer-heap insert and
removal per request on the proxy's hot path.

Errors are `UpstreamUnreachable` (502: refused, reset, closed early, or bytes that are not
HTTP/1.1) and `UpstreamTimeout` (504). A pooled connection that turns out to be dead before
the upstream sent a single byte of the answer (it closed the connection while idle, racing our
request) is retried once on a fresh connection when repeating the request is safe: RFC 9110
§9.2.2 idempotent methods, or requests without a body.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable

from .. import settings
from ..errors import ErrorCode, StreamError
from ..events import Headers
from ..protocol import h1wire
from ..routing.model import Upstream
from . import reader as wire
from .pool import IdlePool

# RFC 9110 §9.2.2.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_FRAMING = frozenset({b"content-length", b"transfer-encoding"})
# Above this, a request body is handed to the transport as its own buffer instead of being
# joined with the head (a copy); below it, one buffer means one send.
_JOIN_LIMIT = 16 * 1024
# An upstream may send a few 1xx heads before the final one (100, 103); more is a flood.
_MAX_INFORMATIONAL = 16

Origin = tuple[str, str, int]


class UpstreamError(StreamError):
    """The upstream failed us; the subclass (or `code`) says how."""


class UpstreamUnreachable(UpstreamError):
    """Connect refused or reset, closed before a whole answer, or an answer that is not HTTP."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorCode.UPSTREAM_UNREACHABLE, detail)


class UpstreamTimeout(UpstreamError):
    def __init__(self, detail: str) -> None:
        super().__init__(ErrorCode.UPSTREAM_TIMEOUT, detail)


class _Stale(Exception):
    """The connection died before any byte of the answer: the request may be retried."""


# One read buffer for every upstream connection: the loop runs one callback at a time and
# `buffer_updated` copies the bytes out before it returns.
_READ_BUFFER = memoryview(bytearray(settings.READ_CHUNK))


class _Connection(asyncio.BufferedProtocol):
    """One TCP connection to an upstream: the socket callbacks, an inbound queue bounded by
    pausing the transport, and the llhttp reader of its answers."""

    __slots__ = (
        "_deadline",
        "_drain_waiter",
        "_inbound",
        "_read_paused",
        "_reader",
        "_timer",
        "_write_paused",
        "answered",
        "buffered",
        "closed",
        "early",
        "eof",
        "idle_since",
        "loop",
        "origin",
        "reader",
        "request_done",
        "transport",
    )

    def __init__(self, origin: Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.origin = origin
        self.loop = loop
        self.reader = wire.ResponseReader()
        self.request_done = False  # the whole current request has been handed to the socket
        self.transport: asyncio.Transport | None = None
        self._inbound: deque[bytes] = deque()
        self.buffered = 0  # bytes in _inbound, not yet parsed
        self.eof = False  # the upstream closed its side (or the socket is gone)
        self.closed = False  # we closed, or the socket is gone
        self.answered = False  # a byte of the current exchange's answer has arrived
        self.early: tuple | None = None  # a head that came while we were still sending
        self._reader: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self._write_paused = False
        self.idle_since = 0.0
        # The one timer of the waits (see the module docstring): what it guards is `_deadline`.
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0

    # --- asyncio callbacks -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - already set, or not TCP
                pass

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_READ_BUFFER[:nbytes]))

    def data_received(self, data: bytes) -> None:
        self._inbound.append(data)
        self.buffered += len(data)
        self.answered = True
        if self.buffered > settings.READ_HIGH_WATER and not self._read_paused:
            self._read_paused = True
            if self.transport is not None and not self.transport.is_closing():
                self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake()
        return None  # close our side too: an upstream that stopped sending is done with us

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.closed = True
        self._cancel_timer()
        # The transport refers to us as its protocol: without this the pair is a reference
        # cycle that waits for a full collection (rare under settings.GC_THRESHOLDS).
        self.transport = None
        self._wake()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- state -----------------------------------------------------------------------------
    @property
    def reusable(self) -> bool:
        """Idle and clean: the socket is open and the upstream has sent nothing since the last
        answer (a stray byte on an idle connection means it is not speaking HTTP to us)."""
        return not self.eof and not self.closed and not self._inbound

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    def close(self) -> None:
        self.closed = True
        self._cancel_timer()
        self.reader.detach()
        if self.transport is not None:
            self.transport.close()

    # --- the wait timer -----------------------------------------------------------------------
    def _wait(self, deadline: float) -> asyncio.Future[None]:
        """A future that the next socket event completes, or TimeoutError at `deadline`."""
        waiter = self.loop.create_future()
        self._deadline = deadline
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._expired)
        return waiter

    def _expired(self) -> None:
        self._timer = None
        waiters = [w for w in (self._reader, self._drain_waiter) if w is not None and not w.done()]
        if not waiters:
            return  # nothing waits now; the next wait arms the timer again
        if self.loop.time() < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._expired)
            return
        for waiter in waiters:
            waiter.set_exception(TimeoutError())

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- writing -----------------------------------------------------------------------------
    def write(self, pieces: list[bytes]) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("upstream connection closed")
        if len(pieces) == 1:
            self.transport.write(pieces[0])
        elif pieces:
            self.transport.writelines(pieces)

    async def wait_writable(self, timeout: float) -> None:
        """One wait for the transport to take more bytes, or for answer bytes to arrive (the
        caller looks for an early answer). TimeoutError, or ConnectionResetError once closed."""
        if self.closed:
            raise ConnectionResetError("upstream connection closed")
        waiter = self._drain_waiter = self._wait(self.loop.time() + timeout)
        try:
            await waiter
        finally:
            self._drain_waiter = None
        if self.closed:
            raise ConnectionResetError("upstream connection closed")

    # --- reading -----------------------------------------------------------------------------
    def poll_event(self) -> tuple:
        """The next answer event from bytes already here, parsing one buffered piece at a time
        (so the parsed events waiting stay bounded by one socket read); `wire.NEED_DATA` when
        more bytes are needed. Raises `wire.ResponseError`."""
        reader = self.reader
        event = reader.next()
        while event is wire.NEED_DATA:
            if self._inbound:
                data = self._inbound.popleft()
                self.buffered -= len(data)
                if self._read_paused and self.buffered <= settings.READ_HIGH_WATER // 2:
                    self._read_paused = False
                    if self.transport is not None and not self.transport.is_closing():
                        self.transport.resume_reading()
                reader.feed(data)
            elif self.eof:
                reader.feed_eof()  # the end of a close-delimited body, or an error
                return reader.next()
            else:
                return event
            event = reader.next()
        return event

    async def next_event(self, timeout: float) -> tuple:
        """The next answer event, waiting at most `timeout` seconds for bytes (TimeoutError)."""
        event = self.poll_event()
        if event is not wire.NEED_DATA:
            return event
        return await self.wait_event(self.loop.time() + timeout)

    async def wait_event(self, deadline: float) -> tuple:
        """The next answer event once more bytes come, by `deadline` (TimeoutError)."""
        while True:
            await self.readable(deadline)
            event = self.poll_event()
            if event is not wire.NEED_DATA:
                return event

    def readable(self, deadline: float) -> asyncio.Future[None]:
        """What to await for more answer bytes (or the end of the socket), by `deadline`.
        A plain future, not a coroutine: the proxy's head wait adds no frame of its own."""
        reader = self._reader = self._wait(deadline)
        return reader


class UpstreamResponse:
    """The head of an upstream answer, and its body as pieces of at most `settings.BODY_CHUNK`.

    Read the body to the end (or `aclose()` it): a fully read answer returns its connection to
    the pool, anything else closes it.
    """

    __slots__ = (
        "_conn",
        "_done",
        "_idle_timeout",
        "_pool",
        "_rest",
        "headers",
        "http_version",
        "reason",
        "status",
    )

    def __init__(
        self,
        pool: UpstreamPool,
        conn: _Connection,
        event: tuple,
    ) -> None:
        self._pool = pool
        self._conn: _Connection | None = conn
        self._idle_timeout = pool.idle_timeout
        self._rest: memoryview | None = None  # the unreturned tail of an oversized piece
        self._done = False
        _, self.status, self.reason, self.headers, self.http_version = event

    @property
    def complete(self) -> bool:
        """The whole body has been read."""
        return self._done and self._rest is None

    async def read(self) -> bytes:
        """The next body piece (at most `settings.BODY_CHUNK` bytes); b"" at the end."""
        rest = self._rest
        if rest is not None:
            return self._split(rest)
        if self._done:
            return b""
        conn = self._conn
        if conn is None:
            raise UpstreamUnreachable("upstream answer was closed before its end")
        while True:
            try:
                event = await conn.next_event(self._idle_timeout)
            except TimeoutError:
                self._abort()
                raise UpstreamTimeout(
                    f"upstream sent no body bytes for {self._idle_timeout:g}s"
                ) from None
            except wire.ResponseError as exc:
                self._abort()
                if exc.eof:
                    raise UpstreamUnreachable(
                        "upstream closed the connection before the end of the body"
                    ) from None
                raise UpstreamUnreachable(f"upstream sent an invalid body: {exc}") from None
            kind = event[0]
            if kind == wire.DATA:
                data = event[1]
                size = len(data)
                if size > settings.BODY_CHUNK:
                    return self._split(memoryview(data))
                if size:
                    return data  # type: ignore[no-any-return]
                continue
            if kind == wire.END:
                self._finish()
                return b""
            self._abort()
            raise UpstreamUnreachable("unexpected head in the upstream body")

    def whole_body(self) -> bytes | None:
        """The whole rest of the body if it is already here, else None (nothing is read)."""
        conn = self._conn
        if conn is None or self._done or self._rest is not None:
            return None
        body = conn.reader.take_whole_body()
        if body is not None:
            self._finish()
        return body

    def _split(self, view: memoryview) -> bytes:
        chunk = settings.BODY_CHUNK
        if len(view) > chunk:
            self._rest = view[chunk:]
            return bytes(view[:chunk])
        self._rest = None
        return bytes(view)

    def __aiter__(self) -> UpstreamResponse:
        return self

    async def __anext__(self) -> bytes:
        piece = await self.read()
        if not piece:
            raise StopAsyncIteration
        return piece

    async def aclose(self) -> None:
        """Give the connection back (body fully read, reusable) or close it. Idempotent."""
        self.close()

    def close(self) -> None:
        """`aclose`, which never needs to wait."""
        conn = self._conn
        if conn is None:
            return
        if not self._done:
            self._finish_buffered(conn)
        if self._conn is not None:
            self._abort()

    def _finish_buffered(self, conn: _Connection) -> None:
        # An answer whose end is already here (no body: HEAD, 204, 304; or a small body the
        # caller did not want) still leaves a reusable connection: finish it without waiting.
        try:
            while True:
                event = conn.poll_event()
                if event and event[0] == wire.DATA:
                    continue
                if event and event[0] == wire.END:
                    self._rest = None
                    self._finish()
                return
        except wire.ResponseError:
            return

    def _finish(self) -> None:
        self._done = True
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool._release(conn)

    def _abort(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class UpstreamPool:
    """HTTP/1.1 requests to upstreams over reused connections (see the module docstring)."""

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
        self._idle: IdlePool[_Connection] = IdlePool(
            max_per_origin=max_idle_per_origin, max_idle=pool_idle
        )
        self.connections_opened = 0  # a statistic (and what tests count)

    def idle_count(self, upstream: Upstream | None = None) -> int:
        """Idle pooled connections, for one upstream's origin or all."""
        return len(self._idle) if upstream is None else self._idle.count(upstream.origin)

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
        """Send one request and return the answer's head; its body is read from the result.

        `target` is path + query (the upstream's `base_path` goes in front); `headers` are sent
        as given (Host included) except the framing, which follows `body`: bytes get a
        Content-Length, an async iterator gets `content_length` or else chunked encoding, None
        (or b"") sends `headers` unchanged. 1xx heads go to `on_informational`, if given.

        `timeout` (default `upstream.timeout`) bounds connect + sending + the response head as
        one deadline. A streamed body moves at the client's pace, so there it bounds each wait
        for the upstream to take more bytes, and the head gets a fresh `timeout` once the body
        is sent. Errors: UpstreamUnreachable, UpstreamTimeout, StreamError(BAD_REQUEST) for a
        request that cannot be sent (bad header bytes, a body longer than `content_length`);
        the body iterator's own exceptions pass through unchanged.
        """
        timeout = upstream.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        head = _framed(headers, body, content_length)
        target = upstream.base_path + target if upstream.base_path else target
        try:
            request = wire.request_head(method, target, head)
            framing = _body_framing(head)
        except (ValueError, UnicodeError) as exc:
            raise StreamError(ErrorCode.BAD_REQUEST, f"cannot forward request: {exc}") from None
        streamed = body is not None and not isinstance(body, bytes)
        pulled: list[bool] = [False]  # an iterator body can be replayed only if untouched
        safe = method in _IDEMPOTENT or not body
        origin = upstream.origin
        for attempt in (0, 1):
            conn = self._idle.checkout(origin)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(upstream, deadline - loop.time())
            try:
                return await self._exchange(
                    conn, method, request, framing, body, deadline, timeout, on_informational,
                    pulled,
                )  # fmt: skip
            except _Stale:
                conn.close()
                if reused and attempt == 0 and safe and not (streamed and pulled[0]):
                    continue
                raise UpstreamUnreachable(
                    f"{upstream.authority} closed the connection without answering"
                ) from None
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connect(self, upstream: Upstream, remaining: float) -> _Connection:
        loop = asyncio.get_running_loop()
        limit = min(remaining, self.connect_timeout)
        if limit <= 0:
            raise UpstreamTimeout(f"no time left to connect to {upstream.authority}")
        origin = upstream.origin
        made: list[_Connection] = []

        def protocol() -> _Connection:
            made.append(_Connection(origin, loop))
            return made[0]

        try:
            try:
                async with asyncio.timeout(limit):
                    _, conn = await loop.create_connection(protocol, upstream.host, upstream.port)
            except BaseException:
                # Cancelled (the client left) or timed out once the socket had connected: the
                # loop closes the transport without telling the protocol, so the pair would
                # stay a reference cycle until a full collection. Break it here.
                for orphan in made:
                    orphan.close()
                    orphan.transport = None
                raise
        except TimeoutError:
            raise UpstreamTimeout(f"connect to {upstream.authority} timed out") from None
        except OSError as exc:  # refused, unreachable, DNS (socket.gaierror)
            raise UpstreamUnreachable(
                f"cannot connect to {upstream.authority}: {exc.strerror or exc}"
            ) from None
        self.connections_opened += 1
        return conn

    async def _exchange(
        self,
        conn: _Connection,
        method: str,
        request: bytes,
        framing: int | None,
        body: bytes | AsyncIterator[bytes] | None,
        deadline: float,
        timeout: float,
        on_informational: Callable[[int, Headers], None] | None,
        pulled: list[bool],
    ) -> UpstreamResponse:
        conn.answered = False
        conn.early = None
        conn.reader.begin(method)
        streamed = body is not None and not isinstance(body, bytes)
        conn.request_done = not streamed
        if not isinstance(body, bytes) or not body:
            pieces = [request]
        elif len(body) > _JOIN_LIMIT:
            pieces = [request, body]
        else:
            pieces = [request + body]
        # The common case (the socket takes the request at once) awaits nothing here.
        try:
            conn.write(pieces)
        except ConnectionError:
            raise _Stale() from None
        sending = True
        if conn.write_paused:
            sending = await self._send(conn, [], deadline - conn.loop.time(), on_informational)
        if sending and streamed:
            assert body is not None and not isinstance(body, bytes)
            if await self._send_body(conn, body, framing, timeout, pulled, on_informational):
                # The body's pace is the client's: the answer's clock starts after it.
                deadline = conn.loop.time() + timeout
        return await self._read_head(conn, deadline, on_informational)

    async def _send(
        self,
        conn: _Connection,
        pieces: list[bytes],
        timeout: float,
        on_informational: Callable[[int, Headers], None] | None,
    ) -> bool:
        """Write `pieces` and wait until the transport takes more. False: the upstream has
        started its answer and stopped taking the request (RFC 9112 §9.5 lets a server answer
        before the request is complete); the caller then reads that answer instead."""
        try:
            conn.write(pieces)
            while conn.write_paused:
                if conn.answered and _early_head(conn, on_informational):
                    return False
                await conn.wait_writable(timeout)
        except ConnectionError:
            if conn.answered:
                return False
            raise _Stale() from None
        except TimeoutError:
            if conn.answered:
                return False
            raise UpstreamTimeout(f"upstream accepted no request bytes for {timeout:g}s") from None
        return True

    async def _send_body(
        self,
        conn: _Connection,
        body: AsyncIterator[bytes],
        length: int | None,
        timeout: float,
        pulled: list[bool],
        on_informational: Callable[[int, Headers], None] | None,
    ) -> bool:
        """Stream `body` (`length` bytes, or chunked when None), then end it; False if the
        upstream answered early (see `_send`)."""
        iterator = body.__aiter__()
        left = length
        while True:
            # The body's own errors (the client went away, a size limit) are not the
            # upstream's: they propagate as they are, and the connection is closed.
            try:
                piece = await iterator.__anext__()
            except StopAsyncIteration:
                break
            pulled[0] = True
            if not piece:
                continue
            if left is None:
                framed = h1wire.chunk(piece)
            else:
                left -= len(piece)
                if left < 0:
                    raise StreamError(
                        ErrorCode.BAD_REQUEST, "request body: more than its Content-Length"
                    )
                framed = piece
            if not await self._send(conn, [framed], timeout, on_informational):
                return False
        if left:
            raise StreamError(ErrorCode.BAD_REQUEST, "request body: less than its Content-Length")
        end = [h1wire.LAST_CHUNK] if left is None else []
        if await self._send(conn, end, timeout, on_informational):
            conn.request_done = True
            return True
        return False

    async def _read_head(
        self,
        conn: _Connection,
        deadline: float,
        on_informational: Callable[[int, Headers], None] | None,
    ) -> UpstreamResponse:
        """The answer's head, skipping (and reporting) any 1xx before it, by `deadline`."""
        informational = 0
        while True:
            try:
                event: tuple
                if conn.early is not None:
                    event, conn.early = conn.early, None
                else:
                    event = conn.poll_event()
                    while event is wire.NEED_DATA:
                        await conn.readable(deadline)
                        event = conn.poll_event()
            except TimeoutError:
                raise UpstreamTimeout("upstream did not answer in time") from None
            except wire.ResponseError as exc:
                if not conn.answered:
                    raise _Stale() from None
                if exc.eof:
                    raise UpstreamUnreachable(
                        "upstream closed the connection in the middle of the response head"
                    ) from None
                raise UpstreamUnreachable(f"upstream sent an invalid response: {exc}") from None
            kind = event[0]
            if kind == wire.HEAD:
                return UpstreamResponse(self, conn, event)
            if kind == wire.INFO:
                informational += 1
                if informational > _MAX_INFORMATIONAL:
                    raise UpstreamUnreachable("upstream sent too many 1xx responses")
                if on_informational is not None:
                    on_informational(event[1], event[2])
                continue
            raise UpstreamUnreachable("upstream sent an invalid response")

    def _release(self, conn: _Connection) -> None:
        """After a whole answer: keep the connection if the request was sent whole, the answer
        allows another (keep-alive, no stray bytes) and the socket is still open."""
        reader = conn.reader
        if conn.request_done and reader.keep_alive and not reader.stray and conn.reusable:
            self._idle.checkin(conn.origin, conn)
        else:
            conn.close()

    async def fetch(
        self,
        upstream: Upstream,
        target: str,
        headers: Headers,
        *,
        timeout: float,
        max_bytes: int,
    ) -> tuple[int, Headers, bytes]:
        """GET `target` and read the whole body, at most `max_bytes` of it (else UpstreamError):
        what the stream poller and the asset cache need."""
        response = await self.request(upstream, "GET", target, headers, timeout=timeout)
        try:
            declared = _content_length(response.headers)
            if declared is not None and declared > max_bytes:
                response._abort()  # not worth reading to the end for the connection's sake
                raise UpstreamError(
                    ErrorCode.UPSTREAM_UNREACHABLE,
                    f"upstream answer is {declared} bytes, more than the limit of {max_bytes}",
                )
            pieces: list[bytes] = []
            size = 0
            while piece := await response.read():
                size += len(piece)
                if size > max_bytes:
                    response._abort()
                    raise UpstreamError(
                        ErrorCode.UPSTREAM_UNREACHABLE,
                        f"upstream answer is larger than the limit of {max_bytes} bytes",
                    )
                pieces.append(piece)
            body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            return response.status, response.headers, body
        finally:
            await response.aclose()

    async def close(self) -> None:
        """Close every idle connection; answers still being read close theirs when done."""
        self._idle.close()


def _framed(
    headers: Headers, body: bytes | AsyncIterator[bytes] | None, content_length: int | None
) -> Headers:
    """`headers` with the framing fields our body needs (the caller's are replaced)."""
    if not body:
        return headers
    head = [(n, v) for n, v in headers if n not in _FRAMING]
    if isinstance(body, bytes):
        head.append((b"content-length", b"%d" % len(body)))
    elif content_length is not None:
        head.append((b"content-length", b"%d" % content_length))
    else:
        head.append((b"transfer-encoding", b"chunked"))
    return head


def _body_framing(headers: Headers) -> int | None:
    """The Content-Length `headers` announce, or None (chunked, or no body)."""
    for name, value in headers:
        if name == b"content-length":
            return int(value)
    return None


def _content_length(headers: Headers) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _early_head(conn: _Connection, on_informational: Callable[[int, Headers], None] | None) -> bool:
    """Parse answer bytes that arrived while we were sending: True once a final head is here
    (kept in `conn.early` for `_read_head`), or when the bytes are garbage (`_read_head`
    reports that)."""
    try:
        while True:
            event = conn.poll_event()
            if event and event[0] == wire.INFO:
                if on_informational is not None:
                    on_informational(event[1], event[2])
                continue
            if event and event[0] == wire.HEAD:
                conn.early = event
                return True
            return event is not wire.NEED_DATA
    except wire.ResponseError:
        return True


__all__ = [
    "UpstreamError",
    "UpstreamPool",
    "UpstreamResponse",
    "UpstreamTimeout",
    "UpstreamUnreachable",
]
