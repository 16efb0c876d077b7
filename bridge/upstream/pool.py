"""The upstream HTTP/1.1 client: requests over a keep-alive pool of connections per origin, and
the WebSocket Upgrade on a connection of its own.

Our own client (not a general-purpose library) because the proxy needs exact header control and
backpressure both ways (see `attempt` for the request side, `connection` for the answer's).
The parts: `Connection` (one socket), `Attempt` (one request sent on a connection and its head
read), `UpstreamResponse` (the answer's body, which gives the connection back through
`UpstreamPool.release`), `IdlePool` (the idle connections), `Tunnel` (a connection after 101).

Every await is bounded: `timeout` (default: the upstream's own) covers connecting, sending and
the response head (see `UpstreamPool.request`); each body read is bounded by the pool's
`idle_timeout`.

Errors are `UpstreamUnreachable` (502: refused, reset, closed early, or bytes that are not
HTTP/1.1) and `UpstreamTimeout` (504). A pooled connection that turns out to be dead before
the upstream sent a single byte of the answer (it closed the connection while idle, racing our
request) is retried once on a fresh connection when repeating the request is safe: RFC 9110
§9.2.2 idempotent methods, or requests without a body.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .. import settings
from ..errors import ErrorCode, StreamError
from ..events import Headers
from ..routing.model import Upstream
from . import reader as wire
from .attempt import Attempt, Informational, Stale
from .connection import Connection
from .errors import UpstreamTimeout, UpstreamTooLarge, UpstreamUnreachable
from .idle import IdlePool
from .response import UpstreamResponse
from .tunnel import Tunnel

_FRAMING = frozenset({b"content-length", b"transfer-encoding"})


@dataclass(frozen=True, slots=True)
class Upgrade:
    """The upstream's answer to an Upgrade request: on a 101, `tunnel` is the connection's
    byte stream from then on; on any other status, `body` is that answer's whole (bounded)
    body and the connection is closed."""

    status: int
    headers: Headers
    body: bytes = b""
    tunnel: Tunnel | None = None


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
        self._idle: IdlePool[Connection] = IdlePool(
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
        on_informational: Informational | None = None,
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
        attempt = Attempt(method, request, body, framing, timeout, on_informational)
        origin = upstream.origin
        for retry in (False, True):
            conn = self._idle.checkout(origin)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(upstream, deadline - loop.time())
            try:
                return UpstreamResponse(self, conn, await attempt.run(conn, deadline))
            except Stale:
                conn.close()
                if reused and not retry and attempt.retryable:
                    continue
                raise UpstreamUnreachable(
                    f"{upstream.authority} closed the connection without answering"
                ) from None
            except BaseException:
                conn.close()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def upgrade(
        self, upstream: Upstream, target: str, headers: Headers, *, timeout: float | None = None
    ) -> Upgrade:
        """Ask for a protocol switch (a WebSocket's `GET` with `Upgrade`, `headers` sent as
        given) on a fresh connection, which is never pooled: after a 101 it belongs to one
        tunnel. `timeout` (default `upstream.timeout`) bounds connect + sending + the answer's
        head and, on a refusal, its body (at most `settings.BODY_CHUNK` bytes). Errors as for
        `request`."""
        timeout = upstream.timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        try:
            request = wire.request_head("GET", upstream.base_path + target, headers)
        except (ValueError, UnicodeError) as exc:
            raise StreamError(ErrorCode.BAD_REQUEST, f"cannot forward request: {exc}") from None
        attempt = Attempt("GET", request, None, None, timeout, None, upgrade=True)
        conn = await self._connect(upstream, deadline - loop.time())
        try:
            try:
                _, status, _, fields, _ = await attempt.run(conn, deadline)
            except Stale:
                raise UpstreamUnreachable(
                    f"{upstream.authority} closed the connection without answering"
                ) from None
            if status == 101:
                return Upgrade(status, fields, tunnel=conn.tunnel())
            return Upgrade(status, fields, await _refusal_body(conn, deadline))
        finally:
            conn.close()  # after tunnel() a no-op on the socket, which the tunnel owns

    async def _connect(self, upstream: Upstream, remaining: float) -> Connection:
        loop = asyncio.get_running_loop()
        limit = min(remaining, self.connect_timeout)
        if limit <= 0:
            raise UpstreamTimeout(f"no time left to connect to {upstream.authority}")
        origin = upstream.origin
        made: list[Connection] = []

        def protocol() -> Connection:
            made.append(Connection(origin, loop))
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
            # The errno's own text: the stock loop's strerror is "Connect call failed (addr)",
            # uvloop's the plain reason, and the cause must read the same on both.
            reason = os.strerror(exc.errno) if exc.errno and exc.errno > 0 else None
            raise UpstreamUnreachable(
                f"cannot connect to {upstream.authority}: {reason or exc.strerror or exc}"
            ) from None
        self.connections_opened += 1
        return conn

    def release(self, conn: Connection) -> None:
        """Take back `conn` after a whole answer: keep it if the request was sent whole, the
        answer allows another (keep-alive, no stray bytes) and the socket is still open; else
        close it."""
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
        """GET `target` and read the whole body, at most `max_bytes` of it (else UpstreamTooLarge):
        what the stream poller and the asset cache need."""
        response = await self.request(upstream, "GET", target, headers, timeout=timeout)
        try:
            declared = _content_length(response.headers)
            if declared is not None and declared > max_bytes:
                response.abort()  # not worth reading to the end for the connection's sake
                raise UpstreamTooLarge(
                    f"upstream answer is {declared} bytes, more than the limit of {max_bytes}"
                )
            pieces: list[bytes] = []
            size = 0
            while piece := await response.read():
                size += len(piece)
                if size > max_bytes:
                    response.abort()
                    raise UpstreamTooLarge(
                        f"upstream answer is larger than the limit of {max_bytes} bytes"
                    )
                pieces.append(piece)
            body = pieces[0] if len(pieces) == 1 else b"".join(pieces)
            return response.status, response.headers, body
        finally:
            await response.aclose()

    async def close(self) -> None:
        """Close every idle connection; answers still being read close theirs when done."""
        self._idle.close()


async def _refusal_body(conn: Connection, deadline: float) -> bytes:
    """The body of an answer that refused an Upgrade, read to its end by `deadline`."""
    body = b""
    try:
        while True:
            event = conn.poll_event()
            if event is wire.NEED_DATA:
                event = await conn.wait_event(deadline)
            if event[0] == wire.END:
                return body
            body += event[1]
            if len(body) > settings.BODY_CHUNK:
                raise UpstreamUnreachable("upstream refusal body too large")
    except TimeoutError:
        raise UpstreamTimeout("upstream did not finish its answer in time") from None
    except wire.ResponseError as exc:
        raise UpstreamUnreachable(f"upstream sent an invalid answer: {exc}") from None


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


__all__ = ["Upgrade", "UpstreamPool"]
