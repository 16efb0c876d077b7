"""The UDP endpoint of `listen.http3`: one socket, many QUIC connections.

`QuicEndpoint` is an `asyncio.DatagramProtocol`. Each datagram's destination connection id
picks its connection (`QuicServerConnection`); a datagram no connection claims goes to the
sans-IO `QuicGate` (protocol/quic.py), which only lets a full-size Initial start a connection
and answers version negotiation and Retry statelessly. Garbage, truncated packets and strays
are dropped before any connection sees them, and one connection's failure closes only it.

Handshakes are bounded: a first datagram none of whose packets decrypts starts nothing (its
connection is dropped at once, silently), and at most `settings.QUIC_MAX_HANDSHAKES`
connections are in their handshake at any time, whether their address was validated by a
Retry or not; the Initials of more wait unanswered (clients resend them).

Sending is batched per loop iteration (`transmit_soon`), one `sendto` per datagram: measured
on loopback (Linux, 150-byte datagrams to 50 peers), `sendmmsg` through ctypes cost 11.8-13.2
µs per datagram against 7.5-9.5 for `sendto`, the struct building outweighing the saved
syscall entries, and UDP GSO only joins datagrams to one peer, which a fan-out (one datagram
to each of many peers) never has.

Sending is bounded: asyncio queues datagrams the kernel will not take yet without limit, so
above `settings.QUIC_SEND_QUEUE` queued bytes a datagram is dropped instead (QUIC's loss
recovery sends it again later, at a pace the congestion controller lowers).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from typing import TYPE_CHECKING

from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import NetworkAddress
from aioquic.quic.packet import QuicHeader

from .. import settings
from ..protocol.quic import QuicGate, ServerQuic, Verdict, peek_header
from .quicconn import QuicServerConnection, QuicState

if TYPE_CHECKING:
    from .context import ServerContext

log = logging.getLogger("bridge.server")


class QuicEndpoint(asyncio.DatagramProtocol):
    def __init__(
        self,
        ctx: ServerContext,
        configuration: QuicConfiguration,
        *,
        retry_above: int | None = None,
        send_queue: int | None = None,
        stream_window: int | None = None,
    ) -> None:
        self.ctx = ctx
        self.configuration = configuration
        self.loop = asyncio.get_running_loop()
        if retry_above is None:
            retry_above = settings.QUIC_RETRY_ABOVE
        self.gate = QuicGate(configuration.supported_versions, retry_above=retry_above)
        self.send_queue = settings.QUIC_SEND_QUEUE if send_queue is None else send_queue
        self.stream_window = settings.H3_STREAM_WINDOW if stream_window is None else stream_window
        self.max_handshakes = settings.QUIC_MAX_HANDSHAKES
        self.transport: asyncio.DatagramTransport | None = None
        self._by_cid: dict[bytes, QuicServerConnection] = {}
        self.connections: set[QuicServerConnection] = set()
        self.handshaking = 0
        self.write_paused = False
        # Connections with something to send, flushed together once per loop iteration.
        self._due: list[QuicServerConnection] = []
        # Counters for tests and /metrics-style inspection.
        self.dropped_in = 0
        self.dropped_out = 0

    # --- asyncio.DatagramProtocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:  # the kernel caps it at net.core.rmem_max / wmem_max
                    sock.setsockopt(socket.SOL_SOCKET, option, settings.QUIC_SOCKET_BUFFER)
                except OSError:
                    pass

    def datagram_received(self, data: bytes, addr: NetworkAddress) -> None:
        header = peek_header(data)
        if header is None:
            self.dropped_in += 1
            return
        conn = self._by_cid.get(header.destination_cid)
        if conn is not None:
            conn.datagram_received(data, addr)
            return
        if self.ctx.shutting_down:
            self.dropped_in += 1
            return
        try:
            self._new_connection(data, header, addr)
        except Exception:  # a peer's datagram must never take the listener down
            log.exception("refused a QUIC connection from %s", addr[0])

    def _new_connection(self, data: bytes, header: QuicHeader, addr: NetworkAddress) -> None:
        admission = self.gate.admit(data, header, addr, self.loop.time(), self.handshaking)
        if admission.verdict is Verdict.REPLY:
            self.sendto(admission.reply, addr)
            return
        if admission.verdict is Verdict.DROP or self.handshaking >= self.max_handshakes:
            # Past the bound, validated or not, a new handshake waits for a slot: the client
            # resends its Initial (RFC 9000 §6.2.1 / §14), and we hold nothing meanwhile.
            self.dropped_in += 1
            return
        quic = ServerQuic(
            stream_window=self.stream_window,
            configuration=self.configuration,
            original_destination_connection_id=admission.original_cid,
            retry_source_connection_id=admission.retry_cid,
        )
        conn = QuicServerConnection(self, self.ctx, quic, addr)
        if not self.ctx.admit(conn):
            self.dropped_in += 1
            return
        self.connections.add(conn)
        self.handshaking += 1
        # Initials keep the client's chosen id until it learns ours (RFC 9000 §7.2).
        self.route(header.destination_cid, conn)
        self.route(quic.host_cid, conn)
        conn.datagram_received(data, addr)
        if conn.state is QuicState.HANDSHAKE and not quic.initial_received:
            # Not one packet of the first datagram decrypted (a valid Retry token proves the
            # address, not the payload): no handshake is under way, so none is kept.
            self.dropped_in += 1
            conn.discard()

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable, ...) for one peer say nothing about the others.
        log.debug("UDP error on the QUIC socket: %s", exc)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        for conn in list(self.connections):
            conn.streams.writable()

    # --- for connections ------------------------------------------------------------------------

    def sendto(self, data: bytes, addr: NetworkAddress) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        queued: int = transport.get_write_buffer_size()  # type: ignore[attr-defined]  # not in typeshed
        if queued > self.send_queue:
            self.dropped_out += 1
            return
        transport.sendto(data, addr)

    def transmit_soon(self, conn: QuicServerConnection) -> None:
        """`conn` has packets to build: one callback at the end of this loop iteration sends
        for every connection that asked (a fan-out to thousands of connections, or a batch
        of datagrams read at once, is one loop callback, not one per connection)."""
        due = self._due
        if not due:
            self.loop.call_soon(self._transmit_due)
        due.append(conn)

    def _transmit_due(self) -> None:
        due, self._due = self._due, []
        for conn in due:
            conn.transmit_if_due()

    def route(self, cid: bytes, conn: QuicServerConnection) -> None:
        self._by_cid[cid] = conn
        conn.cids.add(cid)

    def unroute(self, cid: bytes, conn: QuicServerConnection) -> None:
        if self._by_cid.get(cid) is conn:
            del self._by_cid[cid]
        conn.cids.discard(cid)

    def handshake_done(self) -> None:
        self.handshaking = max(0, self.handshaking - 1)

    def forget(self, conn: QuicServerConnection) -> None:
        for cid in conn.cids:
            if self._by_cid.get(cid) is conn:
                del self._by_cid[cid]
        conn.cids.clear()
        self.connections.discard(conn)

    def close(self) -> None:
        """Stop listening. Connections are the context's to shut down (gracefully)."""
        if self.transport is not None:
            self.transport.close()

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])
