"""A client QUIC connection: the only place that moves HTTP/3 bytes.

`QuicServerConnection` is the HTTP/3 `StreamPort`, as `ServerConnection` is the TCP one: the
endpoint (`datagram.py`) hands it the datagrams addressed to its connection ids, it feeds them
to aioquic (`ServerQuic`) and the adapter (`Http3Protocol`), gives the adapter's events to the
shared `StreamDispatcher`, and sends what aioquic lets out, through the endpoint's socket.

Sends are batched: a connection with packets to build asks the endpoint (`_schedule`), which
transmits for every connection that asked in one callback at the end of the loop iteration;
datagrams read in one go are answered by one transmit.

One timer per connection, re-armed after every send: the earliest of aioquic's own
`get_timer()` (acks, loss detection, pacing, idle timeout, the closing period), the handshake
deadline (`limits.tls_handshake_timeout`), a request head's (`limits.header_timeout`, as on
TCP), and a keep-alive PING while requests are open
(QUIC's idle timeout would otherwise end a quiet SSE stream or tunnel that TCP keeps).

State (`QuicState`): HANDSHAKE until TLS completes, OPEN, then CLOSED (our CONNECTION_CLOSE
is sent, or the peer's came in, or the idle timer ran out); a closed connection leaves the
endpoint and the context at once.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from functools import partial
from typing import TYPE_CHECKING

import aioquic.quic.events as qe
from aioquic.quic.connection import NetworkAddress

from .. import settings
from ..events import Body, Event
from ..protocol.http3 import DATA_FRAMED, Http3Protocol
from ..protocol.quic import ServerQuic
from ..stream.port import HotPath
from .dispatch import StreamDispatcher

if TYPE_CHECKING:
    from ..stream.exchange import Exchange
    from .context import ServerContext
    from .datagram import QuicEndpoint

log = logging.getLogger("bridge.server")


class QuicState(enum.Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


class QuicServerConnection:
    multiplexed = True

    def __init__(
        self, endpoint: QuicEndpoint, ctx: ServerContext, quic: ServerQuic, addr: NetworkAddress
    ) -> None:
        self.endpoint = endpoint
        self.ctx = ctx
        self.quic = quic
        self.loop = endpoint.loop
        self.client_ip = str(addr[0])
        self.body_timeout = ctx.limits.header_timeout * 3
        self.adapter = Http3Protocol(
            quic, max_concurrent_streams=ctx.limits.h2_max_concurrent_streams, clock=self.loop.time
        )
        self._header_timeout = ctx.limits.header_timeout
        self.streams = StreamDispatcher(
            self, on_request=_nothing, on_idle=_nothing, on_closing=self._peer_closing
        )
        self.state = QuicState.HANDSHAKE
        self.cids: set[bytes] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # when `_timer` fires (uvloop's handles for past times lack when())
        self._transmit_soon = False
        self._draining = False  # shutting down: close once the last response is delivered
        self._handshake_deadline = self.loop.time() + ctx.limits.tls_handshake_timeout
        # A PING this often while requests are open keeps QUIC's idle timer from ending them.
        self._ping_every = max(1.0, quic.configuration.idle_timeout / 3)
        self._next_ping = 0.0
        self._ping_id = 0

    @property
    def exchanges(self) -> dict[int, Exchange]:
        return self.streams.exchanges

    # --- from the endpoint ----------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: NetworkAddress) -> None:
        if self.state is QuicState.CLOSED:
            return
        try:
            self.quic.receive_datagram(data, addr, now=self.loop.time())
            self._process_events()
        except Exception:  # a peer's datagrams must never take the process down
            log.exception("error handling a datagram from %s", self.client_ip)
            self.abort()
            return
        # Datagrams read in one go (several per connection in an upload or an ACK burst)
        # are answered by one transmit, with the rest of the loop iteration's.
        self._schedule()

    def transmit_if_due(self) -> None:
        """The endpoint's batched transmit: nothing if a direct `transmit` came first."""
        if not self._transmit_soon:
            return
        try:
            self.transmit()
        except Exception:  # one connection's failure must never take the others down
            log.exception("QUIC transmit failed for %s", self.client_ip)
            self.abort()

    def _process_events(self) -> None:
        quic = self.quic
        adapter = self.adapter
        dispatch = self.streams.dispatch
        while (event := quic.next_event()) is not None:
            if isinstance(event, qe.ConnectionIdIssued):
                self.endpoint.route(event.connection_id, self)
            elif isinstance(event, qe.ConnectionIdRetired):
                self.endpoint.unroute(event.connection_id, self)
            elif isinstance(event, qe.HandshakeCompleted):
                if self.state is QuicState.HANDSHAKE:
                    self.state = QuicState.OPEN
                    self.endpoint.handshake_done()
                    quic.settle()
            for follow in adapter.receive_event(event):
                dispatch(follow)
            if isinstance(event, qe.ConnectionTerminated):
                self._gone()
                return

    # --- sending --------------------------------------------------------------------------------

    def transmit(self) -> None:
        """Send what aioquic lets out now, wake writers whose queue drained, re-arm the timer."""
        self._transmit_soon = False
        if self.state is QuicState.CLOSED:
            return
        quic = self.quic
        now = self.loop.time()
        sendto = self.endpoint.sendto
        for data, addr in quic.datagrams_to_send(now=now):
            sendto(data, addr)
        dispatch = self.streams.dispatch
        for event in self.adapter.drained():
            dispatch(event)
        if self._draining and not self.streams.exchanges and self._all_delivered():
            self.close()
            return
        self._rearm(now)

    def _all_delivered(self) -> bool:
        """Has the client acknowledged every response byte? aioquic's CONNECTION_CLOSE
        discards what is still queued, so a graceful close waits for this."""
        return self.quic.requests_delivered()

    def _schedule(self) -> None:
        # One transmit per loop iteration: a head, body and end leave in the fewest packets,
        # and a fan-out to many streams of this connection shares them.
        if not self._transmit_soon:
            self._transmit_soon = True
            self.endpoint.transmit_soon(self)

    def _rearm(self, now: float) -> None:
        at = self.quic.get_timer()
        if self.state is QuicState.HANDSHAKE:
            at = self._handshake_deadline if at is None else min(at, self._handshake_deadline)
        heads = self.adapter.head_deadline(self._header_timeout)
        if heads is not None:
            at = heads if at is None else min(at, heads)
        if self.streams.exchanges:
            if not self._next_ping:
                self._next_ping = now + self._ping_every
            at = self._next_ping if at is None else min(at, self._next_ping)
        else:
            self._next_ping = 0.0
        if at is None:
            return  # a pending handle stays; it finds nothing to do
        timer = self._timer
        if timer is not None:
            if self._timer_at <= at:
                return  # it fires first and re-arms for the rest: no timer-heap churn
            timer.cancel()
        self._timer_at = at
        self._timer = self.loop.call_at(at, self._expired)

    def _expired(self) -> None:
        self._timer = None
        if self.state is QuicState.CLOSED:
            return
        now = self.loop.time()
        try:
            if self.state is QuicState.HANDSHAKE and now >= self._handshake_deadline:
                self.abort()
                return
            due = False
            if self._next_ping and now >= self._next_ping:
                self._ping_id += 1
                self.quic.send_ping(self._ping_id)
                self._next_ping = now + self._ping_every
                due = True
            heads = self.adapter.head_deadline(self._header_timeout)
            if heads is not None and now >= heads:
                self.adapter.expire_heads(self._header_timeout)
                due = True
            timer_at = self.quic.get_timer()
            if timer_at is not None and now >= timer_at:
                self.quic.handle_timer(now=now)
                self._process_events()
                due = True
            if due:
                self.transmit()
            else:
                self._rearm(now)  # an earlier deadline that no longer holds
        except Exception:
            log.exception("QUIC timer failed for %s", self.client_ip)
            self.abort()

    # --- StreamPort -----------------------------------------------------------------------------

    def send(self, event: Event) -> None:
        self.send_all([event])

    def send_all(self, events: list[Event]) -> None:
        if self.state is QuicState.CLOSED:
            return
        dispatch = self.streams.dispatch
        for follow in self.adapter.send_all(events):
            dispatch(follow)
        self._schedule()

    def write_prerendered(self, stream_id: int, data: bytes, *, framed: bool = False) -> None:
        adapter = self.adapter
        out = adapter.frame_prerendered(stream_id, data, framed=framed)
        if out is None:
            adapter.send(Body(stream_id, data))  # dropped unless the stream can take a body
        else:
            adapter.write_framed(stream_id, out)
        self._schedule()

    def hot_path(self, stream_id: int, *, tunnel: bool) -> HotPath:
        """DATA frames for bodies and tunnels alike: the hub frames each event once for every
        HTTP/3 subscriber, and each write only queues it on the QUIC stream."""
        return HotPath(
            DATA_FRAMED,
            partial(self.write_prerendered, stream_id, framed=True),
            partial(self.adapter.pending, stream_id),
        )

    def buffered(self, stream_id: int) -> int:
        return self.adapter.pending(stream_id)

    def congested(self, stream_id: int) -> bool:
        return self.endpoint.write_paused or self.adapter.pending(stream_id) > settings.BODY_CHUNK

    def acknowledge(self, stream_id: int, size: int) -> None:
        self.adapter.acknowledge(stream_id, size)
        self._schedule()

    def pause_reading(self) -> None:
        """Nothing to pause: every stream has its own window (`acknowledge`)."""

    def resume_reading(self) -> None:
        """See `pause_reading`."""

    def can_push(self) -> bool:
        return self.adapter.can_push()

    def is_tunnel(self, stream_id: int) -> bool:
        return self.adapter.is_tunnel(stream_id)

    def long_lived(self) -> None:
        """Nothing to drop: the keep-alive PING is what a long stream needs here."""

    def exchange_done(self, exchange: Exchange) -> None:
        self.streams.exchange_done(exchange)
        self.transmit()

    def flush(self) -> None:
        self.transmit()

    # --- lifetime -------------------------------------------------------------------------------

    def _peer_closing(self) -> None:
        """The adapter saw the connection end (the peer's close, or a protocol error)."""

    def shutdown(self) -> None:
        """Graceful stop: GOAWAY now (RFC 9114 §5.2; QUIC clients retry refused requests on a
        new connection), in-flight requests finish and are acknowledged, then it closes."""
        if self.state is QuicState.CLOSED:
            return
        self._draining = True
        self.adapter.go_away()
        self.transmit()  # closes at once when nothing is in flight

    def close(self) -> None:
        """CONNECTION_CLOSE (H3_NO_ERROR, after a GOAWAY) and leave at once."""
        if self.state is QuicState.CLOSED:
            return
        self._draining = False
        self.adapter.shutdown()
        self.transmit()
        self._gone()

    def abort(self) -> None:
        if self.state is QuicState.CLOSED:
            return
        try:
            self.quic.close(error_code=0x102, reason_phrase="aborted")  # H3_INTERNAL_ERROR
            self.transmit()
        finally:
            self._gone()

    def _gone(self) -> None:
        if self.state is QuicState.CLOSED:
            return
        if self.state is QuicState.HANDSHAKE:
            self.endpoint.handshake_done()
        self.state = QuicState.CLOSED
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.streams.abort_all()
        self.endpoint.forget(self)
        self.ctx.release(self)
        # Break the cycles through this connection (the dispatcher's back references, and
        # aioquic's own), so it is freed by reference counting, with its QPACK decoder's
        # blocked header blocks and its stream buffers: not at a full collection, which the
        # raised GC thresholds make rare. Exchanges still finishing keep us alive as their
        # port, without a cycle; every call on a closed connection does nothing.
        self.streams.release()
        self.adapter.release()
        self.quic.release()

    def discard(self) -> None:
        """Leave without a word: the peer's first datagram did not decrypt, so there is no
        one to tell (and answering garbage would make this port an amplifier)."""
        self._gone()


def _nothing() -> None:
    """No per-connection header or keep-alive timer to move: the adapter times each request
    head by itself (`head_deadline`), and QUIC's own idle timeout closes an idle connection."""
