"""The nghttp2 engine (`NghttpEngine`, see h2engine.py): HTTP/2 on libnghttp2 through ngh2,
bridge's default engine, and everything bridge needs of ngh2 in one place.

Written against ngh2 0.3.0, pinned exactly in `pyproject.toml`: with another version (or none)
installed, `unusable` says why and bridge runs the h2 engine instead (`http2.engine_factory`).

Only ngh2's public API is used. Where libnghttp2 behaves otherwise than bridge wants, this file
adapts it:

- The stream limit. libnghttp2 treats a stream beyond the MAX_CONCURRENT_STREAMS it has had
  acknowledged as a connection error; RFC 9113 §5.1.2 wants that one stream refused
  (REFUSED_STREAM), which the adapter does. So libnghttp2's own SETTINGS leave the limit out
  (its default: none) and the limit is added to that frame on its way out (`_with_limit`):
  the client sees the real limit, acknowledges the one SETTINGS frame libnghttp2 sent, and
  the adapter enforces it.
- A CONTINUATION flood and a bad preface make libnghttp2 raise and leave the connection
  unusable, with no GOAWAY: the engine writes its own (`h2engine.goaway_frame`).
- Other connection errors do not raise: libnghttp2 queues its GOAWAY and reports a
  `ConnectionClosed` (`Broken(answered=True)`), once the GOAWAY has been serialized.
- Malformed request heads are a stream error (RST_STREAM PROTOCOL_ERROR, RFC 9113 §8.1.1);
  the stream never reaches the adapter. (h2 makes them a connection error.)
- What libnghttp2 (1.65 on) no longer checks is checked on the frame headers before it reads
  them (`_walk`), as h2 checks it: a frame on a stream the client has closed (END_STREAM or
  RST_STREAM; RFC 9113 §5.1) is a connection error STREAM_CLOSED, where libnghttp2 ignores it
  since it keeps no closed streams; a HEADERS on a lower stream id never used (§5.1.1) is
  PROTOCOL_ERROR, where libnghttp2 ignores it; PRIORITY on stream 0 (§6.3) or depending on its
  own stream (§5.3.1) is PROTOCOL_ERROR, where libnghttp2 ignores every PRIORITY. What the
  client sends on a stream bridge reset while the client was still sending is ignored (§5.1),
  as libnghttp2 does, for the newest `settings.H2_RESET_STREAMS_KEPT` such streams.
- A stream's WINDOW_UPDATE past 2^31-1 resets that stream (RST_STREAM FLOW_CONTROL_ERROR, RFC
  9113 §6.9.1), as h2 does; libnghttp2 would end the connection, so `_walk` takes the frame
  out before libnghttp2 sees it.
- RST_STREAM and GOAWAY leave ahead of queued DATA; a reset NO_ERROR after a whole response
  and the GOAWAY NO_ERROR at close are therefore queued behind what was sent before them.
- Padding is handed back to the client's window by libnghttp2 itself, so `DataIn` carries
  the data's length only.
- The pre-rendered DATA fast path (`frame_now`) is `send_data` plus `data_to_send`: both
  windows are charged by libnghttp2's own accounting, nothing bypasses it. It costs ~1 µs a
  frame where h2's hand-framed one costs 0.4 (benchmarks/wire_cost.py): libnghttp2's
  `data_to_send` alone is 0.25 µs.
"""

from __future__ import annotations

import struct
from importlib.metadata import PackageNotFoundError, version

from .. import settings
from .h2engine import (
    Broken,
    ClosedIn,
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
    goaway_frame,
)

try:
    import ngh2
except ImportError:  # bridge runs the h2 engine instead (`unusable` says why)
    ngh2 = None  # type: ignore[assignment]

PINNED = "0.3.0"  # as pyproject.toml pins it

_PREFACE_LENGTH = 24  # the client's connection preface, RFC 9113 §3.4
_SETTINGS = 0x4
_MAX_CONCURRENT_STREAMS = 0x3
_MAX_FRAME_SIZE = 0x5
_ENABLE_PUSH = 0x2
_DEFAULT_FRAME_SIZE = 16_384  # RFC 9113 §6.5.2
_UNLIMITED = 2**31 - 1
# Frame types and flags `_walk` reads (RFC 9113 §6): DATA and HEADERS end a stream with flag
# 0x1, as SETTINGS acknowledges with it.
_DATA = 0x0
_HEADERS = 0x1
_PRIORITY = 0x2
_RST_STREAM = 0x3
_WINDOW_UPDATE = 0x8
_END_STREAM = 0x1
_ACK = 0x1
_MAX_WINDOW = 2**31 - 1  # RFC 9113 §6.9.1
_STREAM_ID = 0x7FFF_FFFF  # a stream id or dependency, without its reserved top bit
# A frame header (RFC 9113 §4.1): the 24-bit length as a byte and 16 bits, type, flags, the
# stream id with its reserved bit; then a PRIORITY's dependency or a WINDOW_UPDATE's increment.
_FRAME_HEADER = struct.Struct(">BHBBL")
_WORD = struct.Struct(">L")


