"""`ExchangeSink`: how the hub's fan-out reaches one subscriber's connection.

The hub calls `write(prerendered)` once per subscriber per event, so `write` is bound at
construction to the cheapest path the protocol allows: on HTTP/1.1 the transport's own
`write` (the bytes already carry chunk framing); on HTTP/2 and HTTP/3 the connection's
per-stream writer, which adds the stream's frame header.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ..hub.subscription import Subscription
from ..server.exchange import Exchange


class ExchangeSink:
    __slots__ = ("_early", "_end", "buffered", "closed", "exchange", "write")

    def __init__(self, exchange: Exchange, end: Callable[[bytes | None], None]) -> None:
        self.exchange = exchange
        self._end = end
        self.closed = False
        self._early: list[bytes] = []
        # Until the response head is out, events (the snapshot a newcomer gets at once) wait.
        self.write: Callable[[bytes], None] = self._early.append
        self.buffered: Callable[[], int] = partial(exchange.conn.buffered, exchange.stream_id)

    def open(self, first: bytes = b"") -> None:
        """The response head is queued: switch `write` to the wire and send `first` (the
        SSE `retry:` hint) with what waited. The head, `first` and the catch-up events leave
        in one write: three syscalls per new subscriber would be most of its set-up cost."""
        exchange = self.exchange
        conn = exchange.conn
        waiting = b"".join((first, *self._early))
        self._early.clear()
        # The subscription already counted the early events; `first` is ours to count. Not
        # `exchange.write_raw`, which would count all of `waiting` a second time.
        exchange.bytes_sent += len(first)
        if waiting:
            conn.write_stream(exchange.stream_id, waiting)  # carries the queued head along
        else:
            conn.flush()
        transport = conn.transport
        if not conn.adapter.multiplexed and transport is not None:
            self.write = transport.write
            self.buffered = transport.get_write_buffer_size
        else:
            self.write = partial(conn.write_stream, exchange.stream_id)

    def detach(self) -> None:
        """Stop writing the hub's events without ending the stream: a WebSocket that sent its
        close frame must send no data frame after it (RFC 6455 §5.5.1)."""
        self.closed = True
        self.write = _discard
        self._early.clear()

    def close(self, final: bytes | None = b"") -> None:
        if self.closed:
            return
        self.closed = True
        self.write = _discard
        self._end(final)


def _discard(data: bytes) -> None:
    """Writes after close go nowhere: the subscriber is being removed."""


def finish_subscription(exchange: Exchange, subscription: Subscription) -> None:
    """Leave the channel and hand the subscription's counters to the access log line."""
    subscription.cancel()
    exchange.events = subscription.events
    exchange.lagged = subscription.lagged
    if subscription.stuck and exchange.note is None:
        # Which client lagged, and that bridge (not the client) ended its stream.
        exchange.note = "closed: subscriber too slow"
    exchange.bytes_sent += subscription.bytes_sent
