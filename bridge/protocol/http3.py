"""HTTP/3 server adapter: QUIC events <-> `bridge.events`, on aioquic's H3Connection, no I/O.

The driver (`bridge.server.quicconn`) feeds each event its `ServerQuic` produced to
`receive_event` and sends what `send` leaves queued in the QUIC connection. As in the HTTP/2
adapter:

- Inbound body bytes are credited back to the client only when the handler consumes them
  (`acknowledge`); `ServerQuic` turns that into MAX_STREAM_DATA, so uploads are paced by the
  upstream, not by our memory.
- aioquic queues whatever it is given to send, without limit. `pending(stream_id)` counts the
  bytes queued on a stream that have not yet left in a packet; `Exchange.drain` waits while it
  is high, and `drained()` reports the streams that fell back below the mark (WindowOpened).
- RFC 9220 extended CONNECT (`:protocol websocket`) becomes a Request with `protocol`, and a
  2xx answer turns the stream into a tunnel of Data/EndData.

Each stream's life is a `streamstate.StreamState`, as in the HTTP/2 adapter. What bridge
needs of aioquic beyond its public API (parser state, push ids, GOAWAY, send queues) is
`quicshim`'s: the engine's seam.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, assert_never

import aioquic.h3.events as h3e
import aioquic.quic.events as qe
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import ErrorCode as H3Code
from aioquic.h3.connection import ProtocolError as H3ProtocolError
from aioquic.h3.exceptions import H3Error
from aioquic.quic.connection import stream_is_unidirectional

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
from .base import send_each
from .fields import request_from_fields, response_fields
from .quic import ServerQuic
from .quicshim import ServerH3
from .streamstate import Step, StreamKind, StreamState

# A stream whose queue is above this is "blocked" until it drains back below it.
_SEND_MARK = settings.BODY_CHUNK


def data_frame_header(size: int) -> bytes:
    """RFC 9114 §7.2.1: a DATA frame is varint type 0x0, varint length, payload."""
    return b"\x00" + encode_uint_var(size)


def data_frame(data: bytes) -> bytes:
    return data_frame_header(len(data)) + data


# Unlike HTTP/2's, an HTTP/3 DATA frame names no stream (the QUIC stream carries it), so the
# same framed bytes serve every subscriber: the hub frames each event once for all of them.
DATA_FRAMED = framing.register("http/3 DATA", data_frame)


@dataclass(slots=True)
class _Stream:
    state: StreamState = StreamState.OPEN
    kind: StreamKind = StreamKind.MESSAGE  # an extended CONNECT (RFC 9220) may become a tunnel
    unread: int = 0  # body bytes handed to the handler and not yet acknowledged


class Http3Protocol:
    """Sans-IO HTTP/3 server connection (RFC 9114), with RFC 9220 extended CONNECT."""

    http_version = "3"
    multiplexed = True

    def __init__(
        self,
        quic: ServerQuic,
        *,
        scheme: str = "https",
        max_concurrent_streams: int = settings.H3_MAX_STREAMS,
        max_header_bytes: int = settings.MAX_HEADER_BYTES,
        enable_push: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scheme = scheme
        self._quic = quic
        # aioquic's H3Connection always sends SETTINGS_ENABLE_CONNECT_PROTOCOL=1 (RFC 9220 §3).
        self._h3 = ServerH3(quic)
        self._streams: dict[int, _Stream] = {}
        self._blocked: set[int] = set()
        self._closed = False
        self._going_away = False
        self._highest_request = -1
        self._delivered = 0  # body bytes the current StreamDataReceived gave to handlers
        # Request streams whose head has begun but not completed, and since when (`clock`).
        self._heads: dict[int, float] = {}
        self.clock = clock
        self.max_concurrent_streams = max_concurrent_streams
        self.max_header_bytes = max_header_bytes
        self.enable_push = enable_push
        self.requests = 0

    # --- receiving ----------------------------------------------------------------------------

    def receive_event(self, event: qe.QuicEvent) -> list[Event]:
        """One QUIC event in; bridge events out."""
        out: list[Event] = []
        if self._closed:
            return out
        if isinstance(event, qe.StreamDataReceived):
            self._stream_data(event, out)
        elif isinstance(event, (qe.StreamReset, qe.StopSendingReceived)):
            self._h3.handle_event(event)
            self._peer_reset(event.stream_id, out)
        elif isinstance(event, qe.ConnectionTerminated):
            self._closed = True
            out.extend(self._close_all(f"QUIC connection closed: {event.reason_phrase}"))
        return out

    def _stream_data(self, event: qe.StreamDataReceived, out: list[Event]) -> None:
        sid = event.stream_id
        h3 = self._h3
        before = h3.frame_buffered(sid)  # the frame aioquic is still assembling, if any
        h3_events = h3.handle_event(event)
        after = h3.frame_buffered(sid)
        self._delivered = 0
        for ev in h3_events:
            self._translate(ev, out)
        body = self._delivered  # handed to handlers as Body/Data: credited on `acknowledge`
        if (
            after
            and sid not in self._streams
            and sid % 4 == 0  # a client's request stream
            and h3.awaiting_head(sid)
        ):
            self._heads.setdefault(sid, self.clock())  # a request head has begun
        if sid in self._streams or stream_is_unidirectional(sid):
            # Framing and headers are consumed now; a frame aioquic still buffers is not, so
            # a never-ending HEADERS frame stops at the stream window. Body bytes wait for the
            # handler. Streams that are over get no more credit.
            self._quic.consumed(sid, len(event.data) - body - (after - before))
        if self._quic.closing or h3.failed:
            # aioquic closed the connection for a protocol error (it has queued the close).
            self._closed = True
            out.extend(self._close_all("HTTP/3 protocol error"))

    def _translate(self, ev: h3e.H3Event, out: list[Event]) -> None:
        if isinstance(ev, h3e.HeadersReceived):
            stream = self._streams.get(ev.stream_id)
            if stream is None:
                # QUIC streams arrive in any order, so a lower id can still be new; trailers
                # of a stream already over carry no :method (RFC 9114 §4.3.1).
                if any(name == b":method" for name, _ in ev.headers):
                    self._request(ev, out)
                return
            # Trailers (RFC 9114 §4.1): no handler needs a client's; the end still counts.
            if ev.stream_ended:
                self._remote_end(ev.stream_id, out)
        elif isinstance(ev, h3e.DataReceived):
            sid = ev.stream_id
            stream = self._streams.get(sid)
            if stream is None:
                return  # already credited in `_stream_data`
            if ev.data:
                stream.unread += len(ev.data)
                self._delivered += len(ev.data)
                out.append(Data(sid, ev.data) if stream.kind.tunnel else Body(sid, ev.data))
            if ev.stream_ended:
                self._remote_end(sid, out)
        # Pushes and datagrams from a client are aioquic's to refuse; nothing else arrives.

    def _request(self, ev: h3e.HeadersReceived, out: list[Event]) -> None:
        sid = ev.stream_id
        self._heads.pop(sid, None)
        self._highest_request = max(self._highest_request, sid)
        if self._going_away or len(self._streams) >= self.max_concurrent_streams:
            # RFC 9114 §4.1.1: a request not processed at all is rejected, and may be retried.
            self._abort(sid, H3Code.H3_REQUEST_REJECTED)
            return
        request, size = request_from_fields(sid, ev.headers, scheme=self.scheme, http_version="3")
        stream = _Stream(kind=StreamKind.of(request.method))
        self._streams[sid] = stream
        self.requests += 1
        # A block over the limit was refused undecoded (quicshim), its head a stand-in.
        if size > self.max_header_bytes or self._h3.refused_head(sid):
            self.send(StreamReset(sid, ErrorCode.HEADERS_TOO_LARGE))
            return
        out.append(request)
        if ev.stream_ended:
            self._remote_end(sid, out)

    def _remote_end(self, sid: int, out: list[Event]) -> None:
        stream = self._streams.get(sid)
        if stream is None or not stream.state.receiving:
            return
        stream.state = stream.state.after(Step.REMOTE_END)
        out.append(EndData(sid) if stream.kind.tunnel else EndBody(sid))

    def _peer_reset(self, sid: int, out: list[Event]) -> None:
        self._heads.pop(sid, None)
        stream = self._streams.pop(sid, None)
        if stream is None:
            return
        self._release(sid, stream)
        # The client abandoned the request (RFC 9114 §4.1.1): stop both directions.
        self._abort(sid, H3Code.H3_REQUEST_CANCELLED)
        out.append(StreamReset(sid, ErrorCode.CANCELLED))
        out.append(StreamClosed(sid))

    def _close_all(self, why: str) -> list[Event]:
        events: list[Event] = []
        for sid in list(self._streams):
            events.append(StreamReset(sid, ErrorCode.CANCELLED))
            events.append(StreamClosed(sid))
        self._streams.clear()
        self._blocked.clear()
        events.append(ConnectionClosed(why))
        return events

    # --- sending --------------------------------------------------------------------------------

    def send_all(self, events: list[Event]) -> list[Event]:
        return send_each(self.send, events)

    def send(self, event: Event) -> list[Event]:
        if isinstance(event, ConnectionClosed):
            self.shutdown()
            return []
        sid = event.stream_id
        stream = self._streams.get(sid)
        out: list[Event] = []
        if self._closed or stream is None:
            return out
        try:
            self._send(event, sid, stream, out)
        except (H3ProtocolError, H3Error):
            # Our own bug (a header aioquic refuses, a second head): that stream ends, the
            # connection and its other streams go on.
            self._streams.pop(sid, None)
            self._release(sid, stream)
            self._abort(sid, H3Code.H3_INTERNAL_ERROR)
            out.append(StreamReset(sid, ErrorCode.INTERNAL_ERROR))
            out.append(StreamClosed(sid))
        return out

    def _send(self, event: Event, sid: int, stream: _Stream, out: list[Event]) -> None:
        if isinstance(event, (Body, Data)):
            if event.data and stream.state.takes_body:
                self._h3.send_data(sid, event.data, end_stream=False)
                self._mark(sid)
        elif isinstance(event, Response):
            if event.status == 101:
                raise ValueError("101 does not exist in HTTP/3")
            stream.state = stream.state.after(Step.HEAD)
            stream.kind = stream.kind.answered(event.status)
            self._h3.send_headers(sid, response_fields(event.status, event.headers))
        elif isinstance(event, InformationalResponse):
            if not stream.state.head_sent:
                self._h3.send_headers(sid, response_fields(event.status, event.headers))
        elif isinstance(event, (EndBody, EndData)):
            if stream.state is not StreamState.CLOSED:
                self._h3.send_data(sid, b"", end_stream=True)
                self._local_end(sid, stream, out)
        elif isinstance(event, StreamReset):
            self._send_reset(sid, stream, event.code, out)
        elif isinstance(event, PushPromise):
            self._push(event, sid, out)
        else:
            raise TypeError(f"cannot send {event!r} over HTTP/3")

    def _send_reset(self, sid: int, stream: _Stream, code: ErrorCode, out: list[Event]) -> None:
        # CANCELLED means "nothing to send" (errors.py), e.g. a push whose asset failed: a
        # 499 response would be cached as the pushed resource, a reset is not.
        if not stream.state.head_sent and code is not ErrorCode.CANCELLED:
            body = error_body(code)
            stream.state = stream.state.after(Step.HEAD)
            self._h3.send_headers(sid, response_fields(code.status, error_headers(body)))
            self._h3.send_data(sid, body, end_stream=True)
            self._local_end(sid, stream, out)
            return
        self._streams.pop(sid, None)
        self._release(sid, stream)
        self._abort(sid, h3_code(code))
        out.append(StreamClosed(sid))

    def _local_end(self, sid: int, stream: _Stream, out: list[Event]) -> None:
        remote_closed = not stream.state.receiving
        stream.state = stream.state.after(Step.LOCAL_END)
        if remote_closed:
            self._finish(sid, out)
            return
        # RFC 9114 §4.1: once the response is complete the server may ask the client to stop
        # sending the rest of the request (STOP_SENDING with H3_NO_ERROR).
        if not stream_is_unidirectional(sid):
            self._stop(sid, H3Code.H3_NO_ERROR)
        self._finish(sid, out)

    def _stop(self, sid: int, code: int) -> None:
        try:
            self._quic.stop_stream(sid, code)
        except ValueError:  # aioquic already discarded the stream: nothing left to stop
            pass

    def _finish(self, sid: int, out: list[Event]) -> None:
        stream = self._streams.pop(sid, None)
        if stream is not None:
            self._release(sid, stream)
            out.append(StreamClosed(sid))

    def _release(self, sid: int, stream: _Stream) -> None:
        """The stream is over for us: no more send-queue watching, no more window credit."""
        self._blocked.discard(sid)
        self._quic.forget(sid)

    def _abort(self, sid: int, code: int) -> None:
        """Reset our side of a stream and ask the client to stop its side (RFC 9000 §3.5)."""
        if not stream_is_unidirectional(sid):
            self._stop(sid, code)
        self._quic.reset_stream(sid, code)  # no effect once reset or fully acknowledged
        self._h3.end_sending(sid)

    # --- push -----------------------------------------------------------------------------------

    def can_push(self) -> bool:
        """RFC 9114 §4.6: a server may only push while the client has granted push ids
        (MAX_PUSH_ID); a client that sends none gets no push and no error."""
        return (
            self.enable_push
            and not self._closed
            and not self._going_away
            and self._h3.push_allowed()
        )

    def _push(self, event: PushPromise, sid: int, out: list[Event]) -> None:
        if not self.can_push() or self._streams[sid].state.head_sent:
            return
        authority = b""
        for name, value in event.headers:
            if name == b":authority":
                authority = value
        request = [
            (b":method", b"GET"),
            (b":scheme", self.scheme.encode()),
            (b":authority", authority),
            (b":path", event.path.encode("latin-1")),
        ]
        extra = [(n, v) for n, v in event.headers if n[:1] != b":"]
        promised = self._h3.send_push_promise(sid, request + extra)
        self._streams[promised] = _Stream(state=StreamState.REMOTE_CLOSED)
        out.append(
            Request(
                stream_id=promised,
                method="GET",
                target=event.path,
                authority=authority.decode("latin-1"),
                scheme=self.scheme,
                headers=extra,
                http_version="3",
                pushed=True,
            )
        )
        out.append(EndBody(promised))

    # --- flow control and the hot path ----------------------------------------------------------

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The handler consumed `size` body bytes: the client may send that much more."""
        stream = self._streams.get(stream_id)
        if stream is None or not size:
            return
        size = min(size, stream.unread)
        stream.unread -= size
        self._quic.consumed(stream_id, size)

    def body_framing(self, stream_id: int) -> framing.Framing:
        """DATA frames, for bodies and tunnels alike (RFC 9220 §3: tunnel bytes are DATA)."""
        return DATA_FRAMED

    def frame_prerendered(
        self, stream_id: int, data: bytes, *, framed: bool = False
    ) -> bytes | None:
        """`data` as one DATA frame (unchanged when `framed`), or None when the stream takes
        no body now (no head yet, ended, gone). The driver puts it on the QUIC stream with
        `write_framed`: aioquic's `send_data` only checks the stream's state and logs, so
        the fan-out, writing one event to thousands of streams, skips it."""
        stream = self._streams.get(stream_id)
        if stream is None or self._closed or not stream.state.takes_body:
            return None
        return data if framed else data_frame(data)

    def write_framed(self, stream_id: int, framed: bytes) -> None:
        """Queue DATA frames from `frame_prerendered` on the stream."""
        self._quic.send_stream_data(stream_id, framed)
        self._mark(stream_id)

    def _mark(self, sid: int) -> None:
        if self.pending(sid) > _SEND_MARK:
            self._blocked.add(sid)

    def pending(self, stream_id: int) -> int:
        """Bytes queued on the stream that have not left in a packet yet."""
        return self._quic.send_queued(stream_id)

    def drained(self) -> list[Event]:
        """After packets went out: WindowOpened for each stream that fell below the mark."""
        if not self._blocked:
            return []
        opened = [sid for sid in self._blocked if self.pending(sid) <= _SEND_MARK]
        for sid in opened:
            self._blocked.discard(sid)
        return [WindowOpened(sid) for sid in opened]

    def is_tunnel(self, stream_id: int) -> bool:
        stream = self._streams.get(stream_id)
        return stream is not None and stream.kind.tunnel

    # --- lifetime -------------------------------------------------------------------------------

    def head_deadline(self, timeout: float) -> float | None:
        """When the oldest unfinished request head runs out of `timeout` (clock time)."""
        return min(self._heads.values()) + timeout if self._heads else None

    def expire_heads(self, timeout: float) -> None:
        """Reset request streams whose head has taken longer than `timeout`, as TCP answers a
        slow head with 408 (RFC 9114 §8.1: H3_REQUEST_INCOMPLETE, the request never formed)."""
        now = self.clock()
        for sid, since in list(self._heads.items()):
            if now - since >= timeout:
                del self._heads[sid]
                self._abort(sid, H3Code.H3_REQUEST_INCOMPLETE)

    def go_away(self) -> None:
        """RFC 9114 §5.2: GOAWAY with the first request id we will not process; requests in
        flight finish, later ones are rejected (and the client retries them elsewhere)."""
        if self._closed or self._going_away:
            return
        self._going_away = True
        self._h3.send_goaway(self._highest_request + 4)

    def shutdown(self) -> None:
        """Close the QUIC connection with H3_NO_ERROR (after a GOAWAY, RFC 9114 §5.2)."""
        if self._closed:
            return
        self.go_away()
        self._closed = True
        self._quic.close(error_code=H3Code.H3_NO_ERROR, reason_phrase="shutting down")

    def release(self) -> None:
        """The connection is gone: nothing more is parsed or sent, and aioquic's parser state
        and QPACK decoder (with any blocked header blocks) are let go."""
        self._closed = True
        self._streams.clear()
        self._blocked.clear()
        self._heads.clear()
        self._h3.release()

    @property
    def stream_count(self) -> int:
        return len(self._streams)

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def idle(self) -> bool:
        return not self._streams


