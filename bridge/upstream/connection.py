"""One TCP connection to an upstream: socket callbacks, a bounded inbound queue, the llhttp
reader of its answers, and the one timer of its waits.

- While nobody reads an answer, the connection stops reading from the socket once more than
  `settings.READ_HIGH_WATER` bytes wait unparsed, so a slow client slows the upstream down
  through TCP flow control instead of filling our memory. Reads are at most
  `settings.READ_CHUNK` (a `BufferedProtocol` into one shared buffer): a plain Protocol gets
  whatever the loop read, 256 KiB at a time on uvloop, on top of the high watermark, for each
  of hundreds of responses a client may stall (issue 13 item 3).
- Waits are a bare future with one timer per connection, re-armed lazily (it fires at the
  deadline it was set for and, if the current deadline is later, sets itself again):
  `asyncio.wait_for` would cost a Task per await, and a timer per wait is a timer-heap insert
  and removal per request on the proxy's hot path.
- A connection whose answer was a 101 stops being HTTP: `tunnel()` hands its transport, and
  the bytes already read past the head, to a `Tunnel`.

Which request is sent on it, and when it goes back to the pool, is decided by its users
(`attempt.Attempt`, `response.UpstreamResponse`, `pool.UpstreamPool`).
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque

from .. import settings
from . import reader as wire
from .tunnel import Tunnel

Origin = tuple[str, str, int]


# One read buffer for every upstream connection: the loop runs one callback at a time and
# `buffer_updated` copies the bytes out before it returns.
_READ_BUFFER = memoryview(bytearray(settings.READ_CHUNK))


class Connection(asyncio.BufferedProtocol):
    """One TCP connection to an upstream: the socket callbacks, an inbound queue bounded by
    pausing the transport, and the llhttp reader of its answers."""

    __slots__ = (
        "_deadline",
        "_drain_waiter",
        "_inbound",
        "_read_paused",
        "_reader",
        "_timer",
        "_write_paused",
        "answered",
        "buffered",
        "closed",
        "early",
        "eof",
        "idle_since",
        "loop",
        "origin",
        "reader",
        "request_done",
        "transport",
    )

    def __init__(self, origin: Origin, loop: asyncio.AbstractEventLoop) -> None:
        self.origin = origin
        self.loop = loop
        self.reader = wire.ResponseReader()
        self.request_done = False  # the whole current request has been handed to the socket
        self.transport: asyncio.Transport | None = None
        self._inbound: deque[bytes] = deque()
        self.buffered = 0  # bytes in _inbound, not yet parsed
        self.eof = False  # the upstream closed its side (or the socket is gone)
        self.closed = False  # we closed, or the socket is gone
        self.answered = False  # a byte of the current exchange's answer has arrived
        self.early: tuple | None = None  # a head that came while we were still sending
        self._reader: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self._write_paused = False
        self.idle_since = 0.0
        # The one timer of the waits (see the module docstring): what it guards is `_deadline`.
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0

    # --- asyncio callbacks -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not asyncio.Transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover - already set, or not TCP
                pass

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(_READ_BUFFER[:nbytes]))

    def data_received(self, data: bytes) -> None:
        self._inbound.append(data)
        self.buffered += len(data)
        self.answered = True
        if self.buffered > settings.READ_HIGH_WATER and not self._read_paused:
            self._read_paused = True
            if self.transport is not None and not self.transport.is_closing():
                self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self.eof = True
        self._wake()
        return None  # close our side too: an upstream that stopped sending is done with us

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.closed = True
        self._cancel_timer()
        # The transport refers to us as its protocol: without this the pair is a reference
        # cycle that waits for a full collection (rare under settings.GC_THRESHOLDS).
        self.transport = None
        self._wake()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)
        waiter = self._drain_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # --- state -----------------------------------------------------------------------------
    @property
    def reusable(self) -> bool:
        """Idle and clean: the socket is open and the upstream has sent nothing since the last
        answer (a stray byte on an idle connection means it is not speaking HTTP to us)."""
        return not self.eof and not self.closed and not self._inbound

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    def close(self) -> None:
        self.closed = True
        self._cancel_timer()
        self.reader.detach()
        if self.transport is not None:
            self.transport.close()

    # --- the wait timer -----------------------------------------------------------------------
    def _wait(self, deadline: float) -> asyncio.Future[None]:
        """A future that the next socket event completes, or TimeoutError at `deadline`."""
        waiter = self.loop.create_future()
        self._deadline = deadline
        timer = self._timer
        if timer is None or timer.when() > deadline:
            if timer is not None:
                timer.cancel()
            self._timer = self.loop.call_at(deadline, self._expired)
        return waiter

    def _expired(self) -> None:
        self._timer = None
        waiters = [w for w in (self._reader, self._drain_waiter) if w is not None and not w.done()]
        if not waiters:
            return  # nothing waits now; the next wait arms the timer again
        if self.loop.time() < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._expired)
            return
        for waiter in waiters:
            waiter.set_exception(TimeoutError())

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- writing -----------------------------------------------------------------------------
    def write(self, pieces: list[bytes]) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("upstream connection closed")
        if len(pieces) == 1:
            self.transport.write(pieces[0])
        elif pieces:
            self.transport.writelines(pieces)

    async def wait_writable(self, timeout: float) -> None:
        """One wait for the transport to take more bytes, or for answer bytes to arrive (the
        caller looks for an early answer). TimeoutError, or ConnectionResetError once closed."""
        if self.closed:
            raise ConnectionResetError("upstream connection closed")
        waiter = self._drain_waiter = self._wait(self.loop.time() + timeout)
        try:
            await waiter
        finally:
            self._drain_waiter = None
        if self.closed:
            raise ConnectionResetError("upstream connection closed")

    # --- reading -----------------------------------------------------------------------------
    def poll_event(self) -> tuple:
        """The next answer event from bytes already here, parsing one buffered piece at a time
        (so the parsed events waiting stay bounded by one socket read); `wire.NEED_DATA` when
        more bytes are needed. Raises `wire.ResponseError`."""
        reader = self.reader
        event = reader.next()
        while event is wire.NEED_DATA:
            if self._inbound:
                data = self._inbound.popleft()
                self.buffered -= len(data)
                if self._read_paused and self.buffered <= settings.READ_HIGH_WATER // 2:
                    self._read_paused = False
                    if self.transport is not None and not self.transport.is_closing():
                        self.transport.resume_reading()
                reader.feed(data)
            elif self.eof:
                reader.feed_eof()  # the end of a close-delimited body, or an error
                return reader.next()
            else:
                return event
            event = reader.next()
        return event

    async def next_event(self, timeout: float) -> tuple:
        """The next answer event, waiting at most `timeout` seconds for bytes (TimeoutError)."""
        event = self.poll_event()
        if event is not wire.NEED_DATA:
            return event
        return await self.wait_event(self.loop.time() + timeout)

    async def wait_event(self, deadline: float) -> tuple:
        """The next answer event once more bytes come, by `deadline` (TimeoutError)."""
        while True:
            await self.readable(deadline)
            event = self.poll_event()
            if event is not wire.NEED_DATA:
                return event

    def readable(self, deadline: float) -> asyncio.Future[None]:
        """What to await for more answer bytes (or the end of the socket), by `deadline`.
        A plain future, not a coroutine: the proxy's head wait adds no frame of its own."""
        reader = self._reader = self._wait(deadline)
        return reader

    # --- after a 101 ---------------------------------------------------------------------------
    def tunnel(self) -> Tunnel:
        """Hand the transport over as a byte tunnel, once this connection's answer was a
        101 (Switching Protocols): the bytes after that head come first, and this connection is
        done (closed, but its transport lives on in the tunnel). Never pooled again."""
        pieces: deque[bytes] = deque(self._inbound)
        rest = self.reader.rest
        if rest:
            pieces.appendleft(rest)
        transport = self.transport
        tunnel = Tunnel(
            transport,
            pieces,
            eof=self.eof,
            read_paused=self._read_paused,
            write_paused=self._write_paused,
        )
        self._inbound.clear()
        self.buffered = 0
        self.closed = True
        self._cancel_timer()
        self.reader.detach()
        self.transport = None  # the tunnel's now: our close() must not close it
        if transport is not None:
            transport.set_protocol(tunnel)
        return tunnel
