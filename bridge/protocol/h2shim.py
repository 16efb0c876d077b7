"""The h2 engine (`H2Engine`, see h2engine.py): HTTP/2 on the pure-Python h2, the fallback
engine, and everything bridge needs from h2 (and hpack, hyperframe) beyond their documented
API, in one place.

Written against h2 4.4.1, hpack 4.2.0 and hyperframe 6.1.0. `pyproject.toml` bounds them from
above and tests/unit/test_library_versions.py fails when an installed version is outside the
range, so a new release is checked against this file before it runs: the adapter
(`http2.py`) uses h2's public API and these names only, and no other module touches h2's
private names (tests/unit/test_layers.py).

What is reached into, and why h2's public API does not do:

- `_data_to_send`, appended to (`queue_goaway`): h2 sends a GOAWAY only from its own state
  machine, and not at all for an invalid preface; bridge also answers floods and oversized
  frames with codes h2 would not choose. Read (`data_frame_now`): h2 has no "anything
  queued?" short of `data_to_send()`, which empties the buffer.
- `incoming_buffer._data` (`partial_frame_length`): h2 checks a frame's length only once the
  whole frame has arrived, so an oversized one would sit in its buffer until then.
- `_frame_dispatch_table` (`release`): a table of bound methods, so every H2Connection is a
  reference cycle; dropping it frees a closed connection without the cycle collector.
- `streams[...]` and the `outbound_flow_control_window` attributes (`data_frame_now`):
  public names but h2's own bookkeeping; the fan-out frames DATA itself and charges the
  windows exactly as `send_data` would.
- `local_settings` replaced by `UnenforcedSettings`, `encoder` by bridge's `LeanEncoder`,
  `decoder.max_header_list_size` set: attributes h2 reads but does not document as settable.
- Errors h2 raises as a plain `ProtocolError` whose kind only its message says
  (`is_flood`, `is_bad_preface`), and HPACK failures it reports as PROTOCOL_ERROR
  (`is_compression_error`).
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hyperframe.frame import GoAwayFrame

from .h2engine import (
    Broken,
    DataIn,
    EndIn,
    EngineEvent,
    ErrorCodes,
    PeerGone,
    RequestIn,
    ResetIn,
    SendRefused,
    StreamGone,
    WindowIn,
)
from .hpackenc import LeanEncoder


class UnenforcedSettings(h2.settings.Settings):
    """Local settings whose stream limit h2 does not enforce itself.

    h2 answers a stream beyond MAX_CONCURRENT_STREAMS by killing the whole connection;
    RFC 9113 §5.1.2 wants that one stream refused (REFUSED_STREAM), which the adapter does.
    The advertised value is still the real limit: only the property h2 checks is lifted.
    """

    @property  # type: ignore[misc]  # h2's is read-write; we only ever read it
    def max_concurrent_streams(self) -> int:
        return 2**31 - 1


class ServerConnection(h2.connection.H2Connection):
    """h2's server-side connection as bridge configures it, with the internals it needs as
    methods (see the module docstring for why each exists)."""

    def __init__(
        self, *, max_concurrent_streams: int, max_header_bytes: int, initial_window: int
    ) -> None:
        # What a client sends is validated by h2. What we send is built by `response_fields`
        # from heads llhttp already checked (an upstream's) or from our own constants, and
        # h2's outbound normalising and validation cost more than the rest of a response.
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=True,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        super().__init__(config=config)
        self.encoder = LeanEncoder()  # type: ignore[assignment]  # h2 needs only encode()
        self.local_settings = UnenforcedSettings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: max_header_bytes,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: initial_window,
                h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,
            },
        )
        self.decoder.max_header_list_size = max_header_bytes

    def queue_goaway(
        self, last_stream_id: int, code: h2.errors.ErrorCodes, debug: bytes = b""
    ) -> None:
        """Queue a GOAWAY frame after whatever h2 has queued, outside h2's state machine."""
        frame = GoAwayFrame(stream_id=0)
        frame.last_stream_id = last_stream_id
        frame.error_code = code
        frame.additional_data = debug
        self._data_to_send += frame.serialize()

    def partial_frame_length(self) -> int:
        """The length announced by the frame h2 is still waiting to complete (0: none)."""
        pending = self.incoming_buffer._data
        return int.from_bytes(pending[:3], "big") if len(pending) >= 9 else 0

    def data_frame_now(self, stream_id: int, prefix: bytes, data: bytes) -> bytes | None:
        """`data` as one DATA frame (`prefix`: its type, flags and stream id, RFC 9113 §4.1),
        after anything h2 has queued, with the connection's and the stream's send windows
        charged as h2's `send_data` charges them (§6.9); None when the frame size or either
        window does not take it now."""
        size = len(data)
        if size > self.max_outbound_frame_size or size > self.outbound_flow_control_window:
            return None
        stream = self.streams.get(stream_id)
        if stream is None or size > stream.outbound_flow_control_window:
            return None
        self.outbound_flow_control_window -= size
        stream.outbound_flow_control_window -= size
        frame = size.to_bytes(3, "big") + prefix + data
        if self._data_to_send:
            return self.data_to_send() + frame
        return frame

    def release(self) -> None:
        """Closed for good: drop unsent bytes and the cycle h2's frame-dispatch table makes
        (nothing parses frames any more)."""
        self.clear_outbound_data_buffer()
        self._frame_dispatch_table = {}


