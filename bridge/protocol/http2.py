"""HTTP/2 server adapter: wire bytes <-> `bridge.events`, on an HTTP/2 engine, with no I/O.

Outbound DATA only leaves within the peer's flow-control windows; what does not fit waits in
a per-stream buffer that the server layer bounds (a send waits until `pending()` is empty, so
a stream whose window stays at zero holds one piece, at most `settings.BODY_CHUNK`). The queue
keeps the handler's own bytes objects, not a copy, and is dropped with the stream and when the
connection is lost (`release`), not left to the garbage collector.
Inbound DATA is acknowledged only when the handler consumes it (`acknowledge`), so a slow
upstream slows the client instead of filling our memory.

Each stream's life is a `streamstate.StreamState`, as in the HTTP/3 adapter. The wire itself
(HPACK, frames, the protocol's state machine and windows) is an *engine*'s (h2engine.py):
libnghttp2 through ngh2 (`ngh2shim`, the default) or h2 (`h2shim`, the fallback), chosen by
`engines.http2`. What bridge decides stays here, the same on both: its events, the stream
limit (REFUSED_STREAM), rapid-reset and control-frame flood counting, and which GOAWAY a
connection error gets.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import assert_never

from .. import framing, settings
from ..errorpage import error_body, error_headers
from ..errors import ErrorCode
from ..events import (
    Body,
    ConnectionClosed,
    Data,
    EndBody,
    EndData,
    Event,
    InformationalResponse,
    PushPromise,
    Request,
    Response,
    StreamClosed,
    StreamReset,
    WindowOpened,
)
from . import h2shim, ngh2shim
from .base import send_each
from .fields import request_from_fields, response_fields
from .h2engine import (
    H2,
    NGHTTP2,
    Broken,
    ClosedIn,
    DataIn,
    EndIn,
    Engine,
    EngineEvent,
    EngineFactory,
    ErrorCodes,
    PeerGone,
    RequestIn,
    ResetIn,
    SendRefused,
    StreamGone,
    WindowIn,
)
from .streamstate import Step, StreamKind, StreamState

log = logging.getLogger("bridge.http2")

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_FACTORIES: dict[str, EngineFactory] = {NGHTTP2: ngh2shim.NghttpEngine, H2: h2shim.H2Engine}


def engine_in_use(asked: str = NGHTTP2) -> tuple[str, str | None]:
    """The engine that runs when `asked` is configured, and why it is not `asked` (or None).

    nghttp2 runs only with the pinned ngh2 installed; otherwise h2 does."""
    if asked == NGHTTP2:
        problem = ngh2shim.unusable()
        if problem is not None:
            return H2, f"{problem}: HTTP/2 runs on the h2 engine instead"
    return asked, None


_warned: set[str] = set()


def engine_factory(asked: str = NGHTTP2) -> EngineFactory:
    """The engine constructor for `asked`, falling back to h2 (logged once) when nghttp2
    cannot run here."""
    name, why = engine_in_use(asked)
    if why is not None and why not in _warned:
        _warned.add(why)
        log.warning("engines.http2: %s", why)
    return _FACTORIES[name]


def _data_prefix(stream_id: int) -> bytes:
    return b"\x00\x00" + stream_id.to_bytes(4, "big")


@dataclass(slots=True)
class _Stream:
    # Body bytes beyond the flow-control window: the senders' objects, the first one possibly
    # a view of what is left of it after a partial frame.
    # A list, not a deque: an empty deque is ~600 bytes, times 10,000 idle SSE streams.
    pending: list[bytes | memoryview] = field(default_factory=list)
    pending_size: int = 0
    state: StreamState = StreamState.OPEN
    kind: StreamKind = StreamKind.MESSAGE  # an extended CONNECT (RFC 8441) may become a tunnel
    data_prefix: bytes = b""  # type, flags and stream id of this stream's DATA frames


class Http2Protocol:
    """Sans-IO HTTP/2 server connection (RFC 9113), with RFC 8441 extended CONNECT."""

    http_version = "2"
    multiplexed = True

    def __init__(
        self,
        *,
        scheme: str,
        max_concurrent_streams: int = 128,
        max_header_bytes: int = settings.MAX_HEADER_BYTES,
        enable_push: bool = True,
        engine: EngineFactory | None = None,
    ) -> None:
        self.scheme = scheme
        self.max_concurrent_streams = max_concurrent_streams
        make = engine if engine is not None else engine_factory()
        self._conn: Engine = make(
            max_concurrent_streams=max_concurrent_streams,
            max_header_bytes=max_header_bytes,
            initial_window=settings.H2_INITIAL_WINDOW,
        )
        self._streams: dict[int, _Stream] = {}
        self._closed = False
        self._resets: list[float] = []
        # Frame boundaries of the inbound byte stream, walked ahead of h2 to count control
        # frames (see `_control_flood`): bytes still to skip, and a frame header cut by a read.
        self._walk_skip = len(PREFACE)
        self._walk_carry = b""
        self._control_count = 0
        self._control_window_end = 0.0
        self._continuations = 0  # CONTINUATION frames in a row, so far
        self.enable_push = enable_push
        self.requests = 0

    # --- receiving ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        if self._closed:
            return []
        flood = self._control_flood(data)
        if flood is not None:
            return self._go_away(ErrorCodes.ENHANCE_YOUR_CALM, flood)
        engine_events = self._conn.receive(data)
        if self._conn.partial_frame_length() > settings.H2_MAX_FRAME_SIZE:
            # RFC 9113 §4.2. h2 only checks a frame's length once all of it has arrived, so
            # garbage (an HTTP/1.1 request line reads as a 4 MB frame) would sit in its buffer.
            return self._go_away(ErrorCodes.FRAME_SIZE_ERROR, "frame too large")
        events: list[Event] = []
        for ev in engine_events:
            self._translate(ev, events)
            if self._closed:
                break
        return events

    def _translate(self, ev: EngineEvent, out: list[Event]) -> None:
        if isinstance(ev, DataIn):
            sid = ev.stream_id
            padding = ev.flow_length - len(ev.data)
            if padding:
                self._conn.acknowledge(sid, padding)
            stream = self._streams.get(sid)
            if stream is None:
                self._conn.acknowledge(sid, len(ev.data))
                return
            if ev.data:  # clients end streams with empty DATA; b"" would read as EOF downstream
                out.append(Data(sid, ev.data) if stream.kind.tunnel else Body(sid, ev.data))
            if ev.ended:
                self._remote_end(sid, out)
        elif isinstance(ev, RequestIn):
            self._request(ev, out)
        elif isinstance(ev, EndIn):
            self._remote_end(ev.stream_id, out)
        elif isinstance(ev, ResetIn):
            self._peer_reset(ev.stream_id, out)
        elif isinstance(ev, ClosedIn):
            # Closed by the engine itself (a stream error it answered): gone without a word.
            if self._streams.pop(ev.stream_id, None) is not None:
                out.append(StreamReset(ev.stream_id, ErrorCode.CANCELLED))
                out.append(StreamClosed(ev.stream_id))
        elif isinstance(ev, WindowIn):
            sid = ev.stream_id
            targets = [sid] if sid else [s for s, st in self._streams.items() if st.pending]
            for target in targets:
                self._flush(target, out)
                out.append(WindowOpened(target))
        elif isinstance(ev, PeerGone):
            self._closed = True
            for sid in list(self._streams):
                out.append(StreamClosed(sid))
            self._streams.clear()
            out.append(ConnectionClosed("GOAWAY from peer"))
        elif isinstance(ev, Broken):
            out.extend(self._connection_error(ev))
        else:
            assert_never(ev)

    def _request(self, ev: RequestIn, out: list[Event]) -> None:
        sid = ev.stream_id
        if len(self._streams) >= self.max_concurrent_streams:
            # RFC 9113 §5.1.2: this stream is refused, the connection goes on. Neither engine
            # enforces the advertised limit itself (see h2shim, ngh2shim).
            self._conn.reset_stream(sid, ErrorCodes.REFUSED_STREAM)
            self._count_reset(out)
            return
        request, _ = request_from_fields(sid, ev.headers, scheme=self.scheme, http_version="2")
        stream = _Stream(kind=StreamKind.of(request.method), data_prefix=_data_prefix(sid))
        self._streams[sid] = stream
        self.requests += 1
        out.append(request)
        if ev.ended:
            self._remote_end(sid, out)

    def _remote_end(self, sid: int, out: list[Event]) -> None:
        stream = self._streams.get(sid)
        if stream is None or not stream.state.receiving:
            return
        stream.state = stream.state.after(Step.REMOTE_END)
        out.append(EndData(sid) if stream.kind.tunnel else EndBody(sid))

    def _peer_reset(self, sid: int, out: list[Event]) -> None:
        self._count_reset(out)
        if self._streams.pop(sid, None) is not None:
            out.append(StreamReset(sid, ErrorCode.CANCELLED))
            out.append(StreamClosed(sid))

    def _count_reset(self, out: list[Event]) -> None:
        """Rapid reset (CVE-2023-44487): streams opened and cancelled faster than useful."""
        now = time.monotonic()
        resets = self._resets
        resets.append(now)
        if len(resets) > settings.H2_MAX_RESETS:
            del resets[: len(resets) - settings.H2_MAX_RESETS - 1]
            if now - resets[0] < settings.H2_RESET_WINDOW:
                out.extend(self._go_away(ErrorCodes.ENHANCE_YOUR_CALM, "rapid reset"))

    def _control_flood(self, data: bytes) -> str | None:
        """Which flood, if any, the frames beginning in `data` take this connection into.

        Frames that cost us work and carry nothing for a handler, past `H2_MAX_CONTROL_FRAMES`
        in the current window, or more than `H2_MAX_CONTINUATIONS` CONTINUATION frames in a
        row (RFC 9113 §10.5; counted here because an engine that drops a malformed header
        block may go on reading its CONTINUATIONs without counting them).

        PING and SETTINGS that are not ACKs (each one answered: CVE-2019-9512 / -9515),
        PRIORITY (CVE-2019-9513), and empty DATA frames that do not end their stream
        (CVE-2019-9518). Counted from the 9-byte frame headers (RFC 9113 §4.1) before h2 parses
        anything, so a flood costs a header walk, not h2's work and an answer per frame.
        """
        buf = self._walk_carry + data if self._walk_carry else data
        pos = self._walk_skip
        end = len(buf)
        count = 0
        continuations = self._continuations
        while pos + 9 <= end:
            length = int.from_bytes(buf[pos : pos + 3], "big")
            kind = buf[pos + 3]
            flags = buf[pos + 4]
            if kind == 0x9:  # CONTINUATION, RFC 9113 §6.10
                continuations += 1
            else:
                continuations = 0
            # Types: DATA 0x0 (flag 0x1 END_STREAM), PRIORITY 0x2, SETTINGS 0x4 and PING 0x6
            # (flag 0x1 ACK on both): RFC 9113 §6.1, §6.3, §6.5, §6.7.
            if (
                ((kind == 0x4 or kind == 0x6) and not flags & 0x1)
                or kind == 0x2
                or (kind == 0x0 and not length and not flags & 0x1)
            ):
                count += 1
            pos += 9 + length
        if pos >= end:
            self._walk_skip, self._walk_carry = pos - end, b""
        else:
            self._walk_skip, self._walk_carry = 0, buf[pos:]
        self._continuations = continuations
        if continuations > settings.H2_MAX_CONTINUATIONS:
            return "CONTINUATION flood"
        if not count:
            return None
        now = time.monotonic()
        if now >= self._control_window_end:
            self._control_window_end = now + settings.H2_CONTROL_WINDOW
            self._control_count = 0
        self._control_count += count
        if self._control_count > settings.H2_MAX_CONTROL_FRAMES:
            return "control frame flood"
        return None

    def _connection_error(self, broken: Broken) -> list[Event]:
        """A connection error the engine found: GOAWAY (the engine's own, or ours with the code
        bridge answers that error with), then every stream ends."""
        if broken.at_preface:
            # RFC 9113 §3.4: PROTOCOL_ERROR, after our SETTINGS; no stream was processed.
            self._conn.preface_refused()
            self._closed = True
            return self._close_all("GOAWAY PROTOCOL_ERROR: invalid connection preface")
        if not broken.answered:
            return self._go_away(ErrorCodes(broken.code), broken.why)
        self._closed = True
        return self._close_all(f"protocol error: {broken.why}")

    def _go_away(self, code: ErrorCodes, why: str) -> list[Event]:
        self._conn.go_away(code)
        self._closed = True
        return self._close_all(f"GOAWAY {code.name}: {why}")

    def _close_all(self, why: str) -> list[Event]:
        events: list[Event] = []
        for sid in list(self._streams):
            events.append(StreamReset(sid, ErrorCode.CANCELLED))
            events.append(StreamClosed(sid))
        self._streams.clear()
        events.append(ConnectionClosed(why))
        return events

    # --- sending --------------------------------------------------------------------------------

    def send_all(self, events: list[Event]) -> list[Event]:
        if len(events) == 3:
            head, body, end = events
            if (
                isinstance(body, Body)
                and isinstance(end, EndBody)
                and body.stream_id == end.stream_id
            ):
                # A whole response: its body leaves with END_STREAM on its last DATA frame,
                # rather than an empty DATA frame of its own after it.
                out = self.send(head)
                stream = self._streams.get(body.stream_id)
                if stream is None or self._closed:
                    return out
                if body.data:
                    stream.pending.append(body.data)
                    stream.pending_size += len(body.data)
                return out + self.send(end)
        return send_each(self.send, events)

    def send(self, event: Event) -> list[Event]:
        sid = event.stream_id if not isinstance(event, ConnectionClosed) else 0
        stream = self._streams.get(sid)
        if self._closed or (stream is None and not isinstance(event, ConnectionClosed)):
            return []
        out: list[Event] = []
        try:
            self._send(event, sid, stream, out)  # type: ignore[arg-type]
        except StreamGone:
            if self._streams.pop(sid, None) is not None:
                out.append(StreamClosed(sid))
        except SendRefused:
            # Our own bug (e.g. a header the engine refuses): reset that stream, keep the
            # connection.
            self._reset(sid, ErrorCodes.INTERNAL_ERROR, out)
            out.append(StreamReset(sid, ErrorCode.INTERNAL_ERROR))
        return out

    def _send(self, event: Event, sid: int, stream: _Stream, out: list[Event]) -> None:
        conn = self._conn
        if isinstance(event, (Body, Data)):
            if event.data:
                stream.pending.append(event.data)
                stream.pending_size += len(event.data)
                self._flush(sid, out)
        elif isinstance(event, Response):
            stream.state = stream.state.after(Step.HEAD)
            if event.status == 101:
                raise ValueError("101 does not exist in HTTP/2")
            stream.kind = stream.kind.answered(event.status)
            conn.send_headers(sid, response_fields(event.status, event.headers))
        elif isinstance(event, InformationalResponse):
            conn.send_informational(sid, response_fields(event.status, event.headers))
        elif isinstance(event, (EndBody, EndData)):
            stream.state = stream.state.after(Step.END)
            self._flush(sid, out)
        elif isinstance(event, StreamReset):
            # CANCELLED means "nothing to send" (errors.py), e.g. a push whose asset failed:
            # a 499 response would be cached as the pushed resource, RST_STREAM is not.
            if not stream.state.head_sent and event.code is not ErrorCode.CANCELLED:
                body = error_body(event.code)
                conn.send_headers(sid, response_fields(event.code.status, error_headers(body)))
                stream.state = stream.state.after(Step.HEAD)
                stream.pending.append(body)
                stream.pending_size += len(body)
                stream.state = stream.state.after(Step.END)
                self._flush(sid, out)
            else:
                self._reset(sid, reset_code(event.code), out)
        elif isinstance(event, PushPromise):
            self._push(event, sid, out)
        else:
            raise TypeError(f"cannot send {event!r} over HTTP/2")

    def _flush(self, sid: int, out: list[Event]) -> None:
        stream = self._streams.get(sid)
        if stream is None:
            return
        conn = self._conn
        pending = stream.pending
        while pending:
            window = min(conn.send_window(sid), conn.max_outbound_frame_size)
            if window <= 0:
                return
            head = pending[0]
            if len(head) <= window:
                del pending[0]
                piece = head
            else:
                view = memoryview(head)
                piece, pending[0] = view[:window], view[window:]
            stream.pending_size -= len(piece)
            last = not pending and stream.state.ending
            conn.send_data(sid, bytes(piece), end_stream=last)
            if last:
                self._local_end(sid, out)
                return
        if stream.state.ending:
            conn.end_stream(sid)
            self._local_end(sid, out)

    def _local_end(self, sid: int, out: list[Event]) -> None:
        stream = self._streams[sid]
        remote_closed = not stream.state.receiving
        stream.state = stream.state.after(Step.LOCAL_END)
        if remote_closed:
            self._finish(sid, out)
        else:
            # RFC 9113 §8.1: a complete response may end an unread request with NO_ERROR.
            self._reset(sid, ErrorCodes.NO_ERROR, out)

    def _finish(self, sid: int, out: list[Event]) -> None:
        if self._streams.pop(sid, None) is not None:
            out.append(StreamClosed(sid))

    def _reset(self, sid: int, code: ErrorCodes, out: list[Event]) -> None:
        self._conn.reset_stream(sid, code)
        self._finish(sid, out)

    def can_push(self) -> bool:
        """Would a PushPromise now become a promised stream (not be dropped)?

        No when the client sent SETTINGS_ENABLE_PUSH=0 (RFC 9113 §6.5.2), or when our pushed
        streams already fill its SETTINGS_MAX_CONCURRENT_STREAMS. The engines count only
        streams past "reserved" (§5.1.2), but every promise here is answered at once, so a
        page's whole batch of promises would overshoot the limit: count every pushed stream we
        hold. (libnghttp2 would even promise a stream to a client that disabled push, and then
        close it.)
        """
        conn = self._conn
        if self._closed or not (self.enable_push and conn.peer_push_enabled):
            return False
        pushed = sum(1 for sid in self._streams if not sid % 2)
        return pushed < conn.peer_max_concurrent_streams

    def _push(self, event: PushPromise, sid: int, out: list[Event]) -> None:
        conn = self._conn
        if not self.can_push():
            return
        request = self._requests_for_push(sid, event)
        promised = conn.push(sid, request)
        self._streams[promised] = _Stream(
            state=StreamState.REMOTE_CLOSED, data_prefix=_data_prefix(promised)
        )
        authority = scheme = ""
        headers = []
        for name, value in request:
            if name == b":authority":
                authority = value.decode("latin-1")
            elif name == b":scheme":
                scheme = value.decode("latin-1")
            elif name[:1] != b":":
                headers.append((name, value))
        out.append(
            Request(
                stream_id=promised,
                method="GET",
                target=event.path,
                authority=authority,
                scheme=scheme or self.scheme,
                headers=headers,
                http_version="2",
                pushed=True,
            )
        )
        out.append(EndBody(promised))

    def _requests_for_push(self, sid: int, event: PushPromise) -> list[tuple[bytes, bytes]]:
        authority = b""
        for name, value in event.headers:
            if name == b":authority":
                authority = value
        head = [
            (b":method", b"GET"),
            (b":scheme", self.scheme.encode()),
            (b":authority", authority),
            (b":path", event.path.encode("latin-1")),
        ]
        head += [(n, v) for n, v in event.headers if n[:1] != b":"]
        return head

    # --- flow control and state ---------------------------------------------------------------

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The handler consumed `size` body bytes: hand the window back to the client."""
        if size and not self._closed:
            self._conn.acknowledge(stream_id, size)

    def frame_prerendered(
        self, stream_id: int, data: bytes, *, framed: bool = False
    ) -> bytes | None:
        """Hot path: `data` framed as one DATA frame, after any frames already queued; or None.

        The fan-out writes one pre-rendered event to thousands of streams; going through
        h2's `send_data` (frame objects, state machines) costs several times the write
        itself. When nothing is queued for the stream and both flow-control windows hold the
        bytes, the engine frames it at once, windows charged (RFC 9113 §6.1, §6.9; on h2 the
        frame is built by hand, on nghttp2 `send_data` is as cheap); otherwise (None) the
        caller takes the ordinary `send(Body)` path. The result includes what the engine had
        queued (a response head), so one write keeps order.
        (`framed` changes nothing: HTTP/2's shared framing is none, see `body_framing`.)
        """
        stream = self._streams.get(stream_id)
        if stream is None or stream.pending or not stream.state.takes_body or self._closed:
            return None
        return self._conn.frame_now(stream_id, stream.data_prefix, data)

    def body_framing(self, stream_id: int) -> framing.Framing:
        return framing.UNFRAMED  # a DATA frame carries its stream id: framed per write

    def is_tunnel(self, stream_id: int) -> bool:
        stream = self._streams.get(stream_id)
        return stream is not None and stream.kind.tunnel

    @property
    def stream_count(self) -> int:
        """Streams this connection is carrying now (requests, tunnels, pushes)."""
        return len(self._streams)

    def pending(self, stream_id: int) -> int:
        stream = self._streams.get(stream_id)
        return stream.pending_size if stream is not None else 0

    def send_window(self, stream_id: int) -> int:
        return self._conn.send_window(stream_id)

    def shutdown(self) -> None:
        """GOAWAY (NO_ERROR) as the connection closes; the server calls it from `close()`.

        Nothing can be sent after it: later sends are dropped (as on any closed adapter)
        instead of raising out of the engine.
        """
        if not self._closed:
            self._conn.close()
            self._closed = True

    def data_to_send(self) -> bytes:
        return self._conn.data_to_send()

    def release(self) -> None:
        """The connection is gone: drop every stream's queued bytes and the engine's unsent ones.

        What still refers to this adapter (exchanges, cancelled handler tasks) may live on in
        reference cycles until a collection; the buffers must not live on with them.
        """
        self._closed = True
        self._streams.clear()
        self._conn.release()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def idle(self) -> bool:
        return not self._streams

    @property
    def peer_sending(self) -> bool:
        return False  # an unread request body is refused per stream (RST_STREAM), no linger

    @property
    def head_started(self) -> bool:
        return False  # streams have no header timer of their own; the connection's idle does

    @property
    def open_streams(self) -> int:
        return len(self._streams)


