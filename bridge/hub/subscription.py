"""A `Subscription`: one subscriber of one channel, and the lagging policy.

`offer` is the hot path — called once per subscriber per event by the channel's fan-out
loop. It never awaits and never renders: it writes bytes the item already holds. When the
subscriber's connection has more than `limit` bytes queued, the subscriber is *lagging*:
further items are conflated (only the newest state is kept) and delivered as one snapshot
when the connection drains; one stuck past `settings.LAG_CLOSE_AFTER` is closed with a
`retry:` hint so it comes back through `Last-Event-ID`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from .item import Format, Item

if TYPE_CHECKING:
    from .channel import Channel


class Sink(Protocol):
    """Implemented by the server layer, one per subscriber stream."""

    def write(self, data: bytes) -> None: ...  # never awaits, never raises for a gone peer
    def buffered(self) -> int: ...  # bytes accepted by write() and not yet on the wire
    def close(
        self, final: bytes | None = b""
    ) -> None: ...  # write `final`, then end; None: shutdown


_FINAL = {
    Format.SSE: b"retry: %d\n\n",
    Format.SSE_CHUNKED: b"retry: %d\n\n",
    Format.WS_ENVELOPE: b"",
    Format.WS_RAW: b"",
}


class Subscription:
    __slots__ = (
        "bytes_sent",
        "channel",
        "closed",
        "events",
        "fmt",
        "lag_since",
        "lagged",
        "lagging",
        "limit",
        "pending",
        "sink",
    )

    def __init__(self, channel: Channel, sink: Sink, fmt: Format, limit: int) -> None:
        self.channel = channel
        self.sink = sink
        self.fmt = fmt
        self.limit = limit
        self.lagging = False
        self.lagged = False  # ever lagged: for the access log
        self.lag_since = 0.0
        self.pending: Item | None = None
        self.closed = False
        self.events = 0
        self.bytes_sent = 0

    def offer(self, item: Item) -> None:
        if self.lagging:
            if item.id is not None:
                self.pending = item  # conflate: only the newest state matters
            return
        data = item.render(self.fmt)
        sink = self.sink
        sink.write(data)
        self.bytes_sent += len(data)
        if item.id is not None:
            self.events += 1
        if sink.buffered() > self.limit:
            self.lagging = self.lagged = True
            self.lag_since = self.channel.clock.now()
            self.channel.lagging.add(self)

    def on_drain(self) -> None:
        """The connection drained below its low-water mark: catch up with one snapshot."""
        if not self.lagging or self.closed:
            return
        self.lagging = False
        self.channel.lagging.discard(self)
        pending, self.pending = self.pending, None
        if pending is not None:
            # Patch/merge streams: the queued diffs were dropped, so send the whole state.
            self.offer(self.channel.catch_up(pending))

    def close_lagging(self) -> None:
        """Stuck too long: end the stream with a reconnect hint; it resumes by Last-Event-ID."""
        final = _FINAL[self.fmt]
        if final:
            final = final % self.channel.retry_ms()
        self.cancel()
        self.sink.close(final)

    def end_for_shutdown(self) -> None:
        """The server is stopping: end the stream cleanly (WebSocket 1001) so clients go elsewhere."""
        self.cancel()
        self.sink.close(None)

    def cancel(self) -> None:
        if not self.closed:
            self.closed = True
            self.channel.unsubscribe(self)
