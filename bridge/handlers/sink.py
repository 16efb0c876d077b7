"""`ExchangeSink`: how the hub's fan-out reaches one subscriber's stream.

The hub calls `write(prerendered)` once per subscriber per event, so once the response head is
queued `write` is the stream's `HotPath` writer, the cheapest the protocol allows (on HTTP/1.1
the transport's own `write` of bytes the hub framed once for everyone; on HTTP/2 and HTTP/3 a
per-stream writer that adds the DATA frame header). Which one is the port's choice: nothing
here knows the HTTP version.
"""

from __future__ import annotations

from collections.abc import Callable

from ..framing import Framing
from ..hub.subscription import Subscription
from ..stream.exchange import Exchange
from ..stream.port import HotPath


class ExchangeSink:
    __slots__ = ("_early", "_end", "_hot", "buffered", "closed", "exchange", "framing", "write")

    def __init__(
        self, exchange: Exchange, end: Callable[[bytes | None], None], *, tunnel: bool
    ) -> None:
        self.exchange = exchange
        self._end = end
        self.closed = False
        self._early: list[bytes] = []
        # Bound now, so the hub renders for it from the first event; valid for the stream's
        # life (`tunnel`: WebSocket frames, never framed as a body).
        hot = exchange.hot_path(tunnel=tunnel)
        self.framing: Framing = hot.framing
        self._hot: HotPath | None = hot  # until `open`: then only its writer is kept
        # Until the response head is out, events (the snapshot a newcomer gets at once) wait.
        self.write: Callable[[bytes], None] = self._early.append
        self.buffered: Callable[[], int] = hot.buffered

    def open(self, first: bytes = b"") -> None:
        """The response head is queued: switch `write` to the wire and send `first` (the
        SSE `retry:` hint) with what waited. The head, `first` and the catch-up events leave
        in one write: three syscalls per new subscriber would be most of its set-up cost."""
        exchange = self.exchange
        first = self.framing.frame(first) if first else b""
        waiting = b"".join((first, *self._early))
        self._early.clear()
        # The subscription already counted the early events; `first` is ours to count. Not
        # `exchange.write_prerendered`, which would count all of `waiting` a second time.
        exchange.bytes_sent += len(first)
        if waiting:
            # Already in the hot path's framing; the port puts the queued head before it.
            exchange.port.write_prerendered(exchange.stream_id, waiting, framed=True)
        else:
            exchange.port.flush()
        hot = self._hot
        if hot is not None:
            self.write = hot.write
            self._hot = None  # one object less per subscriber for the stream's life

    def detach(self) -> None:
        """Stop writing the hub's events without ending the stream: a WebSocket that sent its
        close frame must send no data frame after it (RFC 6455 §5.5.1)."""
        self.closed = True
        self.write = _discard
        self._early.clear()
        # `close` does nothing from now on, so the handler's end callback is not needed; kept,
        # it is a reference cycle (the handler's session holds this sink) and the closed
        # connection behind it would wait for a full collection.
        self._end = _ignore_end

    def close(self, final: bytes | None = b"") -> None:
        """Write `final` (an SSE `retry:` hint), then let the handler end the stream."""
        if self.closed:
            return
        self.closed = True
        self.write = _discard
        exchange = self.exchange
        if final and not exchange.aborted:
            framed = self.framing.frame(final)
            exchange.port.write_prerendered(exchange.stream_id, framed, framed=True)
            exchange.bytes_sent += len(framed)
        self._end(final)


def _discard(data: bytes) -> None:
    """Writes after close go nowhere: the subscriber is being removed."""


def _ignore_end(final: bytes | None) -> None:
    """A detached sink's end callback."""


def finish_subscription(exchange: Exchange, subscription: Subscription) -> None:
    """Leave the channel and hand the subscription's counters to the access log line."""
    subscription.cancel()
    exchange.access.events = subscription.events
    exchange.access.lagged = subscription.lagged
    if subscription.stuck and exchange.access.note is None:
        # Which client lagged, and that bridge (not the client) ended its stream.
        exchange.access.note = "closed: subscriber too slow"
    exchange.bytes_sent += subscription.bytes_sent
