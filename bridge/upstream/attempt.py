"""One request on its way to an upstream: sending it on a connection and reading the answer's
head.

An `Attempt` holds what `UpstreamPool.request` prepared once (the request head, the body, the
timeout, the 1xx callback) and is run on a connection; when a pooled connection turns out to
be dead before the upstream sent a byte of the answer (`Stale`), the pool runs the same
attempt again on a fresh one if `retryable` says repeating it is safe. One slotted object per
request, in place of a parameter list passed down each step.

Request bodies are written piece by piece, and the next piece is pulled from the caller only
once the socket has drained below the transport's write watermark. An upstream may answer
before the request is complete (RFC 9112 §9.5): the sender then stops and reads that answer.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from .. import settings
from ..errors import ErrorCode, StreamError
from ..events import Headers
from ..protocol import h1wire
from . import reader as wire
from .connection import Connection
from .errors import UpstreamTimeout, UpstreamUnreachable

# RFC 9110 §9.2.2.
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

Informational = Callable[[int, Headers], None]


class Stale(Exception):
    """The connection died before any byte of the answer: the request may be retried."""


class Attempt:
    __slots__ = (
        "body",
        "framing",
        "method",
        "on_informational",
        "pulled",
        "request",
        "timeout",
        "upgrade",
    )

    def __init__(
        self,
        method: str,
        request: bytes,
        body: bytes | AsyncIterator[bytes] | None,
        framing: int | None,
        timeout: float,
        on_informational: Informational | None,
        *,
        upgrade: bool = False,
    ) -> None:
        self.method = method
        self.request = request  # the request line and header block
        self.body = body
        self.framing = framing  # the body's Content-Length; None: chunked (or no body)
        self.timeout = timeout
        self.on_informational = on_informational
        self.upgrade = upgrade  # a 101 ends the HTTP part (see `Connection.tunnel`)
        self.pulled = False  # an iterator body can be replayed only if untouched

    @property
    def retryable(self) -> bool:
        """Safe to send again after `Stale`: an idempotent method or no body, and a streamed
        body not yet pulled from."""
        body = self.body
        if self.method not in _IDEMPOTENT and body:
            return False
        return isinstance(body, bytes) or body is None or not self.pulled

    async def run(self, conn: Connection, deadline: float) -> tuple:
        """Send the request on `conn` and return the final head's event (`wire.HEAD`), by
        `deadline`. Errors: `Stale`, UpstreamUnreachable, UpstreamTimeout, StreamError."""
        conn.answered = False
        conn.early = None
        body = self.body
        conn.reader.begin(self.method, upgrade=self.upgrade)
        streamed = body is not None and not isinstance(body, bytes)
        conn.request_done = not streamed
        if not isinstance(body, bytes) or not body:
            pieces = [self.request]
        elif len(body) > settings.UPSTREAM_JOIN_LIMIT:
            pieces = [self.request, body]
        else:
            pieces = [self.request + body]
        # The common case (the socket takes the request at once) awaits nothing here.
        try:
            conn.write(pieces)
        except ConnectionError:
            raise Stale() from None
        sending = True
        if conn.write_paused:
            sending = await self._send(conn, [], deadline - conn.loop.time())
        if sending and streamed:
            assert body is not None and not isinstance(body, bytes)
            if await self._send_body(conn, body):
                # The body's pace is the client's: the answer's clock starts after it.
                deadline = conn.loop.time() + self.timeout
        return await self._read_head(conn, deadline)

    async def _send(self, conn: Connection, pieces: list[bytes], timeout: float) -> bool:
        """Write `pieces` and wait until the transport takes more. False: the upstream has
        started its answer and stopped taking the request; the caller then reads that answer
        instead."""
        try:
            conn.write(pieces)
            while conn.write_paused:
                if conn.answered and self._early_head(conn):
                    return False
                await conn.wait_writable(timeout)
        except ConnectionError:
            if conn.answered:
                return False
            raise Stale() from None
        except TimeoutError:
            if conn.answered:
                return False
            raise UpstreamTimeout(f"upstream accepted no request bytes for {timeout:g}s") from None
        return True

    async def _send_body(self, conn: Connection, body: AsyncIterator[bytes]) -> bool:
        """Stream `body` (`framing` bytes, or chunked when None), then end it; False if the
        upstream answered early (see `_send`)."""
        iterator = body.__aiter__()
        left = self.framing
        timeout = self.timeout
        while True:
            # The body's own errors (the client went away, a size limit) are not the
            # upstream's: they propagate as they are, and the connection is closed.
            try:
                piece = await iterator.__anext__()
            except StopAsyncIteration:
                break
            self.pulled = True
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
            if not await self._send(conn, [framed], timeout):
                return False
        if left:
            raise StreamError(ErrorCode.BAD_REQUEST, "request body: less than its Content-Length")
        end = [h1wire.LAST_CHUNK] if left is None else []
        if await self._send(conn, end, timeout):
            conn.request_done = True
            return True
        return False

    async def _read_head(self, conn: Connection, deadline: float) -> tuple:
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
                    raise Stale() from None
                if exc.eof:
                    raise UpstreamUnreachable(
                        "upstream closed the connection in the middle of the response head"
                    ) from None
                raise UpstreamUnreachable(f"upstream sent an invalid response: {exc}") from None
            kind = event[0]
            if kind == wire.HEAD:
                return event
            if kind == wire.INFO:
                informational += 1
                if informational > settings.UPSTREAM_MAX_INFORMATIONAL:
                    raise UpstreamUnreachable("upstream sent too many 1xx responses")
                if self.on_informational is not None:
                    self.on_informational(event[1], event[2])
                continue
            raise UpstreamUnreachable("upstream sent an invalid response")

    def _early_head(self, conn: Connection) -> bool:
        """Parse answer bytes that arrived while we were sending: True once a final head is
        here (kept in `conn.early` for `_read_head`), or when the bytes are garbage
        (`_read_head` reports that)."""
        try:
            while True:
                event = conn.poll_event()
                if event and event[0] == wire.INFO:
                    if self.on_informational is not None:
                        self.on_informational(event[1], event[2])
                    continue
                if event and event[0] == wire.HEAD:
                    conn.early = event
                    return True
                return event is not wire.NEED_DATA
        except wire.ResponseError:
            return True