def unusable() -> str | None:
    """Why the nghttp2 engine cannot run here, or None when it can."""
    if ngh2 is None:
        return "ngh2 is not installed"
    try:
        installed = version("ngh2")
    except PackageNotFoundError:
        installed = getattr(ngh2, "__version__", "unknown")
    if installed != PINNED:
        return f"ngh2 {installed} is installed, bridge is tested with ngh2 {PINNED}"
    return None


def _with_limit(preface: bytes, max_concurrent_streams: int) -> bytes:
    """libnghttp2's first SETTINGS frame (at the start of `preface`) with the stream limit
    added as one more setting (RFC 9113 §6.5.1: a 16-bit id and a 32-bit value)."""
    length = int.from_bytes(preface[:3], "big")
    if len(preface) < 9 + length or preface[3] != _SETTINGS or preface[4] & 0x1:
        raise RuntimeError("libnghttp2's connection preface does not start with SETTINGS")
    entry = _MAX_CONCURRENT_STREAMS.to_bytes(2, "big") + max_concurrent_streams.to_bytes(4, "big")
    return (length + 6).to_bytes(3, "big") + preface[3 : 9 + length] + entry + preface[9 + length :]


class NghttpEngine:
    """`h2engine.Engine` on libnghttp2 (ngh2)."""

    __slots__ = (
        "_carry",
        "_conn",
        "_dead",
        "_frame_size",
        "_gaps",
        "_highest",
        "_ignored",
        "_opened",
        "_out",
        "_preface",
        "_received",
        "_sending",
        "_skip",
    )

    def __init__(
        self, *, max_concurrent_streams: int, max_header_bytes: int, initial_window: int
    ) -> None:
        config = ngh2.Configuration(
            # Credit goes back to the client only when a handler consumes the bytes.
            auto_window_update=False,
            max_inbound_header_list_size=max_header_bytes,
            max_continuations=settings.H2_MAX_CONTINUATIONS,
        )
        conn = ngh2.Connection(ngh2.Role.SERVER, config)
        conn.initiate_connection(
            {
                ngh2.Setting.MAX_HEADER_LIST_SIZE: max_header_bytes,
                ngh2.Setting.INITIAL_WINDOW_SIZE: initial_window,
                ngh2.Setting.ENABLE_CONNECT_PROTOCOL: 1,
            }
        )
        # The connection's receive window, beyond the 65,535 every connection starts with.
        conn.set_local_window_size(65_535 + initial_window)
        self._conn = conn
        self._out = _with_limit(conn.data_to_send(), max_concurrent_streams)
        self._preface = len(self._out)  # our SETTINGS, at the start of `_out` until written
        self._dead = False  # libnghttp2 raised: the connection is unusable
        self._highest = 0
        self._received = 0
        self._frame_size = _DEFAULT_FRAME_SIZE
        # `_walk`'s view of the client's frames: bytes of the current frame still to pass, and
        # the start of a frame held back until what `_walk` reads of it has arrived.
        self._skip = _PREFACE_LENGTH
        self._carry = b""
        # The client's streams: the highest it opened, those it may still send on, those
        # bridge reset while it was sending (their frames are ignored; oldest first), and the
        # ids it skipped (closed unused, RFC 9113 §5.1.1), as inclusive ranges.
        self._opened = 0
        self._sending: set[int] = set()
        self._ignored: dict[int, None] = {}
        self._gaps: list[tuple[int, int]] = []

    @property
    def max_outbound_frame_size(self) -> int:
        return self._frame_size

    @property
    def highest_inbound_stream_id(self) -> int:
        return self._highest

    @property
    def peer_push_enabled(self) -> bool:
        return not self._dead and self._conn.remote_settings.get(_ENABLE_PUSH, 1) != 0

    @property
    def peer_max_concurrent_streams(self) -> int:
        if self._dead:
            return 0
        return self._conn.remote_settings.get(_MAX_CONCURRENT_STREAMS, _UNLIMITED)

    def receive(self, data: bytes) -> list[EngineEvent]:
        if self._dead:
            return []
        out: list[EngineEvent] = []
        self._walk(data, out)
        return out

    def _walk(self, data: bytes, out: list[EngineEvent]) -> None:
        """`data` to libnghttp2, after bridge's own checks on the frame headers in it (see the
        module's docstring). Frames go on in one piece unless a check needs libnghttp2 to have
        read what came before (a stream's window) or ends the connection."""
        buf = self._carry + data if self._carry else data
        end = len(buf)
        start = 0  # the first byte libnghttp2 has not been given
        pos = self._skip  # the next frame header
        grown: set[int] = set()  # streams whose window a WINDOW_UPDATE in buf[start:] grows
        settings_in = False  # a SETTINGS in buf[start:] may grow every stream's window
        sending = self._sending
        while pos + 9 <= end:
            high, low, kind, flags, sid = _FRAME_HEADER.unpack_from(buf, pos)
            length = high << 16 | low
            sid &= _STREAM_ID
            problem: tuple[ErrorCodes, str] | None = None
            if kind == _DATA and sid in sending and not flags & _END_STREAM:
                pass  # the common case: more of a request body
            elif kind == _DATA or kind == _HEADERS:
                if sid & 1:  # a client's stream; on the server's own, libnghttp2 answers
                    problem = self._stream_frame(kind, flags, sid)
            elif kind == _RST_STREAM:
                self._sending.discard(sid)
            elif kind == _PRIORITY:
                if not sid:
                    problem = ErrorCodes.PROTOCOL_ERROR, "PRIORITY: stream_id == 0"
                elif length == 5:  # any other length is libnghttp2's FRAME_SIZE_ERROR
                    if pos + 13 > end:
                        break  # held back until the dependency has arrived
                    if _WORD.unpack_from(buf, pos + 9)[0] & _STREAM_ID == sid:
                        problem = ErrorCodes.PROTOCOL_ERROR, "PRIORITY: depend on itself"
            elif kind == _WINDOW_UPDATE and sid and length == 4:
                if pos + 13 > end:
                    break  # held back until the increment has arrived
                increment = _WORD.unpack_from(buf, pos + 9)[0] & _STREAM_ID
                window = None if settings_in or sid in grown else self._window(sid)
                if window is None or window + increment > _MAX_WINDOW:
                    # It may overflow: libnghttp2 reads what came before it, then the stream's
                    # window decides.
                    if not self._feed(buf[start:pos], out):
                        return
                    start = pos
                    grown.clear()
                    settings_in = False
                    window = self._window(sid)
                    if window is not None and window + increment > _MAX_WINDOW:
                        start = pos + 13  # libnghttp2 never sees it
                        self.reset_stream(sid, ErrorCodes.FLOW_CONTROL_ERROR)
                        out.append(ClosedIn(sid))
                grown.add(sid)
            elif kind == _SETTINGS and not flags & _ACK:
                settings_in = True
            if problem is not None:
                if self._feed(buf[start:pos], out):
                    self._carry = b""
                    out.append(Broken(problem[0], problem[1], answered=False))
                return
            pos += 9 + length
        if pos >= end:
            self._skip, self._carry = pos - end, b""
            self._feed(buf[start:], out)
        else:
            self._skip, self._carry = 0, buf[pos:]
            self._feed(buf[start:pos], out)

    def _stream_frame(self, kind: int, flags: int, sid: int) -> tuple[ErrorCodes, str] | None:
        """DATA or HEADERS on client stream `sid`: what is wrong with it, if anything."""
        if sid > self._opened:
            if kind == _HEADERS:  # a new stream (DATA on an idle one is libnghttp2's error)
                lowest = self._opened + 2 if self._opened else 1
                if sid > lowest:
                    self._gaps.append((lowest, sid - 2))
                    if len(self._gaps) > settings.H2_RESET_STREAMS_KEPT:
                        del self._gaps[0]
                self._opened = sid
                if not flags & _END_STREAM:
                    self._sending.add(sid)
            return None
        if sid in self._sending:
            if flags & _END_STREAM:
                self._sending.discard(sid)
            return None
        if sid in self._ignored:
            return None  # bridge reset it while the client was sending: libnghttp2 ignores it
        name = "DATA" if kind == _DATA else "HEADERS"
        if kind == _HEADERS and any(low <= sid <= high for low, high in self._gaps):
            return ErrorCodes.PROTOCOL_ERROR, f"{name}: stream id {sid} was skipped"
        return ErrorCodes.STREAM_CLOSED, f"{name}: stream {sid} closed"

    def _window(self, sid: int) -> int | None:
        """Stream `sid`'s send window; None when libnghttp2 has no such stream open."""
        try:
            return self._conn.stream_remote_window_size(sid)
        except ngh2.NGH2Error:
            return None

    def _stop_reading(self, sid: int) -> None:
        """Stream `sid` is closed on bridge's side: what its client still sends is ignored."""
        if sid in self._sending:
            self._sending.discard(sid)
            ignored = self._ignored
            ignored[sid] = None
            if len(ignored) > settings.H2_RESET_STREAMS_KEPT:
                del ignored[next(iter(ignored))]

    def _feed(self, data: bytes, out: list[EngineEvent]) -> bool:
        """`data` through libnghttp2, its events into `out`; False once the connection ended."""
        if not data:
            return True
        before = self._received
        self._received += len(data)
        conn = self._conn
        try:
            conn.receive_data(data)
            ng_events = conn.events()
        except ngh2.DenialOfServiceError as exc:  # a CONTINUATION flood (RFC 9113 §10.5)
            self._dead = True
            out.append(Broken(ErrorCodes.ENHANCE_YOUR_CALM, str(exc), answered=False))
            return False
        except ngh2.NGH2Error as exc:
            self._dead = True
            at_preface = before < _PREFACE_LENGTH and "magic" in str(exc).lower()
            out.append(Broken(ErrorCodes.PROTOCOL_ERROR, str(exc), False, at_preface))
            return False
        going = self._translate(ng_events, out)
        if going and conn.want_write:
            # A connection error is reported only once its GOAWAY has been serialized: do so
            # now (what is queued would be written next anyway) and look again.
            self._out += conn.data_to_send()
            going = self._translate(conn.events(), out)
        return going

    def _translate(self, ng_events: list[ngh2.Event], out: list[EngineEvent]) -> bool:
        """`ng_events` as the engine's, into `out`; False once the connection has ended."""
        for ev in ng_events:
            if isinstance(ev, ngh2.DataReceived):
                out.append(DataIn(ev.stream_id, ev.data, len(ev.data), ev.end_stream))
            elif isinstance(ev, ngh2.RequestReceived):
                sid = ev.stream_id
                if sid > self._highest:
                    self._highest = sid
                out.append(RequestIn(sid, ev.headers, ev.end_stream))
            elif isinstance(ev, ngh2.TrailersReceived):
                out.append(EndIn(ev.stream_id))  # trailers always end the stream
            elif isinstance(ev, ngh2.StreamReset):
                out.append(ResetIn(ev.stream_id))
            elif isinstance(ev, ngh2.StreamClosed):
                self._stop_reading(ev.stream_id)
                out.append(ClosedIn(ev.stream_id))
            elif isinstance(ev, ngh2.WindowUpdated):
                out.append(WindowIn(ev.stream_id))
            elif isinstance(ev, ngh2.SettingsReceived):
                size = ev.settings.get(_MAX_FRAME_SIZE)
                if size is not None:
                    self._frame_size = size
                out.append(WindowIn(0))
            elif isinstance(ev, ngh2.GoAwayReceived):
                out.append(PeerGone(ev.error_code))
                return False
            elif isinstance(ev, ngh2.ConnectionClosed):
                why = ev.debug_data.decode("latin-1") or f"error {ev.error_code}"
                out.append(Broken(ev.error_code, why, answered=True))
                return False
            # Pings, settings ACKs and priority signals need nothing from handlers.
        return True

    def partial_frame_length(self) -> int:
        return 0  # libnghttp2 checks a frame's length from its header

    def send_headers(
        self, stream_id: int, fields: list[tuple[bytes, bytes]], *, end_stream: bool = False
    ) -> None:
        try:
            self._conn.send_response(stream_id, fields, end_stream=end_stream)
        except ngh2.NGH2Error as exc:
            raise _send_error(exc) from exc

    def send_informational(self, stream_id: int, fields: list[tuple[bytes, bytes]]) -> None:
        try:
            self._conn.send_informational_response(stream_id, fields)
        except ngh2.NGH2Error as exc:
            raise _send_error(exc) from exc

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        try:
            self._conn.send_data(stream_id, data, end_stream=end_stream)
        except ngh2.NGH2Error as exc:
            raise _send_error(exc) from exc

    def end_stream(self, stream_id: int) -> None:
        try:
            self._conn.end_stream(stream_id)
        except ngh2.NGH2Error as exc:
            raise _send_error(exc) from exc

    def reset_stream(self, stream_id: int, code: ErrorCodes) -> None:
        if self._dead:
            return
        self._stop_reading(stream_id)
        conn = self._conn
        try:
            if code == ErrorCodes.NO_ERROR:
                # A complete response ending an unread request (RFC 9113 §8.1): its frames
                # first, or libnghttp2, which sends RST_STREAM ahead of DATA, would cut it.
                self._out += conn.data_to_send()
            conn.reset_stream(stream_id, code)
        except ngh2.NGH2Error:
            pass  # the stream is gone already

    def push(self, stream_id: int, request: list[tuple[bytes, bytes]]) -> int:
        try:
            return self._conn.send_push_promise(stream_id, request)
        except ngh2.NGH2Error as exc:
            raise _send_error(exc) from exc

    def acknowledge(self, stream_id: int, size: int) -> None:
        if self._dead:
            return
        try:
            self._conn.acknowledge_received_data(size, stream_id)
        except ngh2.NGH2Error:
            pass  # the stream is gone: libnghttp2 credited the connection's window already

    def send_window(self, stream_id: int) -> int:
        """Both windows less what libnghttp2 holds queued (it charges them as frames leave)."""
        if self._dead:
            return 0
        conn = self._conn
        try:
            stream = conn.stream_remote_window_size(stream_id) - conn.queued_body_size(stream_id)
        except ngh2.NGH2Error:
            return 0
        connection = conn.remote_window_size - conn.queued_body_size()
        return stream if stream < connection else connection

    def frame_now(self, stream_id: int, prefix: bytes, data: bytes) -> bytes | None:
        # The fan-out's hot path: `send_window` and `data_to_send` inlined, and the queued
        # bytes (almost always none: the server writes after every send) asked of the
        # connection once rather than of the stream and the connection.
        size = len(data)
        if size > self._frame_size or self._dead:
            return None
        conn = self._conn
        try:
            queued = conn.queued_body_size()
            if (
                size > conn.remote_window_size - queued
                or size > conn.stream_remote_window_size(stream_id) - queued
            ):
                return None
            conn.send_data(stream_id, data)
            out = conn.data_to_send()
        except ngh2.NGH2Error:
            return None
        if self._out:
            out = self._out + out
            self._out = b""
        self._preface = 0
        return out

    def go_away(self, code: ErrorCodes, debug: bytes = b"") -> None:
        self._out = self._out[: self._preface]  # nothing more for this client but the GOAWAY
        if self._dead:
            self._out += goaway_frame(self._highest, code, debug)
            return
        conn = self._conn
        try:
            conn.data_to_send()  # dropped, likewise
            conn.send_goaway(code, last_stream_id=self._highest, debug_data=debug)
        except ngh2.NGH2Error:
            self._dead = True
            self._out += goaway_frame(self._highest, code, debug)

    def preface_refused(self) -> None:
        self._dead = True
        self._out += goaway_frame(0, ErrorCodes.PROTOCOL_ERROR, b"invalid connection preface")

    def close(self) -> None:
        if self._dead:
            return
        conn = self._conn
        try:
            # What is queued goes first: libnghttp2 would put the GOAWAY ahead of DATA, and
            # clients that stop reading at a GOAWAY would lose the end of their responses.
            self._out += conn.data_to_send()
            conn.send_goaway(ErrorCodes.NO_ERROR, last_stream_id=self._highest)
        except ngh2.NGH2Error:
            self._dead = True

    def data_to_send(self) -> bytes:
        out = self._out
        self._preface = 0
        if not self._dead:
            try:
                data = self._conn.data_to_send()
            except ngh2.NGH2Error:
                self._dead = True
                data = b""
            if not out:
                return data
            out += data
        self._out = b""
        return out

    def release(self) -> None:
        self._dead = True
        self._out = b""


def _send_error(exc: Exception) -> Exception:
    """ngh2's error on a send, as the engine's: a stream (or connection) gone, or a refusal."""
    if isinstance(
        exc,
        (ngh2.StreamUnavailableError, ngh2.ConnectionStateError, ngh2.ConnectionClosingError),
    ):
        return StreamGone(str(exc))
    return SendRefused(str(exc))