def h3_code(code: ErrorCode) -> int:
    """The HTTP/3 error code (RFC 9114 §8.1) a stream reset with `code` carries."""
    match code:
        case ErrorCode.CANCELLED:
            return H3Code.H3_REQUEST_CANCELLED
        case ErrorCode.OVERLOADED:
            return H3Code.H3_REQUEST_REJECTED
        case ErrorCode.BAD_REQUEST | ErrorCode.HEADERS_TOO_LARGE | ErrorCode.URI_TOO_LONG:
            return H3Code.H3_MESSAGE_ERROR
        case ErrorCode.REQUEST_TIMEOUT | ErrorCode.PAYLOAD_TOO_LARGE:
            return H3Code.H3_REQUEST_INCOMPLETE
        case (
            ErrorCode.UPSTREAM_UNREACHABLE
            | ErrorCode.UPSTREAM_TIMEOUT
            | ErrorCode.FORBIDDEN
            | ErrorCode.NOT_FOUND
            | ErrorCode.METHOD_NOT_ALLOWED
            | ErrorCode.UPGRADE_REQUIRED
            | ErrorCode.INTERNAL_ERROR
            | ErrorCode.NOT_IMPLEMENTED
            | ErrorCode.HTTP_VERSION_NOT_SUPPORTED
        ):
            return H3Code.H3_INTERNAL_ERROR
        case _:
            assert_never(code)


if TYPE_CHECKING:
    from .base import StreamProtocol

    def _implements(adapter: Http3Protocol) -> StreamProtocol:
        return adapter  # mypy checks that Http3Protocol is a StreamProtocol
