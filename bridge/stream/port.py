"""`StreamPort`: what an `Exchange` needs from the connection that carries its stream.

A TCP connection (HTTP/1.1, HTTP/2) and a QUIC connection (HTTP/3) both implement it, so an
`Exchange` — and every handler and the hub above it — never learns which transport or HTTP
version it runs on. Framing is the port's (its adapter's) business: `write_prerendered` takes
the bytes of a rendered event and puts them on the stream as the version wants them (an
HTTP/1.1 chunk, an HTTP/2 or HTTP/3 DATA frame, raw tunnel bytes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from ..events import Event
from ..framing import Framing

if TYPE_CHECKING:
    from .exchange import Exchange
    from .host import ExchangeHost


@dataclass(frozen=True, slots=True)
class HotPath:
    """The cheapest way to write pre-rendered bytes to one stream, bound once per subscriber.

    `write` takes bytes already wrapped in `framing` (the hub caches that per event) and never
    awaits; `buffered` counts what is accepted and not yet on the wire.
    """

    framing: Framing
    write: Callable[[bytes], None]
    buffered: Callable[[], int]


class StreamPort(Protocol):
    loop: asyncio.AbstractEventLoop
    client_ip: str
    body_timeout: float

    @property
    def ctx(self) -> ExchangeHost:
        """The process serving this connection's exchanges."""

    @property
    def multiplexed(self) -> bool:
        """Streams have their own flow control (HTTP/2, HTTP/3): inbound bytes are credited
        back per stream (`acknowledge`) instead of pausing the whole connection."""

    def send(self, event: Event) -> None:
        """Hand a protocol event to the adapter; the bytes leave within this loop iteration."""

    def send_all(self, events: list[Event]) -> None:
        """Hand a whole response's events to the adapter at once: the bytes leave now, in
        one write, with no callback scheduled."""

    def write_prerendered(self, stream_id: int, data: bytes, *, framed: bool = False) -> None:
        """Rendered stream bytes (an SSE event, a WebSocket frame), framed by the adapter,
        after anything queued before them (a response head). `framed`: they already carry
        the stream's shared framing (`HotPath.framing`), as the hub cached them."""

    def hot_path(self, stream_id: int, *, tunnel: bool) -> HotPath:
        """The fan-out's writer for this stream, once its head is queued (`tunnel`: the bytes
        are a WebSocket's, not a response body)."""

    def buffered(self, stream_id: int) -> int:
        """Bytes written to this stream and not yet on the wire (flow control included)."""

    def congested(self, stream_id: int) -> bool:
        """Should a body writer wait (the transport or the stream's window is full)?"""

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The handler consumed `size` inbound bytes of this stream."""

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def can_push(self) -> bool:
        """Would a `PushPromise` now reach the client (not be dropped)?"""

    def is_tunnel(self, stream_id: int) -> bool: ...

    def long_lived(self) -> None:
        """An exchange became a stream or tunnel that may last for hours."""

    def exchange_done(self, exchange: Exchange) -> None:
        """The exchange is over (handler returned, or its detached stream ended)."""

    def flush(self) -> None:
        """Write what the adapter holds now rather than at the end of the loop iteration."""
