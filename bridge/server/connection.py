"""A client TCP connection: the only place that moves HTTP/1.1 and HTTP/2 bytes.

`ServerConnection` is an `asyncio.Protocol` (callbacks, no task per connection): it feeds bytes
to the protocol adapter, turns requests into `Exchange`s run by the handler as tasks, writes
what the adapter produces, and enforces the connection's timeouts. Nothing a peer sends can
raise out of here: every callback ends in a handler that logs and closes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from .. import settings
from ..errors import ErrorCode, StreamError
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
from ..protocol.http1 import Http1Protocol
from ..protocol.http2 import PREFACE, Http2Protocol
from .exchange import Exchange

if TYPE_CHECKING:
    from .context import ServerContext

log = logging.getLogger("bridge.server")


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
        self.adapter: Any = None  # Http1Protocol | Http2Protocol once known
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.exchanges: dict[int, Exchange] = {}
        self.write_paused = False
        self._reading_paused = False
        self._closing = False
        # One timer per connection, for whichever of the header-read and keep-alive deadlines
        # is current. Re-arming moves `_deadline`; the TimerHandle is only replaced when the
        # new deadline is earlier than the one it is set for (a later one is noticed when it
        # fires), so a keep-alive request costs no timer-heap churn.
        self._timer: asyncio.TimerHandle | None = None
        self._timer_kind = ""
        self._deadline = 0.0
        self._preface = b""
        self._flush_soon = False
        # HTTP/2 fan-out to several streams of one connection: their frames are gathered and
        # written once at the end of the loop iteration (one syscall, one TLS record for all).
        self._batch: list[bytes] | None = None
        self._batch_bytes = 0
        self._lingering = False  # closed for writing, discarding what the peer still sends
        self._abort_timer: asyncio.TimerHandle | None = None  # see `_close_transport`
        self._linger_until = 0.0
        self.body_timeout = ctx.limits.header_timeout * 3

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
        self._arm(self.ctx.limits.header_timeout, "header")

    def _use(self, kind: type) -> None:
        if kind is Http2Protocol:
            self.adapter = Http2Protocol(
                scheme=self.scheme,
                max_concurrent_streams=self.ctx.limits.h2_max_concurrent_streams,
            )
        else:
            self.adapter = Http1Protocol(scheme=self.scheme)
        self.flush()

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_READ_BUFFER[:nbytes]))

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._linger_more()
            return
        try:
            if self.adapter is None:
                data = self._sniff(data)
                if self.adapter is None:
                    return
            if self._timer_kind == "keepalive" and not self.adapter.multiplexed:
                # A new HTTP/1.1 request head has begun: it must complete in header_timeout.
                self._arm(self.ctx.limits.header_timeout, "header")
            for event in self.adapter.receive_data(data):
                self._dispatch(event)
            self.flush()
        except Exception:  # a peer's bytes must never take the process down
            log.exception("error handling data from %s", self.client_ip)
            self.close()

    def _sniff(self, data: bytes) -> bytes:
        buffered = self._preface + data
        if PREFACE.startswith(buffered[: len(PREFACE)]) and len(buffered) < len(PREFACE):
            self._preface = buffered  # could still become the HTTP/2 preface
            return b""
        self._preface = b""
        self._use(Http2Protocol if buffered.startswith(PREFACE) else Http1Protocol)
        return buffered

    def eof_received(self) -> bool | None:
        if self._lingering:
            return None  # the peer has stopped sending: asyncio closes the transport
        if self.adapter is not None and not self.adapter.multiplexed:
            self.data_received(b"")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()  # a pending handle would keep this connection alive
        if self._abort_timer is not None:
            self._abort_timer.cancel()
            self._abort_timer = None
        self._closing = True
        for exchange in list(self.exchanges.values()):
            exchange.abort()
            self._cancel_handler(exchange)
        if self.adapter is not None and self.adapter.multiplexed:
            self.adapter.release()  # queued stream bytes go now, not at the next collection
        self.ctx.release(self)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.adapter is not None and self.adapter.multiplexed:
            # HTTP/2 answers some frames by itself (PING and SETTINGS ACKs): a client that
            # sends them and never reads would grow our write buffer without end. Stop
            # reading until it drains, as Envoy does above its high watermark.
            self.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.adapter is not None and self.adapter.multiplexed:
            self.resume_reading()
        for exchange in list(self.exchanges.values()):
            exchange.writable()

    # --- events ---------------------------------------------------------------------------------

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, (Body, Data)):
            exchange = self.exchanges.get(event.stream_id)
            if exchange is not None:
                exchange.feed(event.data)
            else:
                self.adapter.acknowledge(event.stream_id, len(event.data))
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
                for exchange in list(self.exchanges.values()):
                    exchange.writable()
        elif isinstance(event, StreamReset):
            exchange = self.exchanges.get(event.stream_id)
            if exchange is not None and not exchange.finished:
                exchange.abort()
        elif isinstance(event, StreamClosed):
            exchange = self.exchanges.pop(event.stream_id, None)
            if exchange is not None:
                if not exchange.finished:
                    exchange.abort()
                    self._cancel_handler(exchange)
                self._idle_check()
        elif isinstance(event, ConnectionClosed):
            self._closing = True

    def _start(self, request: Request) -> None:
        if self._timer_kind == "header":
            self._disarm()
        exchange = Exchange(self, request)
        self.exchanges[request.stream_id] = exchange
        if self.ctx.shutting_down:
            # Draining: finish what is in flight, take nothing new (clients may retry).
            exchange.respond_now(503, [(b"retry-after", b"1"), (b"content-length", b"0")])
            return
        exchange.task = self.loop.create_task(self.ctx.run_exchange(exchange))

    def _cancel_handler(self, exchange: Exchange) -> None:
        task = exchange.task
        if task is not None and not task.done():
            task.cancel()

    # --- writing --------------------------------------------------------------------------------

    def send(self, event: Event) -> None:
        adapter = self.adapter
        if adapter is None or self.transport is None:
            return
        for follow in adapter.send(event):
            self._dispatch(follow)
        # One write per loop iteration: a response head, body and end become one syscall.
        if not self._flush_soon:
            self._flush_soon = True
            self.loop.call_soon(self._deferred_flush)

    def _deferred_flush(self) -> None:
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
        if self._closing:
            self._close_transport(transport)

    def write_stream(self, stream_id: int, data: bytes) -> None:
        """Hot path for pre-rendered stream bytes (an SSE chunk, a WebSocket frame).

        On HTTP/1.1 the bytes already carry their chunk framing, so they bypass h11 and go
        straight to the transport; h11 only frames the head and the final chunk.
        """
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        adapter = self.adapter
        if adapter.multiplexed:
            framed = adapter.frame_prerendered(stream_id, data)
            if framed is not None:
                batch = self._batch
                if batch is not None:
                    batch.append(framed)
                    self._batch_bytes += len(framed)
                elif adapter.stream_count > 1:
                    self._batch = [framed]
                    self._batch_bytes = len(framed)
                    self.loop.call_soon(self._write_batch)
                else:
                    transport.write(framed)  # one buffer, one write: over TLS, one record
                return
            if self._batch is not None:
                self._write_batch()  # keep this stream's frame order
            adapter.send(Body(stream_id, data))
            out = adapter.data_to_send()
            if out:
                transport.write(out)
        else:
            if self._flush_soon:
                # A response head queued by the adapter goes first, in the same syscall.
                queued = adapter.data_to_send()
                if queued:
                    data = queued + data
            transport.write(data)

    def _write_batch(self) -> None:
        batch, self._batch = self._batch, None
        transport = self.transport
        if batch and transport is not None and not transport.is_closing():
            transport.write(batch[0] if len(batch) == 1 else b"".join(batch))

    def buffered(self, stream_id: int) -> int:
        transport = self.transport
        queued = transport.get_write_buffer_size() if transport is not None else 0
        if self._batch is not None:
            queued += self._batch_bytes
        if self.adapter is not None and self.adapter.multiplexed:
            queued += self.adapter.pending(stream_id)
        return queued

    def adapter_pending(self, stream_id: int) -> int:
        adapter = self.adapter
        return adapter.pending(stream_id) if adapter is not None and adapter.multiplexed else 0

    def is_tunnel(self, stream_id: int) -> bool:
        adapter = self.adapter
        return adapter is not None and adapter.is_tunnel(stream_id)

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.write_paused and self.adapter is not None and self.adapter.multiplexed:
            return  # `resume_writing` resumes it (a consumed body must not undo the pause)
        if self._reading_paused and self.transport is not None and not self._closing:
            self._reading_paused = False
            self.transport.resume_reading()

    # --- lifetime -------------------------------------------------------------------------------

    def exchange_done(self, exchange: Exchange) -> None:
        """The handler task finished: arm the keep-alive timer if nothing else is running."""
        if self.exchanges.get(exchange.stream_id) is exchange and exchange.aborted:
            del self.exchanges[exchange.stream_id]
        self._idle_check()
        self.flush()

    def _idle_check(self) -> None:
        if self._closing:
            return
        if not self.exchanges and self.adapter is not None and self.adapter.idle:
            if self.ctx.shutting_down:
                self.close()
                return
            self._arm(self.ctx.limits.keepalive_timeout, "keepalive")

    def _arm(self, delay: float, kind: str) -> None:
        self._timer_kind = kind
        deadline = self._deadline = self.loop.time() + delay
        timer = self._timer
        if timer is not None:
            if timer.when() <= deadline:
                return  # it fires first, and then waits out the rest
            timer.cancel()
        self._timer = self.loop.call_at(deadline, self._expired)

    def _disarm(self) -> None:
        self._timer_kind = ""  # a pending TimerHandle stays; it finds nothing to do

    def long_lived(self) -> None:
        """An exchange turned into a stream or tunnel that may last for hours: drop the idle
        timer now rather than let it fire for nothing (10,000 subscribers, 10,000 wake-ups)."""
        if not self._timer_kind:
            self._cancel_timer()

    def _cancel_timer(self) -> None:
        self._timer_kind = ""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        kind = self._timer_kind
        if not kind:
            return
        if self.loop.time() < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._expired)
            return
        self._timer_kind = ""
        if kind == "linger":
            if self.transport is not None:
                self.transport.close()
            return
        if self.exchanges:
            return
        if kind == "header" and self.adapter is not None and not self.adapter.multiplexed:
            if self.adapter.head_started:
                # RFC 9110 §15.5.9: tell the client why, then close.
                self.send(StreamReset(1, ErrorCode.REQUEST_TIMEOUT))
        self.close()

    def shutdown(self) -> None:
        """Graceful stop: in-flight exchanges finish; the connection closes when they have.

        The HTTP/2 GOAWAY goes out at close, not now: several clients fail every open stream
        on a GOAWAY, even ones the server promised to finish (RFC 9113 §6.8 allows both).
        """
        if not self.exchanges:
            self.close()

    def close(self) -> None:
        if self._lingering:
            return  # already closed for writing; the linger timer ends it
        self._closing = True
        self._cancel_timer()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            if self._batch is not None:
                self._write_batch()
            if self.adapter is not None:
                if self.adapter.multiplexed:
                    self.adapter.shutdown()
                data = self.adapter.data_to_send()
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
        if self._lingering:
            return  # the linger timer or the peer's EOF closes it
        adapter = self.adapter
        if adapter is None or adapter.multiplexed or not adapter.peer_sending:
            transport.close()
            if transport.get_write_buffer_size() and self._abort_timer is None:
                # A closed transport still waits to write what is buffered; a peer that reads
                # nothing (a flood of PINGs whose ACKs it never takes) would keep it for ever.
                self._abort_timer = self.loop.call_later(settings.SEND_TIMEOUT, self.abort)
            return
        self._lingering = True
        if transport.can_write_eof():
            transport.write_eof()  # the peer sees the end of the answer now (TLS cannot)
        self._linger_until = self.loop.time() + settings.LINGER_MAX
        self._arm(settings.LINGER_TIMEOUT, "linger")
        if self._reading_paused:  # bytes must keep flowing for the peer to finish
            self._reading_paused = False
            transport.resume_reading()

    def _linger_more(self) -> None:
        remaining = self._linger_until - self.loop.time()
        if remaining <= 0:
            if self.transport is not None:
                self.transport.close()
            return
        self._arm(min(settings.LINGER_TIMEOUT, remaining), "linger")

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


def error_for(exc: BaseException) -> ErrorCode:
    if isinstance(exc, StreamError):
        return exc.code
    return ErrorCode.INTERNAL_ERROR
