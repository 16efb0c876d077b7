"""The byte stream an upstream connection becomes after a 101 (Switching Protocols).

A pass-through WebSocket relays the upstream's frames as they are, so what it needs of the
connection is bytes both ways with backpressure: reads stop once `settings.READ_HIGH_WATER`
bytes wait unread (the socket is paused, as a `Connection` does for an unread body), and
`write` waits while the transport is above its write watermark. `Connection.tunnel()` makes
one by taking over the transport (`set_protocol`), with the bytes already read past the head.
"""

from __future__ import annotations

import asyncio
from collections import deque

from .. import settings

# The tunnels' one read buffer (as the connections have theirs): the loop runs one callback at
# a time and `buffer_updated` copies the bytes out before it returns.
_READ_BUFFER = memoryview(bytearray(settings.READ_CHUNK))


class Tunnel(asyncio.BufferedProtocol):
    __slots__ = (
        "_closed",
        "_drain_waiter",
        "_eof",
        "_error",
        "_inbound",
        "_read_paused",
        "_read_waiter",
        "_transport",
        "_write_paused",
        "buffered",
    )

    def __init__(
        self,
        transport: asyncio.Transport | None,
        pieces: deque[bytes],
        *,
        eof: bool,
        read_paused: bool,
        write_paused: bool,
    ) -> None:
        self._transport = transport
        self._inbound = pieces
        self.buffered = sum(len(piece) for piece in pieces)  # bytes read, not yet taken
        self._eof = eof or transport is None
        self._closed = transport is None
        self._error: Exception | None = None  # why the socket went, if it broke
        self._read_paused = read_paused
        self._write_paused = write_paused
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None

    # --- asyncio callbacks -------------------------------------------------------------------
    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        data = bytes(_READ_BUFFER[:nbytes])
        self._inbound.append(data)
        self.buffered += nbytes
        if self.buffered > settings.READ_HIGH_WATER and not self._read_paused:
            self._read_paused = True
            if self._transport is not None and not self._transport.is_closing():
                self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake()
        return None  # the relay ends at the first end: close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = self._closed = True
        self._error = exc
        self._transport = None  # it refers to us: no cycle left for the collector
        self._wake()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake()

    def _wake(self) -> None:
        for waiter in (self._read_waiter, self._drain_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    # --- the byte stream ---------------------------------------------------------------------
    async def read(self) -> bytes:
        """The next bytes from the upstream (at most one socket read); b"" once it has ended.
        No deadline: the peers' own pings and closes pace a tunnel. Raises the socket's error
        if it broke (reset), once the bytes before it are read."""
        while not self._inbound:
            if self._eof:
                if self._error is not None:
                    raise self._error
                return b""
            waiter = self._read_waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._read_waiter = None
        data = self._inbound.popleft()
        self.buffered -= len(data)
        if self._read_paused and self.buffered <= settings.READ_HIGH_WATER // 2:
            self._read_paused = False
            if self._transport is not None and not self._transport.is_closing():
                self._transport.resume_reading()
        return data

    async def write(self, data: bytes, timeout: float) -> None:
        """Send `data`; while the transport holds more than its watermark, wait (at most
        `timeout` seconds in all: TimeoutError) for it to take more. ConnectionResetError once
        the socket is gone."""
        transport = self._transport
        if self._closed or transport is None or transport.is_closing():
            raise ConnectionResetError("upstream connection closed")
        transport.write(data)
        if not self._write_paused:
            return
        async with asyncio.timeout(timeout):
            while self._write_paused and not self._closed:
                waiter = self._drain_waiter = asyncio.get_running_loop().create_future()
                try:
                    await waiter
                finally:
                    self._drain_waiter = None
        if self._closed:
            raise ConnectionResetError("upstream connection closed")

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self._closed = True
        if self._transport is not None:
            self._transport.close()