def reset_code(code: ErrorCode) -> ErrorCodes:
    """The RST_STREAM code (RFC 9113 §7) for a stream that fails after its head is out."""
    match code:
        case ErrorCode.CANCELLED:
            return ErrorCodes.CANCEL
        case ErrorCode.OVERLOADED:
            # §8.7: REFUSED_STREAM tells the client no work was done; it may retry.
            return ErrorCodes.REFUSED_STREAM
        case ErrorCode.BAD_REQUEST:
            return ErrorCodes.PROTOCOL_ERROR
        case (
            ErrorCode.FORBIDDEN
            | ErrorCode.NOT_FOUND
            | ErrorCode.METHOD_NOT_ALLOWED
            | ErrorCode.REQUEST_TIMEOUT
            | ErrorCode.PAYLOAD_TOO_LARGE
            | ErrorCode.URI_TOO_LONG
            | ErrorCode.UPGRADE_REQUIRED
            | ErrorCode.HEADERS_TOO_LARGE
            | ErrorCode.INTERNAL_ERROR
            | ErrorCode.NOT_IMPLEMENTED
            | ErrorCode.UPSTREAM_UNREACHABLE
            | ErrorCode.UPSTREAM_TIMEOUT
            | ErrorCode.HTTP_VERSION_NOT_SUPPORTED
        ):
            return ErrorCodes.INTERNAL_ERROR
        case _:
            assert_never(code)
