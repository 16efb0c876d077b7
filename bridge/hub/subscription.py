"""A `Subscription`: one subscriber of one channel, and the lagging policy.

`offer` is the hot path — called once per subscriber per event by the channel's fan-out loop,
10,000+ times per change. It never awaits and never renders (an item renders once per format,
for the first subscriber that needs it): a few attribute loads and one `sink.write` of bytes
the item already holds.

Lagging: when, after a write, the connection holds more than `limit` bytes not yet on the
wire, the subscriber is *lagging*. Further items are conflated — only the newest state is
kept — and delivered when the connection drains (the server calls `on_drain`; a later item or
the channel's tick also notices a drain the server did not report). Snapshot streams then get
the newest item itself; patch/merge streams get a fresh `snapshot` of the newest state, never a
patch against a state the client does not have. A subscriber still lagging after
`settings.LAG_CLOSE_AFTER` is closed with a `retry:` hint and resumes through `Last-Event-ID`.
Memory per subscriber is therefore bounded by about `limit` plus one item.

A subscription knows its channel only as an `Owner`: the few calls it makes when it starts or
stops lagging, catches up, closes or breaks. The channel keeps the books (who lags, how many
ever did); the subscription never writes into it.
"""

from __future__ import annotations

import contextlib
from typing import Protocol

from ..framing import Framing
from .item import Format, Item, slot, slot_format
from .render import sse_retry


class Sink(Protocol):
    """Implemented by the server layer, one per subscriber connection/stream."""

    # The protocol's shared framing of what `write` gets (opaque here, see bridge/framing.py).
    framing: Framing

    def write(self, data: bytes) -> None:
        """Queue bytes for the wire; never awaits, never raises for a peer that went away."""

    def buffered(self) -> int:
        """Bytes accepted by `write` and not yet on the wire."""

    def close(self, final: bytes | None = b"") -> None:
        """Write `final` (may be b""), then end this subscriber's stream. `final=None` means the
        server is shutting down (WebSocket 1001 rather than 1013)."""


class Owner(Protocol):
    """What a subscription needs of its channel (implemented by `Channel`). None of it is on
    the per-event path: `offer` calls none of these unless the subscriber starts lagging."""

    def start_lagging(self, sub: Subscription) -> float:
        """`sub` holds more than its limit: watch it; returns the time it started lagging."""

    def stop_lagging(self, sub: Subscription) -> None:
        """`sub` drained."""

    def catch_up(self) -> Item:
        """The current state as one event (for a drained lagger)."""

    def retry_ms(self) -> int:
        """A jittered SSE `retry:` hint."""

    def unsubscribe(self, sub: Subscription) -> None:
        """`sub` is leaving (closed, or the client went away)."""

    def sink_failed(self, sub: Subscription) -> None:
        """`sub`'s sink raised (called while handling it: the exception is current)."""


class Subscription:
    __slots__ = (
        "bytes_sent",
        "channel",
        "closed",
        "events",
        "lag_since",
        "lagged",
        "lagging",
        "limit",
        "pending",
        "sink",
        "slot",
        "stuck",
    )

    def __init__(self, channel: Owner, sink: Sink, fmt: Format, limit: int) -> None:
        self.channel = channel
        self.sink = sink
        self.slot = slot(fmt, sink.framing)  # the format as the sink's protocol frames it
        self.limit = limit
        self.lagging = False
        self.lagged = False  # ever lagged: for the access log
        self.stuck = False  # closed for lagging too long: the access log says so
        self.lag_since = 0.0
        self.pending: Item | None = None  # the newest item conflated while lagging
        self.closed = False
        self.events = 0  # events written (heartbeats not counted)
        self.bytes_sent = 0  # bytes handed to the sink

    def offer(self, item: Item) -> None:
        """Deliver one item (or heartbeat) now, or conflate it while lagging. The hot path."""
        try:  # free in 3.11 unless something raises
            if self.lagging:
                self._conflate(item)
                return
            data = item.rendered[self.slot] or item.render(self.slot)
            sink = self.sink
            sink.write(data)
            self.bytes_sent += len(data)
            if item.id:  # heartbeats have none
                self.events += 1
            if sink.buffered() > self.limit:
                self._start_lagging()
        except Exception:
            self._broken()

    def _broken(self) -> None:
        """The sink broke its promise never to raise: drop this subscriber, not the fan-out."""
        self.channel.sink_failed(self)
        self.cancel()
        with contextlib.suppress(Exception):
            self.sink.close(b"")

    def _start_lagging(self) -> None:
        self.lagging = self.lagged = True
        self.lag_since = self.channel.start_lagging(self)

    def _conflate(self, item: Item) -> None:
        if not item.id or self.closed:
            return  # a heartbeat is moot while bytes are queued anyway
        self.pending = item
        # The server reports drains through `on_drain` only past its own watermarks, which
        # need not match `limit`: look for ourselves, now that there is something to send.
        if self.sink.buffered() <= self.limit // 2:
            self.on_drain()

    def on_drain(self) -> None:
        """The connection drained: stop lagging and catch up with the newest state at once."""
        if not self.lagging or self.closed:
            return
        if self.sink.buffered() > self.limit:
            return  # not drained as far as we are concerned
        self.lagging = False
        self.channel.stop_lagging(self)
        pending, self.pending = self.pending, None
        if pending is not None:
            # Only the newest state matters; on patch/merge streams the dropped patches can
            # no longer apply, so this is a whole snapshot.
            self.offer(self.channel.catch_up())

    def close_lagging(self) -> None:
        """Stuck too long: end the stream with a reconnect hint; it resumes by Last-Event-ID.

        SSE gets a jittered `retry:` field (the sink's protocol frames it);
        WebSocket gets b"" and the sink sends its close frame (1013, try again later).
        """
        if self.closed:
            return
        self.stuck = True
        if slot_format(self.slot) is Format.SSE:
            final = sse_retry(self.channel.retry_ms())
        else:
            final = b""
        self.cancel()
        self.sink.close(final)

    def end_for_shutdown(self) -> None:
        """The server is stopping: end the stream cleanly so clients go elsewhere or come back
        later: SSE with a jittered `retry:` (a restart does not bring every client back in the
        same millisecond), WebSocket with 1001 "going away" (RFC 6455 §7.4.1)."""
        if self.closed:
            return
        sse = slot_format(self.slot) is Format.SSE
        final = sse_retry(self.channel.retry_ms()) if sse else None
        self.cancel()
        self.sink.close(final)

    def end_for_reload(self) -> None:
        """A reload removed or changed this stream: reconnect at once (spread by a jittered SSE
        `retry:`; WebSocket 1013 "try again later") and resume on the new table."""
        if self.closed:
            return
        sse = slot_format(self.slot) is Format.SSE
        final = sse_retry(self.channel.retry_ms()) if sse else b""
        self.cancel()
        self.sink.close(final)

    def cancel(self) -> None:
        """The client went away (or we are ending it): leave the channel. Idempotent."""
        if not self.closed:
            self.closed = True
            self.pending = None
            self.channel.unsubscribe(self)

    def __repr__(self) -> str:
        state = "lagging" if self.lagging else "closed" if self.closed else "live"
        return f"<Subscription {slot_format(self.slot).name} {state} events={self.events}>"
