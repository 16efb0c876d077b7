"""Process-wide state every connection shares: config, handler, logs, counters, shutdown.

`ServerContext` is the `ExchangeHost` (stream/host.py) of every exchange it serves.
`run_exchange` is the top of every request task: whatever a handler raises ends there, as an
error response, a stream reset or a log line — never in the event loop's exception handler.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol

from ..accesslog import AccessEntry
from ..errorpage import error_body, error_headers
from ..errors import ErrorCode, StreamError
from ..protocol.h2engine import NGHTTP2, EngineFactory
from ..protocol.http2 import engine_factory
from ..requestid import request_id
from ..settings import Limits
from ..stream.host import Handler
from .tally import RequestTally

if TYPE_CHECKING:
    from ..accesslog import AccessLog
    from ..stream.exchange import Exchange

log = logging.getLogger("bridge")

_HTTP_VERSIONS = {"1.0": "HTTP/1.0", "1.1": "HTTP/1.1", "2": "HTTP/2.0", "3": "HTTP/3"}


class ClientConnection(Protocol):
    """What the context does with any client connection, TCP or QUIC."""

    def shutdown(self) -> None:
        """Finish in-flight exchanges, take no new ones, then close."""

    def abort(self) -> None: ...


class Flushable(Protocol):
    def deferred_flush(self) -> None:
        """Write what is queued now."""


class ServerContext:
    def __init__(
        self,
        *,
        limits: Limits,
        handler: Handler,
        access_log: AccessLog | None,
        h2_engine: str = NGHTTP2,
    ) -> None:
        self.limits = limits
        # The HTTP/2 engine new connections get (`engines.http2`; h2 when nghttp2 cannot run).
        self.h2_engine: EngineFactory = engine_factory(h2_engine)
        self.handler = handler
        self.access_log = access_log
        self.connections: set[ClientConnection] = set()
        self.shutting_down = False
        self.requests_total = 0
        self.rejected_connections = 0
        self.tally = RequestTally()  # /metrics reads it at scrape time
        # `Alt-Svc` for TCP responses while HTTP/3 is served (RFC 7838, RFC 9114 §3.1.1).
        self.alt_svc: tuple[bytes, bytes] | None = None
        self._unflushed: list[Flushable] = []  # connections to write at the iteration's end

    def flush_later(self, conn: Flushable) -> bool:
        """Queue `conn` for `flush_pending` (once per iteration, the caller checks); True when
        it is the first of this iteration, and the caller must schedule `flush_pending`."""
        self._unflushed.append(conn)
        return len(self._unflushed) == 1

    def flush_pending(self) -> None:
        """The end of a loop iteration: every connection queued in it writes, back to back."""
        pending, self._unflushed = self._unflushed, []
        for conn in pending:
            try:
                conn.deferred_flush()
            except Exception:  # one connection's failure must not keep the others' bytes
                log.exception("flush failed")

    def admit(self, conn: ClientConnection) -> bool:
        if self.shutting_down or len(self.connections) >= self.limits.max_connections:
            self.rejected_connections += 1
            return False
        self.connections.add(conn)
        return True

    def release(self, conn: ClientConnection) -> None:
        self.connections.discard(conn)

    async def run_exchange(self, exchange: Exchange) -> None:
        self.requests_total += 1
        exchange.access.request_id = request_id(exchange.request.headers)
        try:
            await self.handler(exchange)
            if not exchange.finished and not exchange.aborted and not exchange.detached:
                if exchange.response_started:
                    await exchange.end()
                else:
                    raise StreamError(ErrorCode.INTERNAL_ERROR, "handler sent no response")
        except StreamError as exc:
            self._fail(exchange, exc)
        except asyncio.CancelledError:
            exchange.abort()
        except Exception as exc:
            log.exception(
                "handler failed for %s %s", exchange.request.method, exchange.request.target
            )
            self._fail(exchange, StreamError(ErrorCode.INTERNAL_ERROR, type(exc).__name__))
        finally:
            if exchange.handler_finished():
                self.finish_exchange(exchange)

    def finish_exchange(self, exchange: Exchange) -> None:
        """The exchange is over (its handler returned, or its detached stream ended)."""
        status = exchange.status or (499 if exchange.aborted else 0)
        access = exchange.access
        self.tally.record(access.route, access.kind, status, exchange.duration)
        self.log_exchange(exchange)
        exchange.port.exchange_done(exchange)
        exchange.release()

    def _fail(self, exchange: Exchange, exc: StreamError) -> None:
        if exc.code is ErrorCode.CANCELLED or exchange.aborted:
            # We give up on a client that is still connected (it stopped reading): the stream
            # must end on the wire too (RST_STREAM CANCEL; on HTTP/1.1 a closed connection),
            # or an HTTP/2 connection keeps counting it against its stream limit.
            exchange.reset(ErrorCode.CANCELLED)
            exchange.abort()
            return
        if exc.code in (
            ErrorCode.UPSTREAM_UNREACHABLE,
            ErrorCode.UPSTREAM_TIMEOUT,
        ) or (exc.code is ErrorCode.INTERNAL_ERROR and exc.detail != exc.code.reason):
            log.warning(
                "%s %s: %s (%s)",
                exchange.request.method,
                exchange.request.target,
                exc.code.reason,
                exc.detail,
            )
        if exchange.response_started or exchange.finished:
            exchange.reset(exc.code)
            return
        # Server-side failures say what failed, not where: the detail (upstream addresses,
        # exception names) is for the error log above, not for every client.
        detail = "" if exc.code.status >= 500 else exc.detail
        body = error_body(exc.code, detail)
        exchange.respond_now(exc.code.status, [*error_headers(body), *exc.headers], body)

    def log_exchange(self, exchange: Exchange) -> None:
        access = exchange.access
        if self.access_log is None or access.logged:
            return
        access.logged = True
        request = exchange.request
        referer = user_agent = None
        for name, value in request.headers:
            if name == b"referer":
                referer = value.decode("latin-1")
            elif name == b"user-agent":
                user_agent = value.decode("latin-1")
        status = exchange.status or (499 if exchange.aborted else 0)
        try:
            self.access_log.log(
                AccessEntry(
                    client_ip=exchange.client_ip,
                    time=access.started,
                    method=request.method,
                    target=request.target,
                    http_version=_HTTP_VERSIONS.get(request.http_version, request.http_version),
                    status=status,
                    bytes_sent=exchange.bytes_sent,
                    referer=referer,
                    user_agent=user_agent,
                    duration=exchange.duration,
                    upstream_status=access.upstream_status,
                    route=access.route,
                    pushed=request.pushed,
                    kind=access.kind,
                    events=access.events,
                    lagged=access.lagged,
                    note=access.note,
                    request_id=access.request_id,
                    close_code=access.ws_close,
                )
            )
        except Exception:  # a full disk must not take requests down with it
            log.exception("access log write failed")
