"""One request/response exchange (one HTTP/2 or HTTP/3 stream, one HTTP/1.1 cycle).

This is what handlers hold: they read the request body, send a response, push, or take the
stream's `HotPath` for the fan-out. An exchange talks to its connection only through a
`StreamPort` (port.py), and to the process through that port's `ExchangeHost` (host.py), so
nothing above it knows the transport, the HTTP version or the server. Every
await here is bounded: body reads by the header and idle timeouts of the connection, writes
by `settings.SEND_TIMEOUT`.

Lifecycle (`ExchangeState`, all transitions in this file): OPEN while our side is being sent;
DONE once we sent its end (or a reset); ABORTED when the peer reset the stream or the
connection went away — also after DONE, since a detached stream's cleanup waits for that.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import settings
from ..errors import ErrorCode, StreamError
from ..events import (
    Body,
    Data,
    EndBody,
    EndData,
    Event,
    Headers,
    InformationalResponse,
    PushPromise,
    Request,
    Response,
    StreamReset,
)
from .record import AccessRecord

if TYPE_CHECKING:
    from .port import HotPath, StreamPort


class ExchangeState(enum.Enum):
    OPEN = "open"
    DONE = "done"  # we sent the end of our side
    ABORTED = "aborted"  # the peer reset the stream or the connection went away


class Exchange:
    """A handler's view of one stream; created by the `StreamDispatcher` for each `Request`."""

    # Slotted: one exchange lives for each idle stream subscriber, and past 29 attributes
    # CPython 3.11's per-instance dict grows by about 1.3 KB.
    __slots__ = (
        "_cleanup",
        "_inbound",
        "_inbound_done",
        "_inbound_size",
        "_reader",
        "_t0",
        "_writer",
        "access",
        "bytes_sent",
        "client_ip",
        "detached",
        "handler_returned",
        "on_abort",
        "on_drain",
        "port",
        "request",
        "response_started",
        "state",
        "status",
        "stream_id",
        "task",
    )

    def __init__(self, port: StreamPort, request: Request) -> None:
        self.port = port
        self.request = request
        self.stream_id = request.stream_id
        # What the access log and the request tally read when the exchange is over.
        self.access = AccessRecord(time.time())
        self._t0 = time.monotonic()
        self.client_ip = port.client_ip
        self.state = ExchangeState.OPEN
        # Inbound body (or tunnel data after a WebSocket accept), bounded by flow control.
        # Created on the first body piece: an empty deque is ~600 bytes, and most exchanges
        # (GETs, 10,000 idle stream subscribers) never receive one.
        self._inbound: deque[bytes] | None = None
        self._inbound_size = 0
        self._inbound_done = False
        self._reader: asyncio.Future[None] | None = None
        self._writer: asyncio.Future[None] | None = None
        # Response state.
        self.status = 0
        self.response_started = False
        self.bytes_sent = 0
        self.on_drain: Callable[[], None] | None = None
        self.on_abort: Callable[[], None] | None = None
        self.task: asyncio.Task[None] | None = None
        # A detached exchange outlives its handler task (see `detach`).
        self._cleanup: Callable[[], None] | None = None
        self.detached = False
        self.handler_returned = False

    @property
    def finished(self) -> bool:
        """We sent the end of our side (and the peer has not gone away since)."""
        return self.state is ExchangeState.DONE

    @property
    def aborted(self) -> bool:
        return self.state is ExchangeState.ABORTED

    @property
    def over(self) -> bool:
        return self.state is not ExchangeState.OPEN

    def _done(self) -> bool:
        """OPEN -> DONE; False when the exchange was already over."""
        if self.state is not ExchangeState.OPEN:
            return False
        self.state = ExchangeState.DONE
        return True

    # --- inbound --------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        inbound = self._inbound
        if inbound is None:
            inbound = self._inbound = deque()
        inbound.append(data)
        self._inbound_size += len(data)
        if self._inbound_size > settings.READ_HIGH_WATER and not self.port.multiplexed:
            self.port.pause_reading()
        self._wake_reader()

    def feed_end(self) -> None:
        self._inbound_done = True
        self._wake_reader()

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    async def receive(self, timeout: float | None = None) -> bytes:
        """The next piece of the request body (or tunnel bytes); b"" at the end."""
        while not self._inbound:
            if self._inbound_done:
                return b""
            if self.aborted:
                raise StreamError(ErrorCode.CANCELLED, "client went away")
            self._reader = self.port.loop.create_future()
            try:
                # Not `asyncio.wait_for`: on Python 3.11 it swallows a cancellation that
                # arrives as the future completes (bpo-37658), and a handler told to stop
                # (a relay whose other half ended) would carry on waiting for the next piece.
                async with asyncio.timeout(timeout or self.port.body_timeout):
                    await self._reader
            except TimeoutError:
                raise StreamError(ErrorCode.REQUEST_TIMEOUT, "request body too slow") from None
            finally:
                self._reader = None
        data = self._inbound.popleft()  # type: ignore[union-attr]  # non-empty, so not None
        self._inbound_size -= len(data)
        port = self.port
        if port.multiplexed:
            port.acknowledge(self.stream_id, len(data))
            port.flush()  # the WINDOW_UPDATE must leave now, not with the next response byte
        if self._inbound_size <= settings.READ_HIGH_WATER // 2:
            port.resume_reading()
        return data

    @property
    def body_complete(self) -> bool:
        return self._inbound_done and not self._inbound

    # --- outbound -------------------------------------------------------------------------------

    def _send(self, event: Event) -> None:
        if self.aborted:
            raise StreamError(ErrorCode.CANCELLED, "client went away")
        self.port.send(event)

    def send_informational(self, status: int, headers: Headers) -> None:
        if not self.response_started and not self.aborted:
            self.port.send(InformationalResponse(self.stream_id, status, headers))

    def start_response(self, status: int, headers: Headers) -> None:
        self.status = status
        self.response_started = True
        if status == 101:
            # The request's own body ended with its head; the tunnel is a new inbound stream.
            self._inbound_done = False
        self._send(Response(self.stream_id, status, headers))
        if status == 101 or self.tunnel:
            self.port.long_lived()

    async def send_response(self, status: int, headers: Headers) -> None:
        self.start_response(status, headers)

    async def send_body(self, data: bytes) -> None:
        if not data:
            return
        self.bytes_sent += len(data)
        self._send(Data(self.stream_id, data) if self.tunnel else Body(self.stream_id, data))
        await self.drain()

    async def drain(self) -> None:
        """Wait until the connection and this stream's flow-control window accept more.

        On HTTP/2 and HTTP/3 that is until the stream's window has taken all it was given
        (`StreamPort.congested`): a stream whose peer keeps its window at zero then holds one
        piece of ours, not more (a client's hundreds of stalled streams are each bounded so).
        """
        port = self.port
        while not self.aborted and port.congested(self.stream_id):
            self._writer = port.loop.create_future()
            try:
                async with asyncio.timeout(settings.SEND_TIMEOUT):  # not wait_for: see receive
                    await self._writer
            except TimeoutError:
                raise StreamError(ErrorCode.CANCELLED, "client stopped reading") from None
            finally:
                self._writer = None
        if self.aborted:
            raise StreamError(ErrorCode.CANCELLED, "client went away")

    def writable(self) -> None:
        """The connection drained or the stream's window opened."""
        if self._writer is not None and not self._writer.done():
            self._writer.set_result(None)
        if self.on_drain is not None:
            self.on_drain()

    async def end(self) -> None:
        if self._done():
            self.port.send(EndData(self.stream_id) if self.tunnel else EndBody(self.stream_id))

    async def respond(self, status: int, headers: Headers, body: bytes = b"") -> None:
        self.respond_now(status, headers, body)

    def respond_now(self, status: int, headers: Headers, body: bytes = b"") -> None:
        """A whole small response at once (bounded by the caller: error pages, snapshots,
        an upstream answer that arrived whole), in one write where the transport allows."""
        if self.aborted:
            raise StreamError(ErrorCode.CANCELLED, "client went away")
        if self.request.method == "HEAD":
            body = b""
        self.bytes_sent += len(body)
        if status == 101 or not self._done():
            # A tunnel stays open, and an exchange already ended takes only its head: the
            # step-by-step path knows both.
            self.start_response(status, headers)
            if body:
                self._send(Body(self.stream_id, body))
            if self._done():
                self.port.send(EndBody(self.stream_id))
            return
        self.status = status
        self.response_started = True
        stream_id = self.stream_id
        events: list[Event] = [Response(stream_id, status, headers)]
        if body:
            events.append(Body(stream_id, body))
        events.append(EndBody(stream_id))
        self.port.send_all(events)

    def reset(self, code: ErrorCode) -> None:
        """End the stream abnormally: an error status before the head, a reset after it."""
        if not self._done():
            return
        if not self.response_started:
            self.status = code.status
            self.response_started = True
        self.port.send(StreamReset(self.stream_id, code))

    def push(self, path: str, headers: Headers) -> bool:
        """Promise `path`; False when the client would not get it (HTTP/1.1, push refused,
        its stream limit full), so the caller does not count it as pushed."""
        if self.aborted or self.response_started or not self.port.can_push():
            return False
        self.port.send(PushPromise(self.stream_id, path, headers))
        return True

    # --- tunnels and hot-path writes ----------------------------------------------------------

    def congested(self) -> bool:
        """Would a body written now have to wait (see `drain`)?"""
        return self.port.congested(self.stream_id)

    @property
    def tunnel(self) -> bool:
        return self.port.is_tunnel(self.stream_id)

    def write_prerendered(self, data: bytes) -> None:
        """Rendered stream bytes (an SSE event, a WebSocket frame) to the wire, no awaiting;
        the protocol frames them."""
        self.port.write_prerendered(self.stream_id, data)
        self.bytes_sent += len(data)

    def hot_path(self, *, tunnel: bool) -> HotPath:
        """The fan-out's writer for this stream (see `HotPath`); after the head is queued."""
        return self.port.hot_path(self.stream_id, tunnel=tunnel)

    def buffered(self) -> int:
        return self.port.buffered(self.stream_id)

    # --- lifetime -------------------------------------------------------------------------------

    def abort(self) -> None:
        """The peer reset the stream or the connection closed."""
        if self.aborted:
            return
        self.state = ExchangeState.ABORTED
        self._wake_reader()
        if self._writer is not None and not self._writer.done():
            self._writer.set_result(None)
        if self.on_abort is not None:
            self.on_abort()
        self._finish_detached()

    def detach(self, cleanup: Callable[[], None]) -> None:
        """Let the handler return while the stream lives on, driven by callbacks alone.

        An SSE subscriber needs no task of its own: the hub writes to it synchronously, and
        all that is left to wait for is its end. Parking a task per subscriber would hold a
        Task and a stack of coroutine frames (about 2 KB) for each of 10,000 idle streams.
        `cleanup` runs once when the stream ends, whether the peer went away (`abort`) or we
        ended it (`end_detached`); then the exchange is logged and released as if its handler
        had just returned.
        """
        self.detached = True
        self._cleanup = cleanup
        self.port.long_lived()

    def end_detached(self) -> None:
        """We end a detached stream: finish our side, then clean up."""
        if self._done():
            self.port.send(EndData(self.stream_id) if self.tunnel else EndBody(self.stream_id))
        self._finish_detached()

    def handler_finished(self) -> bool:
        """Its handler returned (or raised): True when the exchange is over now, False when a
        detached stream lives on. A stream that ended before its handler returned (the peer
        left while it was being set up) is cleaned up here."""
        self.handler_returned = True
        cleanup = self._cleanup
        if cleanup is None:
            return True
        if not self.over:
            return False
        self._cleanup = None
        cleanup()
        return True

    def _finish_detached(self) -> None:
        cleanup, self._cleanup = self._cleanup, None
        if cleanup is None:
            return
        try:
            cleanup()
        finally:
            if self.handler_returned:  # else `handler_finished` reports it over
                # The handler is long gone; otherwise `run_exchange` finishes it on return.
                self.port.ctx.finish_exchange(self)

    def release(self) -> None:
        """Over and logged: drop the callbacks into the handler's objects. A stream's exchange
        and its subscription refer to each other (`on_drain`, `on_abort` here; the sink's
        exchange there), and with bridge's raised GC thresholds such a cycle, and the closed
        connection it holds, would wait for a full collection."""
        self.on_drain = None
        self.on_abort = None
        self._cleanup = None
        self.task = None
        self._inbound = None

    @property
    def duration(self) -> float:
        return time.monotonic() - self._t0
