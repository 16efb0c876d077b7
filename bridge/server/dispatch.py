"""`StreamDispatcher`: adapter events to `Exchange`s, the same for every transport.

A connection driver (TCP in connection.py, QUIC in the HTTP/3 driver) owns its socket, its
adapter and its timers; what happens to each stream's events is protocol-neutral and lives
here once: a `Request` becomes an `Exchange` run by the handler as a task, body and tunnel
bytes feed it, resets and closes abort it, window updates wake its writer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from ..events import (
    Body,
    ConnectionClosed,
    Data,
    EndBody,
    EndData,
    Event,
    Request,
    StreamClosed,
    StreamReset,
    WindowOpened,
)
from ..stream.exchange import Exchange

if TYPE_CHECKING:
    from ..stream.port import StreamPort


class StreamDispatcher:
    __slots__ = ("_on_closing", "_on_idle", "_on_request", "exchanges", "port")

    def __init__(
        self,
        port: StreamPort,
        *,
        on_request: Callable[[], None],
        on_idle: Callable[[], None],
        on_closing: Callable[[], None],
    ) -> None:
        self.port = port
        self.exchanges: dict[int, Exchange] = {}
        self._on_request = on_request  # a request head is complete (header timer off)
        self._on_idle = on_idle  # a stream closed: the connection may now be idle
        self._on_closing = on_closing  # the adapter wants the connection closed

    def dispatch(self, event: Event) -> None:
        # Most frequent first: body pieces, then requests.
        if isinstance(event, (Body, Data)):
            exchange = self.exchanges.get(event.stream_id)
            if exchange is not None:
                exchange.feed(event.data)
            else:
                self.port.acknowledge(event.stream_id, len(event.data))
        elif isinstance(event, Request):
            self._start(event)
        elif isinstance(event, (EndBody, EndData)):
            exchange = self.exchanges.get(event.stream_id)
            if exchange is not None:
                exchange.feed_end()
        elif isinstance(event, WindowOpened):
            if event.stream_id:
                exchange = self.exchanges.get(event.stream_id)
                if exchange is not None:
                    exchange.writable()
            else:
                self.writable()
        elif isinstance(event, StreamReset):
            exchange = self.exchanges.get(event.stream_id)
            if exchange is not None and not exchange.finished:
                exchange.abort()
        elif isinstance(event, StreamClosed):
            exchange = self.exchanges.pop(event.stream_id, None)
            if exchange is not None:
                if not exchange.finished:
                    exchange.abort()
                    _cancel_handler(exchange)
                self._on_idle()
        elif isinstance(event, ConnectionClosed):
            self._on_closing()

    def _start(self, request: Request) -> None:
        self._on_request()
        port = self.port
        exchange = Exchange(port, request)
        self.exchanges[request.stream_id] = exchange
        ctx = port.ctx
        if ctx.shutting_down:
            # Draining: finish what is in flight, take nothing new (clients may retry).
            exchange.respond_now(503, [(b"retry-after", b"1"), (b"content-length", b"0")])
            return
        exchange.task = port.loop.create_task(ctx.run_exchange(exchange))

    def writable(self) -> None:
        """The connection drained (or its window opened): every stream may write again."""
        for exchange in list(self.exchanges.values()):
            exchange.writable()

    def exchange_done(self, exchange: Exchange) -> None:
        """The handler task finished (or its detached stream ended)."""
        if self.exchanges.get(exchange.stream_id) is exchange and exchange.aborted:
            del self.exchanges[exchange.stream_id]

    def abort_all(self) -> None:
        """The connection is gone: every stream ends, every handler is cancelled."""
        exchanges = list(self.exchanges.values())
        self.exchanges.clear()
        for exchange in exchanges:
            exchange.abort()
            _cancel_handler(exchange)

    def release(self) -> None:
        """The connection is gone and its exchanges aborted: drop the references back to it.

        The connection holds this dispatcher and this dispatcher held the connection (as its
        port and in three bound methods): a reference cycle that only a full collection finds,
        and bridge's raised GC thresholds make those rare, so every reset connection's TLS
        buffers (~260 KiB on uvloop) waited with it. Nothing is dispatched after this: the
        connection has no transport left to read from or write to.
        """
        self.exchanges.clear()
        self._on_request = self._on_idle = self._on_closing = _nothing
        self.port = cast("StreamPort", None)


def _nothing() -> None:
    """A released dispatcher's hooks."""


def _cancel_handler(exchange: Exchange) -> None:
    task = exchange.task
    if task is not None and not task.done():
        task.cancel()
