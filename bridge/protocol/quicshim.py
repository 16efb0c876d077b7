"""The HTTP/3 engine's seam: everything bridge needs from aioquic beyond its documented API,
in one place.

Written against aioquic 1.7.2. `pyproject.toml` bounds it from above and
tests/unit/test_library_versions.py fails when the installed version is outside the range,
so a new release is checked against this file before it runs: the adapter (`http3.py`), the
QUIC connection (`quic.py`) and the driver (`bridge.server.quicconn`) use aioquic's public
API and these names only, and no other module touches aioquic's private names
(tests/unit/test_layers.py).

What is reached into, and why aioquic's public API does not do:

`AppWindowQuic` (a `QuicConnection`):
- overrides `_write_stream_limits`, and calls `_on_max_stream_data_delivery` exactly as
  aioquic's own does: aioquic doubles a stream's receive window whenever half of it has
  arrived, read or not, and offers no setting to tie it to what the application consumed.
- `_streams` (`raise_receive_limit`) and a sender's `_buffer_stop` (`send_queued`,
  `requests_delivered`): aioquic queues without limit and says neither how much of a stream
  is still unsent nor whether every response byte has been acknowledged (its
  CONNECTION_CLOSE discards the rest).
- `_close_event` (`closing`): set when aioquic closes the connection itself for a protocol
  error, which it reports to the application only later, as an event.
- `_spaces` (`initial_received`): whether any client packet decrypted, so a first datagram
  that does not is dropped with its connection at once.
- `_handle_padding_frame`: finds the end of a PADDING run in C, where aioquic loops over
  every zero byte of each 1,200-byte client Initial in Python.
- `_handle_ping_frame`: the per-frame hook for PING, counted (`framecap.FrameCap`); a flood
  closes with H3_EXCESSIVE_LOAD (RFC 9114 §10.5).
- `EPOCHS` (a module function, cached) and `settle` (`_crypto_buffers`, the TLS context's key
  schedules and key-exchange keys, `_cryptos_initial`): time and memory an idle subscriber's
  connection need not spend. aioquic builds a fresh set of epoch sets for every connection's
  frame table (about 7 KB, and a tenth of a handshake's Python), and keeps three 16 KiB TLS
  output buffers, the handshake's key schedules and the initial keys of every QUIC version
  for the connection's life, though a server's TLS 1.3 context only answers an alert once
  the handshake is done.
- `release` (the frame table `__frame_handlers`, `_cryptos`, `_cryptos_initial`, `_loss`,
  `tls`, `_events`): aioquic's connection is a knot of reference cycles (bound methods in
  its frame table, TLS context, crypto pairs and loss recovery); a closed one waits for a
  full collection unless they are cut.

`ServerH3` (an `H3Connection`):
- `_stream` (`frame_buffered`, `awaiting_head`, `end_sending`, `streams_blocked`): the
  per-stream parser state: how many bytes of an incomplete frame it holds (not yet
  consumed, so not yet credited), whether a request's HEADERS are still to come (for the
  head timeout), and its "sending ended" mark, which aioquic sets only for ends it sent
  itself, so a stream reset by the QUIC layer would never be freed.
- `_is_done` (`failed`): H3Connection closed the QUIC connection for an HTTP/3 error.
- `_max_push_id`, `_next_push_id` (`push_allowed`): `send_push_promise` raises when the
  client granted no push id, and there is no way to ask before.
- `_local_control_stream_id` (`send_goaway`): aioquic has no GOAWAY of its own (RFC 9114
  §5.2); the frame goes on the control stream aioquic opened.
- `_encode_headers` (`send_push_promise`): a PUSH_PROMISE's field section is encoded without
  the dynamic table (`qpackliteral`), so it can never block; aioquic offers no per-frame
  encoding choice.
- `_check_control_frame_type`, `_check_request_or_push_frame_type`: the only per-frame hooks
  aioquic has; they count frames that carry nothing, which aioquic processes without limit,
  and close a flood with H3_EXCESSIVE_LOAD (RFC 9114 §10.5).
- `_init_connection`, `_max_table_capacity`, `_blocked_streams`, `_decoder`,
  `_get_local_settings`, `_decode_headers`, `_decoder_bytes_sent`,
  `_local_decoder_stream_id`: aioquic decodes every header block in full (and validates each
  decoded byte in Python) with no size limit, and neither advertises
  SETTINGS_MAX_FIELD_SECTION_SIZE nor lets the table capacity be chosen. The decoder becomes
  a `qpackguard.GuardedDecoder`; a block it refuses unexpanded is cancelled in the decoder
  (RFC 9204 §4.4.2) and stands as a minimal request head that `refused_head` names, so the
  adapter answers that stream 431 and nothing else.
"""

