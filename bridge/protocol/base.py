"""The adapter contract every HTTP version implements (http1.py, http2.py, http3.py).

Sans-IO: an adapter turns what the peer sent into `bridge.events` and events into bytes, and
never awaits. The connection drivers in `bridge.server` are written against these Protocols
only, so a driver never branches on the HTTP version; the version's differences (chunking,
DATA frames, per-stream flow control, push) are answered here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..events import Event
from ..framing import Framing


class StreamProtocol(Protocol):
    """What any adapter offers for its streams, whatever carries its bytes."""

    http_version: str
    multiplexed: bool  # several streams with their own flow control (HTTP/2, HTTP/3)

    def send(self, event: Event) -> list[Event]:
        """Queue an event's bytes; returns follow-up events (a pipelined request, a close)."""

    def send_all(self, events: list[Event]) -> list[Event]:
        """`send` each event in order (a whole response): an adapter may frame them
        together (HTTP/2: the body and its end in one DATA frame)."""

    def frame_prerendered(
        self, stream_id: int, data: bytes, *, framed: bool = False
    ) -> bytes | None:
        """`data` (rendered stream bytes) framed for the wire, after anything queued before it,
        or None when it cannot be framed directly now (flow control): then `send(Body)`.
        `framed`: `data` already carries `body_framing` (the hub cached it framed)."""

    def body_framing(self, stream_id: int) -> Framing:
        """The connection-independent framing of this stream's pre-rendered bytes: what the
        hub may cache per event (`UNFRAMED` where framing is per stream)."""

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The handler consumed `size` inbound bytes: give the peer its credit back."""

    def pending(self, stream_id: int) -> int:
        """Bytes queued in the adapter for this stream, waiting for flow-control credit."""

    def is_tunnel(self, stream_id: int) -> bool: ...

    def can_push(self) -> bool: ...

    @property
    def stream_count(self) -> int:
        """Streams open now (requests, tunnels, pushes)."""

    @property
    def idle(self) -> bool:
        """No stream in progress: the keep-alive timer may run."""

    @property
    def closed(self) -> bool: ...


class ByteStreamProtocol(StreamProtocol, Protocol):
    """An adapter over one ordered byte stream (TCP, or TLS over TCP)."""

    def receive_data(self, data: bytes) -> list[Event]:
        """Bytes from the peer (b"" at its EOF) -> events."""

    def data_to_send(self) -> bytes: ...

    def shutdown(self) -> None:
        """The connection is closing: say goodbye (HTTP/2 GOAWAY) in `data_to_send`."""

    @property
    def peer_sending(self) -> bool:
        """The peer is (or may still be) sending a body nobody will read: close lingering."""

    @property
    def head_started(self) -> bool:
        """Part of a request head is in (a header timeout then deserves a 408)."""


def send_each(send: Callable[[Event], list[Event]], events: list[Event]) -> list[Event]:
    """`send_all` for an adapter that frames a whole response event by event."""
    follow: list[Event] = []
    for event in events:
        follow += send(event)
    return follow