def is_flood(exc: h2.exceptions.ProtocolError) -> bool:
    """A header block of too many CONTINUATION frames (RFC 9113 §10.5; h2 raises a plain
    ProtocolError, "Too many continuation frames received.") or another flood h2 caught."""
    return "continuation" in str(exc).lower() or isinstance(exc, h2.exceptions.DenialOfServiceError)


def is_bad_preface(exc: h2.exceptions.ProtocolError) -> bool:
    """The client's connection preface was wrong (h2: "Invalid HTTP/2 preamble.")."""
    return "preamble" in str(exc).lower()


def is_compression_error(exc: h2.exceptions.ProtocolError) -> bool:
    """A header block that does not decode (a table-size update above our
    SETTINGS_HEADER_TABLE_SIZE, a bad index or Huffman code: RFC 7541 §4.2, §6.3), which h2
    reports as PROTOCOL_ERROR with hpack's error as the cause. An oversized header list
    decodes fine and is not one."""
    cause = exc.__cause__
    return isinstance(cause, HPACKError) and not isinstance(cause, OversizedHeaderListError)


class H2Engine:
    """`h2engine.Engine` on h2."""

    __slots__ = ("_conn",)

    def __init__(
        self, *, max_concurrent_streams: int, max_header_bytes: int, initial_window: int
    ) -> None:
        conn = ServerConnection(
            max_concurrent_streams=max_concurrent_streams,
            max_header_bytes=max_header_bytes,
            initial_window=initial_window,
        )
        conn.initiate_connection()
        conn.increment_flow_control_window(initial_window)
        self._conn = conn

    @property
    def max_outbound_frame_size(self) -> int:
        return self._conn.max_outbound_frame_size

    @property
    def highest_inbound_stream_id(self) -> int:
        return self._conn.highest_inbound_stream_id

    @property
    def peer_push_enabled(self) -> bool:
        return bool(self._conn.remote_settings.enable_push)

    @property
    def peer_max_concurrent_streams(self) -> int:
        return self._conn.remote_settings.max_concurrent_streams

    def receive(self, data: bytes) -> list[EngineEvent]:
        try:
            h2_events = self._conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            return [_broken(exc)]
        out: list[EngineEvent] = []
        for ev in h2_events:
            if isinstance(ev, h2.events.DataReceived):
                out.append(
                    DataIn(
                        ev.stream_id,
                        ev.data,
                        ev.flow_controlled_length,
                        ev.stream_ended is not None,
                    )
                )
            elif isinstance(ev, h2.events.RequestReceived):
                out.append(RequestIn(ev.stream_id, ev.headers or (), ev.stream_ended is not None))
            elif isinstance(ev, h2.events.StreamEnded):
                out.append(EndIn(ev.stream_id))
            elif isinstance(ev, h2.events.StreamReset):
                out.append(ResetIn(ev.stream_id))
            elif isinstance(ev, h2.events.WindowUpdated):
                out.append(WindowIn(ev.stream_id))
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                out.append(WindowIn(0))
            elif isinstance(ev, h2.events.ConnectionTerminated):
                out.append(PeerGone(ev.error_code or 0))
                break
            # Trailers, priority, pings and settings ACKs need nothing from handlers.
        return out

    def partial_frame_length(self) -> int:
        return self._conn.partial_frame_length()

    def send_headers(
        self, stream_id: int, fields: list[tuple[bytes, bytes]], *, end_stream: bool = False
    ) -> None:
        with _send_errors():
            self._conn.send_headers(stream_id, fields, end_stream=end_stream)

    send_informational = send_headers

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        with _send_errors():
            self._conn.send_data(stream_id, data, end_stream=end_stream)

    def end_stream(self, stream_id: int) -> None:
        with _send_errors():
            self._conn.end_stream(stream_id)

    def reset_stream(self, stream_id: int, code: ErrorCodes) -> None:
        try:
            self._conn.reset_stream(stream_id, code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError):
            pass

    def push(self, stream_id: int, request: list[tuple[bytes, bytes]]) -> int:
        conn = self._conn
        with _send_errors():
            promised = conn.get_next_available_stream_id()
            conn.push_stream(stream_id, promised, request)
        return promised

    def acknowledge(self, stream_id: int, size: int) -> None:
        try:
            self._conn.acknowledge_received_data(size, stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass

    def send_window(self, stream_id: int) -> int:
        try:
            return self._conn.local_flow_control_window(stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError):
            return 0

    def frame_now(self, stream_id: int, prefix: bytes, data: bytes) -> bytes | None:
        return self._conn.data_frame_now(stream_id, prefix, data)

    def go_away(self, code: ErrorCodes, debug: bytes = b"") -> None:
        conn = self._conn
        conn.clear_outbound_data_buffer()
        conn.queue_goaway(conn.highest_inbound_stream_id, h2.errors.ErrorCodes(code), debug)

    def preface_refused(self) -> None:
        # h2 sends no GOAWAY for it; one goes after the server preface h2 has queued.
        self._conn.queue_goaway(
            0, h2.errors.ErrorCodes.PROTOCOL_ERROR, b"invalid connection preface"
        )

    def close(self) -> None:
        # h2 moves its connection to CLOSED here: later sends raise (the adapter drops them).
        self._conn.close_connection(h2.errors.ErrorCodes.NO_ERROR)

    def data_to_send(self) -> bytes:
        return self._conn.data_to_send()

    def release(self) -> None:
        self._conn.release()


class _send_errors:
    """h2's errors on a send, as the engine's: a stream gone, or a send h2 refuses."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if exc is None:
            return
        if isinstance(exc, (h2.exceptions.StreamClosedError, h2.exceptions.NoSuchStreamError)):
            raise StreamGone(str(exc)) from exc
        if isinstance(exc, h2.exceptions.ProtocolError):
            raise SendRefused(str(exc)) from exc


def _broken(exc: h2.exceptions.ProtocolError) -> Broken:
    """A connection error h2 raised, with the code bridge answers it with."""
    text = str(exc)
    if is_flood(exc):  # CONTINUATION floods: RFC 9113 §10.5 calls them abuse
        return Broken(ErrorCodes.ENHANCE_YOUR_CALM, text, answered=False)
    if is_bad_preface(exc):  # RFC 9113 §3.4: PROTOCOL_ERROR; h2 sends no GOAWAY for it
        return Broken(ErrorCodes.PROTOCOL_ERROR, text, answered=False, at_preface=True)
    if is_compression_error(exc):
        # h2 answers every HPACK failure with PROTOCOL_ERROR, but a header block that does
        # not decode is a COMPRESSION_ERROR (RFC 9113 §4.3).
        return Broken(ErrorCodes.COMPRESSION_ERROR, text, answered=False)
    return Broken(ErrorCodes.PROTOCOL_ERROR, text, answered=True)  # h2 queued its GOAWAY