from __future__ import annotations

import functools

from aioquic import tls
from aioquic.buffer import Buffer, encode_uint_var
from aioquic.h3.connection import (
    ErrorCode,
    FrameType,
    H3Connection,
    H3Stream,
    HeadersState,
    ProtocolError,
    Setting,
    encode_frame,
)
from aioquic.h3.events import Headers
from aioquic.quic import connection as quic_connection
from aioquic.quic.connection import (
    MAX_STREAM_DATA_FRAME_CAPACITY,
    QuicConnection,
    QuicReceiveContext,
)
from aioquic.quic.packet import QuicFrameType
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.stream import QuicStream

from .. import settings
from .framecap import FrameCap
from .qpackguard import GuardedDecoder, HeaderSectionTooLarge
from .qpackliteral import encode_literal

# aioquic builds its frame table per connection, calling `EPOCHS` 33 times to make the same
# few sets again (about a tenth of a handshake's Python): one cached copy of each serves all.
quic_connection.EPOCHS = functools.cache(quic_connection.EPOCHS)
# Room for a TLS message after the handshake: a server writes none, this is a margin.
_POST_HANDSHAKE_TLS = 512

# What a refused header block stands as: just enough for aioquic to accept it as a request.
_REFUSED_HEAD = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"-"),
    (b":path", b"/"),
]


