"""The answer to one upstream request: its head, and its body read piece by piece.

The response holds its connection until the body's end, then gives it back through
`UpstreamPool.release` (which keeps it for the next request if the exchange allows); an answer
not read to the end closes it. Each body read is bounded by the pool's `idle_timeout`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import settings
from . import reader as wire
from .connection import Connection
from .errors import UpstreamTimeout, UpstreamUnreachable

if TYPE_CHECKING:
    from .pool import UpstreamPool


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
        conn: Connection,
        event: tuple,
    ) -> None:
        self._pool = pool
        self._conn: Connection | None = conn
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
                self.abort()
                raise UpstreamTimeout(
                    f"upstream sent no body bytes for {self._idle_timeout:g}s"
                ) from None
            except wire.ResponseError as exc:
                self.abort()
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
            self.abort()
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
            self.abort()

    def _finish_buffered(self, conn: Connection) -> None:
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
            self._pool.release(conn)

    def abort(self) -> None:
        """Close the connection without reading the rest (the answer is not wanted)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
