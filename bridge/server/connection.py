"""A client TCP connection: the only place that moves HTTP/1.1 and HTTP/2 bytes.

`ServerConnection` is an `asyncio.Protocol` (callbacks, no task per connection): it feeds bytes
to the protocol adapter, hands the adapter's events to the `StreamDispatcher` (which runs each
request as an `Exchange`), writes what the adapter produces, and enforces the connection's
timeouts. It is the TCP `StreamPort`: exchanges reach it only through that interface. Nothing a
peer sends can raise out of here: every callback ends in a handler that logs and closes.

State (`ConnState`, transitions in this file): OPEN; CLOSING once the adapter or we decided to
close (bytes still queued go out first); LINGERING when closed for writing while an HTTP/1.1
peer is still sending a body nobody reads. The one timer's purpose is a `TimerKind`.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from functools import partial
from typing import TYPE_CHECKING

from .. import settings
from ..errors import ErrorCode
from ..events import Body, Event, Response, StreamReset
from ..framing import UNFRAMED
from ..protocol.base import ByteStreamProtocol
from ..protocol.http1 import Http1Protocol
from ..protocol.http2 import PREFACE, Http2Protocol
from ..stream.port import HotPath
from .dispatch import StreamDispatcher

if TYPE_CHECKING:
    from ..stream.exchange import Exchange
    from .context import ServerContext

log = logging.getLogger("bridge.server")
# Bytes that begin with the HTTP/2 preface's request line go to the HTTP/2 adapter.
_PREFACE_LINE = len(b"PRI * HTTP/2.0")


def http2_preface_shape(first: bytes) -> bool | None:
    """Do a clear-text connection's first bytes come from an HTTP/2 client (prior knowledge,
    RFC 9113 §3.3)? None: not decidable yet.

    Yes for the preface, and for what has its shape without being it: a first line naming no
    HTTP version, right before an empty line (h2spec's "INVALID CONNECTION PREFACE\r\n\r\n");
    the HTTP/2 adapter answers those with SETTINGS and GOAWAY PROTOCOL_ERROR (§3.4), as on
    TLS. No for anything naming a version in its first line (HTTP/1.x, and HTTP/1.2 or
    HTTP/3 that get 505 and 400) and for binary bytes (TLS on the clear port: 400).
    """
    if first.startswith(PREFACE[:_PREFACE_LINE]):
        return True
    if len(first) < len(PREFACE) and PREFACE.startswith(first):
        return None  # could still become the HTTP/2 preface
    end = first.find(b"\r\n")
    line = first if end < 0 else first[:end]
    if b" HTTP/" in line or not line.isascii() or not line[:1].isalpha():
        return False
    if end < 0 or len(first) < end + 4:
        return None if len(first) < settings.H2C_SNIFF_MAX else False
    return first[end : end + 4] == b"\r\n\r\n"


class ConnState(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    LINGERING = "lingering"


class TimerKind(enum.Enum):
    NONE = "none"
    HEADER = "header"  # a request head must complete (408 then close)
    KEEPALIVE = "keepalive"  # idle between requests
    LINGER = "linger"  # closed for writing, discarding what still arrives


# One read buffer for the whole process: the loop runs one callback at a time, and
# `buffer_updated` copies the bytes out before it returns. uvloop's TLS transport hands a
# plain Protocol a freshly allocated 256 KiB object per read; a BufferedProtocol it decrypts
# into this instead.
_READ_BUFFER = memoryview(bytearray(settings.READ_CHUNK))


class ServerConnection(asyncio.BufferedProtocol):
    def __init__(self, ctx: ServerContext, *, scheme: str) -> None:
        self.ctx = ctx
        self.scheme = scheme
        self.loop = asyncio.get_running_loop()
        self.adapter: ByteStreamProtocol | None = None  # HTTP/1.1 or HTTP/2 once known
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.streams = StreamDispatcher(
            self,
            on_request=self._request_started,
            on_idle=self._idle_check,
            on_closing=self._closing,
        )
        self.state = ConnState.OPEN
        self.write_paused = False
        self._reading_paused = False
        # One timer per connection, for whichever of the header-read and keep-alive deadlines
        # is current. Re-arming moves `_deadline`; the TimerHandle is only replaced when the
        # new deadline is earlier than the one it is set for (a later one is noticed when it
        # fires), so a keep-alive request costs no timer-heap churn.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = TimerKind.NONE
        self._deadline = 0.0
        self._preface = b""
        self._flush_soon = False
        # HTTP/2 fan-out to several streams of one connection: their frames are gathered and
        # written once at the end of the loop iteration (one syscall, one TLS record for all).
        self._batch: list[bytes] | None = None
        self._abort_timer: asyncio.TimerHandle | None = None  # see `_close_transport`
        self._linger_until = 0.0
        self.body_timeout = ctx.limits.header_timeout * 3
        self._alt_svc = ctx.alt_svc if scheme == "https" else None

    @property
    def multiplexed(self) -> bool:
        return self.adapter is not None and self.adapter.multiplexed

    @property
    def exchanges(self) -> dict[int, Exchange]:
        return self.streams.exchanges

    # --- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but have the same methods.
        transport: asyncio.Transport = base  # type: ignore[assignment]
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.client_ip = peer[0] if peer else ""
        transport.set_write_buffer_limits(
            high=settings.WRITE_HIGH_WATER, low=settings.WRITE_LOW_WATER
        )
        if not self.ctx.admit(self):
            transport.abort()
            return
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            alpn = ssl_object.selected_alpn_protocol()
            self._use(Http2Protocol if alpn == "h2" else Http1Protocol)
        # Clear text: HTTP/1.1 unless the first bytes are the HTTP/2 preface (prior knowledge).
        self._arm(self.ctx.limits.header_timeout, TimerKind.HEADER)

    def _use(self, kind: type[Http1Protocol] | type[Http2Protocol]) -> None:
        if kind is Http2Protocol:
            self.adapter = Http2Protocol(
                scheme=self.scheme,
                max_concurrent_streams=self.ctx.limits.h2_max_concurrent_streams,
                engine=self.ctx.h2_engine,
            )
        else:
            self.adapter = Http1Protocol(scheme=self.scheme)
        self.flush()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_READ_BUFFER[:nbytes]))

    def data_received(self, data: bytes) -> None:
        if self.state is ConnState.LINGERING:
            self._linger_more()
            return
        try:
            adapter = self.adapter
            if adapter is None:
                data = self._sniff(data)
                adapter = self.adapter
                if adapter is None:
                    return
            if self._timer_kind is TimerKind.KEEPALIVE and not adapter.multiplexed:
                # A new HTTP/1.1 request head has begun: it must complete in header_timeout.
                self._arm(self.ctx.limits.header_timeout, TimerKind.HEADER)
            dispatch = self.streams.dispatch
            for event in adapter.receive_data(data):
                dispatch(event)
            self.flush()
        except Exception:  # a peer's bytes must never take the process down
            log.exception("error handling data from %s", self.client_ip)
            self.close()

    def _sniff(self, data: bytes) -> bytes:
        buffered = self._preface + data
        h2 = http2_preface_shape(buffered)
        if h2 is None:
            self._preface = buffered  # not decided yet (bounded by H2C_SNIFF_MAX)
            return b""
        self._preface = b""
        self._use(Http2Protocol if h2 else Http1Protocol)
        return buffered

    def eof_received(self) -> bool | None:
        if self.state is ConnState.LINGERING:
            return None  # the peer has stopped sending: asyncio closes the transport
        if self.adapter is not None and not self.adapter.multiplexed:
            self.data_received(b"")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()  # a pending handle would keep this connection alive
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        if self.state is ConnState.OPEN:
            self.state = ConnState.CLOSING
        self.streams.abort_all()
        if isinstance(self.adapter, Http2Protocol):
            self.adapter.release()  # queued stream bytes go now, not at the next collection
        # Break the cycles through this connection (dispatcher <-> us, transport <-> us, its
        # protocol being us) so it is freed by reference counting when the loop lets go of
        # the transport, with its TLS buffers: not at a full collection, which the raised GC
        # thresholds (settings.GC_THRESHOLDS) make rare. Exchanges still finishing keep us
        # alive as their port, without a cycle; with no transport, sends do nothing.
        self.streams.release()
        self.transport = None
        self.ctx.release(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.multiplexed:
            # HTTP/2 answers some frames by itself (PING and SETTINGS ACKs): a client that
            # sends them and never reads would grow our write buffer without end. Stop
            # reading until it drains, as Envoy does above its high watermark.
            self.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.multiplexed:
            self.resume_reading()
        self.streams.writable()

    # --- dispatcher hooks -----------------------------------------------------------------------

    def _request_started(self) -> None:
        if self._timer_kind is TimerKind.HEADER:
            self._disarm()

    def _closing(self) -> None:
        if self.state is ConnState.OPEN:
            self.state = ConnState.CLOSING

    # --- StreamPort: writing ----------------------------------------------------------------------

    def send(self, event: Event) -> None:
        self.send_all([event])

    def send_all(self, events: list[Event]) -> None:
        adapter = self.adapter
        if adapter is None or self.transport is None:
            return
        if self._alt_svc is not None:
            events = [self._advertise(e) for e in events]
        dispatch = self.streams.dispatch
        for follow in adapter.send_all(events):
            dispatch(follow)
        self._flush_later()

    def _advertise(self, event: Event) -> Event:
        # HTTP/3 is on: every HTTPS response advertises it (RFC 7838 §3), whatever the
        # handler; handlers need not know that another transport exists.
        alt_svc = self._alt_svc
        if alt_svc is None or not isinstance(event, Response):
            return event
        return Response(event.stream_id, event.status, [*event.headers, alt_svc])

    def _flush_later(self) -> None:
        """Write what the adapter holds at the end of this loop iteration, together with
        every other connection's answers of the iteration (`ServerContext.flush_later`).

        One write per connection and iteration: a response's head, body and end, or several
        HTTP/2 streams' frames, are one syscall (over TLS, one record). And the writes of an
        iteration leave back to back instead of between the handlers' work, so the peers
        (an HTTP client, the next proxy) are woken once for the lot rather than once per
        answer: in `benchmarks/proxy.py` this took bridge's CPU per request from about 81 to
        57 µs, and its kernel share from 30 to 21 %.
        """
        if not self._flush_soon:
            self._flush_soon = True
            if self.ctx.flush_later(self):
                self.loop.call_soon(self.ctx.flush_pending)

    def deferred_flush(self) -> None:
        """`ServerContext.flush_pending`'s call: the iteration is over, write now."""
        self._flush_soon = False
        self.flush()

    def flush(self) -> None:
        transport = self.transport
        if transport is None or self.adapter is None:
            return
        if self._batch is not None:
            self._write_batch()  # gathered frames go before anything queued after them
        data = self.adapter.data_to_send()
        if data and not transport.is_closing():
            transport.write(data)
        if self.state is not ConnState.OPEN:
            self._close_transport(transport)

    def write_prerendered(self, stream_id: int, data: bytes, *, framed: bool = False) -> None:
        """Pre-rendered stream bytes (an SSE event, a WebSocket frame), framed by the adapter.

        The framed bytes go straight to the transport: on HTTP/1.1 the adapter only
        frames the head and the final chunk; on HTTP/2 its fast path builds the DATA
        frame when the windows allow, else they take the ordinary `send(Body)` path.
        """
        transport = self.transport
        adapter = self.adapter
        if transport is None or adapter is None or transport.is_closing():
            return
        out = adapter.frame_prerendered(stream_id, data, framed=framed)
        if out is None:
            if self._batch is not None:
                self._write_batch()  # keep this stream's frame order
            # Follow-up events are not dispatched here: this runs inside a channel's fan-out
            # loop, and a stream closing under it is noticed through the next read instead.
            adapter.send(Body(stream_id, data))
            queued = adapter.data_to_send()
            if queued:
                transport.write(queued)
            return
        if adapter.multiplexed:
            batch = self._batch
            if batch is not None:
                batch.append(out)
                return
            if adapter.stream_count > 1:
                self._batch = [out]
                self.loop.call_soon(self._write_batch)
                return
        transport.write(out)  # one buffer, one write: over TLS, one record

    def hot_path(self, stream_id: int, *, tunnel: bool) -> HotPath:
        """HTTP/1.1: the transport's own `write`, the hub having framed the bytes once for all
        connections; HTTP/2: `write_prerendered`, which adds this stream's DATA frame header."""
        adapter = self.adapter
        transport = self.transport
        if adapter is not None and transport is not None and not adapter.multiplexed:
            framing = UNFRAMED if tunnel else adapter.body_framing(stream_id)
            return HotPath(framing, transport.write, transport.get_write_buffer_size)
        return HotPath(
            UNFRAMED, partial(self.write_prerendered, stream_id), partial(self.buffered, stream_id)
        )

    def _write_batch(self) -> None:
        batch, self._batch = self._batch, None
        transport = self.transport
        if batch and transport is not None and not transport.is_closing():
            transport.write(batch[0] if len(batch) == 1 else b"".join(batch))

    def buffered(self, stream_id: int) -> int:
        # Not the fan-out's batch (`write_prerendered`): it is this loop iteration's frames of
        # every stream on the connection, all written when the iteration ends. Counted, a
        # change big enough across a busy connection (1,000 streams x 150 B, 128 x 2 KB) made
        # the streams served last look over `subscriber_buffer` at every change, so they lagged
        # and were never seen to drain: they missed changes until the next heartbeat. A slow
        # reader still shows, in the transport's buffer, from the next change on.
        transport = self.transport
        queued = transport.get_write_buffer_size() if transport is not None else 0
        adapter = self.adapter
        if adapter is not None and adapter.multiplexed:
            queued += adapter.pending(stream_id)
        return queued

    def congested(self, stream_id: int) -> bool:
        # Any bytes still waiting for the stream's window: a stream kept at window zero holds
        # the one piece it was given, not a second (issue 13: 300 stalled streams, 89 MiB).
        adapter = self.adapter
        return self.write_paused or (adapter is not None and adapter.pending(stream_id) > 0)

    def acknowledge(self, stream_id: int, size: int) -> None:
        if self.adapter is not None:
            self.adapter.acknowledge(stream_id, size)

    def can_push(self) -> bool:
        return self.adapter is not None and self.adapter.can_push()

    def is_tunnel(self, stream_id: int) -> bool:
        adapter = self.adapter
        return adapter is not None and adapter.is_tunnel(stream_id)

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.write_paused and self.multiplexed:
            return  # `resume_writing` resumes it (a consumed body must not undo the pause)
        if self._reading_paused and self.transport is not None and self.state is ConnState.OPEN:
            self._reading_paused = False
            self.transport.resume_reading()

    # --- lifetime -------------------------------------------------------------------------------

    def exchange_done(self, exchange: Exchange) -> None:
        """The handler task finished: arm the keep-alive timer if nothing else is running."""
        self.streams.exchange_done(exchange)
        self._idle_check()
        if self.state is ConnState.OPEN:
            self._flush_later()
        else:
            self.flush()  # and close: nothing else will come

    def _idle_check(self) -> None:
        if self.state is not ConnState.OPEN:
            return
        if not self.streams.exchanges and self.adapter is not None and self.adapter.idle:
            if self.ctx.shutting_down:
                self.close()
                return
            self._arm(self.ctx.limits.keepalive_timeout, TimerKind.KEEPALIVE)

    def _arm(self, delay: float, kind: TimerKind) -> None:
        self._timer_kind = kind
        deadline = self._deadline = self.loop.time() + delay
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline:
                return  # it fires first, and then waits out the rest
            timer.cancel()
        self._timer = self.loop.call_at(deadline, self._expired)

    def _disarm(self) -> None:
        self._timer_kind = TimerKind.NONE  # a pending TimerHandle stays; it finds nothing to do

    def long_lived(self) -> None:
        """An exchange turned into a stream or tunnel that may last for hours: drop the idle
        timer now rather than let it fire for nothing (10,000 subscribers, 10,000 wake-ups)."""
        if self._timer_kind is TimerKind.NONE:
            self._cancel_timer()

    def _cancel_timer(self) -> None:
        self._timer_kind = TimerKind.NONE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        kind = self._timer_kind
        if kind is TimerKind.NONE:
            return
        if self.loop.time() < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._expired)
            return
        self._timer_kind = TimerKind.NONE
        if kind is TimerKind.LINGER:
            if self.transport is not None:
                self.transport.close()
            return
        if self.streams.exchanges:
            return
        adapter = self.adapter
        if kind is TimerKind.HEADER and adapter is not None and not adapter.multiplexed:
            if adapter.head_started:
                # RFC 9110 §15.5.9: tell the client why, then close.
                self.send(StreamReset(1, ErrorCode.REQUEST_TIMEOUT))
        self.close()

    def shutdown(self) -> None:
        """Graceful stop: in-flight exchanges finish; the connection closes when they have.

        The HTTP/2 GOAWAY goes out at close, not now: several clients fail every open stream
        on a GOAWAY, even ones the server promised to finish (RFC 9113 §6.8 allows both).
        """
        if not self.streams.exchanges:
            self.close()

    def close(self) -> None:
        if self.state is ConnState.LINGERING:
            return  # already closed for writing; the linger timer ends it
        self.state = ConnState.CLOSING
        self._cancel_timer()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if self._batch is not None:
                self._write_batch()
            adapter = self.adapter
            if adapter is not None:
                adapter.shutdown()
                data = adapter.data_to_send()
                if data:
                    transport.write(data)
            self._close_transport(transport)

    def _close_transport(self, transport: asyncio.Transport) -> None:
        """Close; but linger while an HTTP/1.1 peer is still sending a body we will not read.

        Closing a socket with unread bytes in its receive buffer makes the kernel send RST,
        and an RST makes the client drop the answer it has not read yet: a 413 sent before
        the body is in would never be seen. So, like nginx's lingering close: stop writing,
        discard what still comes, close at the peer's EOF, after `LINGER_TIMEOUT` without
        bytes, or after `LINGER_MAX` in all.
        """
        if self.state is ConnState.LINGERING:
            return  # the linger timer or the peer's EOF closes it
        adapter = self.adapter
        if adapter is None or not adapter.peer_sending:
            # Asked before closing: a closed (or lost) asyncio TLS transport cannot tell.
            unsent = 0 if transport.is_closing() else transport.get_write_buffer_size()
            transport.close()
            if unsent and self._abort_timer is None:
                # A closed transport still waits to write what is buffered; a peer that reads
                # nothing (a flood of PINGs whose ACKs it never takes) would keep it for ever.
                self._abort_timer = self.loop.call_later(settings.SEND_TIMEOUT, self.abort)
            return
        self.state = ConnState.LINGERING
        if transport.can_write_eof():
            transport.write_eof()  # the peer sees the end of the answer now (TLS cannot)
        self._linger_until = self.loop.time() + settings.LINGER_MAX
        self._arm(settings.LINGER_TIMEOUT, TimerKind.LINGER)
        if self._reading_paused:  # bytes must keep flowing for the peer to finish
            self._reading_paused = False
            transport.resume_reading()

    def _linger_more(self) -> None:
        remaining = self._linger_until - self.loop.time()
        if remaining <= 0:
            if self.transport is not None:
                self.transport.close()
            return
        self._arm(min(settings.LINGER_TIMEOUT, remaining), TimerKind.LINGER)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