class AppWindowQuic(QuicConnection):
    """A `QuicConnection` whose stream receive windows reach where `raise_receive_limit`
    says (RFC 9000 §4.1), instead of aioquic's own doubling rule."""

    _pings: FrameCap | None = None

    def _handle_padding_frame(
        self, context: QuicReceiveContext, frame_type: int, buf: Buffer
    ) -> None:
        # Every client Initial is padded to 1,200 bytes, and aioquic steps over the zeros one
        # by one in Python; the first non-zero byte is found in C here instead.
        if self._quic_logger is not None:
            super()._handle_padding_frame(context, frame_type, buf)
            return
        rest = buf.data_slice(buf.tell(), buf.capacity)
        buf.seek(buf.capacity - len(rest.lstrip(b"\x00")))

    def settle(self) -> None:
        """The handshake is complete: give back what only the handshake used. A server's
        TLS context writes nothing after it (any further handshake message is an
        unexpected-message alert), the Initial and Handshake epochs are over, and the
        handshake data still to be acknowledged lives in the crypto streams, not here."""
        self._crypto_buffers = {
            tls.Epoch.INITIAL: Buffer(capacity=0),
            tls.Epoch.HANDSHAKE: Buffer(capacity=0),
            tls.Epoch.ONE_RTT: Buffer(capacity=_POST_HANDSHAKE_TLS),
        }
        for pair in self._cryptos_initial.values():
            if pair is not self._cryptos.get(tls.Epoch.INITIAL):
                pair.teardown()  # the other QUIC versions' Initial keys, never used
        context = self.tls
        context.key_schedule = None
        context._key_schedule_psk = None
        context._key_schedule_proxy = None
        context._ec_private_keys = []
        context._x25519_private_key = None
        context._x448_private_key = None

    def _handle_ping_frame(self, context: QuicReceiveContext, frame_type: int, buf: Buffer) -> None:
        # Each PING makes a packet ack-eliciting: past `H3_MAX_PINGS` per window it is a
        # flood, closed with H3_EXCESSIVE_LOAD (RFC 9114 §10.5) as the other floods are.
        pings = self._pings
        if pings is None:
            pings = self._pings = FrameCap(settings.H3_MAX_PINGS, settings.H3_FRAME_WINDOW)
        if pings.over():
            self.close(error_code=ErrorCode.H3_EXCESSIVE_LOAD, reason_phrase="PING flood")
            return
        super()._handle_ping_frame(context, frame_type, buf)

    def raise_receive_limit(self, stream_id: int, limit: int) -> None:
        """Let the peer send on `stream_id` up to offset `limit` (never lowered): the next
        packet carries the MAX_STREAM_DATA."""
        stream = self._streams.get(stream_id)
        if stream is not None and limit > stream.max_stream_data_local:
            stream.max_stream_data_local = limit

    def _write_stream_limits(
        self, builder: QuicPacketBuilder, space: object, stream: QuicStream
    ) -> None:
        # Replaces aioquic's rule: a window moves only by `raise_receive_limit`. Called for
        # every stream in every packet, so the common case (nothing new) returns first; the
        # frame is written exactly as aioquic writes it.
        if stream.max_stream_data_local_sent == stream.max_stream_data_local:
            return
        sid = stream.stream_id
        if not stream.max_stream_data_local or sid is None:
            return  # our own unidirectional streams: nothing to receive
        buf = builder.start_frame(
            QuicFrameType.MAX_STREAM_DATA,
            capacity=MAX_STREAM_DATA_FRAME_CAPACITY,
            handler=self._on_max_stream_data_delivery,
            handler_args=(stream,),
        )
        buf.push_uint_var(sid)
        buf.push_uint_var(stream.max_stream_data_local)
        stream.max_stream_data_local_sent = stream.max_stream_data_local

    def send_queued(self, stream_id: int) -> int:
        """Bytes queued on the stream that have not left in a packet yet."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return 0
        sender = stream.sender
        return sender._buffer_stop - sender.highest_offset

    def requests_delivered(self) -> bool:
        """Has the peer acknowledged (or been told to drop, by a reset) everything we sent on
        the bidirectional streams it opened: the requests and their responses?"""
        return all(
            stream.sender.is_finished or stream.sender.reset_pending
            for sid, stream in self._streams.items()
            if sid % 4 == 0  # client-initiated bidirectional
        )

    @property
    def initial_received(self) -> bool:
        """A client Initial packet has been decrypted (the first datagram was not garbage
        under a valid header)."""
        space = self._spaces.get(tls.Epoch.INITIAL)
        return space is not None and space.largest_received_packet >= 0

    def release(self) -> None:
        """The connection is gone for good: break aioquic's own reference cycles (its frame
        handler table, the TLS context's, the crypto pairs' and loss recovery's callbacks,
        all bound methods of this object), so it is freed by reference counting, with its
        streams and buffers, rather than at a full collection, which bridge's raised GC
        thresholds make rare. Nothing may be called on it afterwards."""
        self._QuicConnection__frame_handlers: dict[int, object] = {}  # its __frame_handlers
        self._cryptos = {}
        self._cryptos_initial = {}
        self._loss._send_probe = _nothing
        context = self.tls
        context.alpn_cb = None
        context.get_session_ticket_cb = None
        context.new_session_ticket_cb = None
        context.update_traffic_key_cb = _ignore_key
        self._streams.clear()
        self._events.clear()

    @property
    def closing(self) -> bool:
        """aioquic has closed the connection (a protocol error; its close is queued)."""
        return self._close_event is not None


class ExcessiveLoad(ProtocolError):
    """A flood of frames that carry nothing: aioquic closes the connection with this code."""

    error_code = ErrorCode.H3_EXCESSIVE_LOAD


class ServerH3(H3Connection):
    """aioquic's `H3Connection`, with the parser state bridge needs as methods, and header
    blocks that cost in proportion to their encoded size (`qpackguard`)."""

    max_field_section = settings.MAX_HEADER_BYTES
    table_capacity = settings.H3_QPACK_TABLE_CAPACITY
    blocked_streams = settings.H3_QPACK_BLOCKED_STREAMS

    def _init_connection(self) -> None:
        # H3Connection.__init__ made a decoder with its own defaults; nothing has used it yet.
        self._max_table_capacity = self.table_capacity
        self._blocked_streams = self.blocked_streams
        self._decoder = GuardedDecoder(  # type: ignore[assignment]
            self.table_capacity, self.blocked_streams, limit=self.max_field_section
        )
        self._refused: set[int] = set()
        self._frames = FrameCap(settings.H3_MAX_IGNORED_FRAMES, settings.H3_FRAME_WINDOW)
        super()._init_connection()

    def _check_control_frame_type(self, frame_type: int) -> None:
        super()._check_control_frame_type(frame_type)
        # Every frame on the control stream after SETTINGS: a client sends a handful
        # (MAX_PUSH_ID, GOAWAY), reserved and unknown types are ignored but cost work.
        if frame_type != FrameType.SETTINGS:
            self._ignorable()

    def _check_request_or_push_frame_type(self, frame_type: int, stream: H3Stream) -> None:
        super()._check_request_or_push_frame_type(frame_type, stream)
        # Unknown (grease) frames and empty DATA frames on request streams do nothing
        # either; a request stream's are counted with the control stream's.
        if frame_type == FrameType.DATA:
            ignorable = not stream.frame_size
        else:
            ignorable = frame_type not in (FrameType.HEADERS, FrameType.PUSH_PROMISE)
        if ignorable:
            self._ignorable()

    def _ignorable(self) -> None:
        if self._frames.over():
            raise ExcessiveLoad("too many frames that carry nothing")

    def _get_local_settings(self) -> dict[int, int]:
        local = super()._get_local_settings()
        local[Setting.MAX_FIELD_SECTION_SIZE] = self.max_field_section  # RFC 9114 §4.2.2
        return local

    def _decode_headers(
        self, stream_id: int, frame_data: bytes | None
    ) -> list[tuple[bytes, bytes]]:
        try:
            return super()._decode_headers(stream_id, frame_data)
        except HeaderSectionTooLarge:
            pass
        decoder = self._decoder.cancel_stream(stream_id)
        if decoder and self._local_decoder_stream_id is not None:
            self._decoder_bytes_sent += len(decoder)
            self._quic.send_stream_data(self._local_decoder_stream_id, decoder)
        if self._stream[stream_id].headers_recv_state is HeadersState.INITIAL:
            self._refused.add(stream_id)
            return list(_REFUSED_HEAD)
        return []  # trailers: dropped (no handler reads a client's)

    def release(self) -> None:
        """The connection is gone: drop the per-stream parser state and the QPACK decoder,
        with the header blocks it holds for blocked streams (C memory, ~ up to
        `blocked_streams` x MAX_HEADER_BYTES)."""
        self._stream.clear()
        self._refused.clear()
        self._decoder = GuardedDecoder(0, 0, limit=0)  # type: ignore[assignment]

    def streams_blocked(self) -> int:
        """Streams whose header block waits for QPACK inserts."""
        return sum(1 for stream in self._stream.values() if stream.blocked)

    def refused_head(self, stream_id: int) -> bool:
        """The stream's header block was over the limit and was never decoded."""
        if stream_id in self._refused:
            self._refused.discard(stream_id)
            return True
        return False

    _promising = False  # `send_push_promise` is encoding its field section

    def send_push_promise(self, stream_id: int, headers: Headers) -> int:
        """aioquic's, with a field section that never refers to the dynamic table: a client
        that resumes a blocked PUSH_PROMISE as if it were HEADERS (qh3) would hang."""
        self._promising = True
        try:
            return super().send_push_promise(stream_id, headers)
        finally:
            self._promising = False

    def _encode_headers(self, stream_id: int, headers: Headers) -> bytes:
        if self._promising:
            return encode_literal(headers)
        return super()._encode_headers(stream_id, headers)

    def frame_buffered(self, stream_id: int) -> int:
        """Bytes of an incomplete frame the parser holds for the stream."""
        stream = self._stream.get(stream_id)
        return len(stream.buffer) if stream is not None else 0

    def awaiting_head(self, stream_id: int) -> bool:
        """The parser knows the stream and has not completed its HEADERS yet."""
        stream = self._stream.get(stream_id)
        return stream is not None and stream.headers_recv_state is HeadersState.INITIAL

    def end_sending(self, stream_id: int) -> None:
        """Our side of the stream is over (reset): aioquic frees the stream once the peer's
        side ends too."""
        stream = self._stream.get(stream_id)
        if stream is not None:
            stream.sending_ended = True

    @property
    def failed(self) -> bool:
        """The connection was closed for an HTTP/3 protocol error."""
        return self._is_done

    def push_allowed(self) -> bool:
        """The client has granted a push id we have not used (RFC 9114 §4.6, MAX_PUSH_ID)."""
        max_push_id = self._max_push_id
        return max_push_id is not None and self._next_push_id <= max_push_id

    def send_goaway(self, first_refused: int) -> None:
        """A GOAWAY frame naming the first request stream id we will not process."""
        control = self._local_control_stream_id
        if control is not None:
            frame = encode_frame(FrameType.GOAWAY, encode_uint_var(first_refused))
            self._quic.send_stream_data(control, frame)


def _nothing() -> None:
    """A released connection's callbacks."""


def _ignore_key(*args: object) -> None:
    """A released connection's TLS traffic-key callback."""
