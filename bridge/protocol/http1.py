"""HTTP/1.1 server adapter: wire bytes <-> `bridge.events`, on h11, with no I/O.

One request at a time: h11 keeps pipelined requests in its buffer until the response to the
current one is complete (`start_next_cycle`), so pipelined requests are answered in order.
h11 is lenient in a few places a proxy must not be (request smuggling shapes, obsolete line
folding), so those checks are made here before a request is handed on.
"""

from __future__ import annotations

from http import HTTPStatus

import h11

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
)

STREAM_ID = 1
# RFC 9110 §5.6.2 tchar: a request line starts with a method token (CR/LF tolerated before it).
_TOKEN_START = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\r\n"
)  # HTTP/1.1 has one stream at a time; it always carries this id.


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk (RFC 9112 §7.1): size in hex, CRLF, the bytes, CRLF."""
    return b"%x\r\n%s\r\n" % (len(data), data)


# A chunk is the same bytes on every connection: the hub frames each event once for all.
CHUNKED = framing.register("http/1.1 chunk", chunk)


class Http1Protocol:
    """Sans-IO HTTP/1.1 server connection."""

    http_version = "1.1"
    multiplexed = False

    def __init__(self, *, scheme: str, max_header_bytes: int = settings.MAX_HEADER_BYTES) -> None:
        self.scheme = scheme
        self.max_header_bytes = max_header_bytes
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        self._out: list[bytes] = []
        self._head_checked = False
        # A copy of the unchecked head's bytes, scanned only where new bytes arrived: asking
        # h11 for `trailing_data` copies its whole buffer, quadratic for a head sent in drips.
        self._head = bytearray()
        self._scanned = 0
        self._eof = False
        self._response_started = False
        self._tunnel = False  # after a 101: bytes are Data, not HTTP
        self._closed = False
        self._body_expected = False  # the current request announced a body
        self.requests = 0

    # --- receiving ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        if self._closed:
            return []
        if self._tunnel:
            return [Data(STREAM_ID, data)] if data else [EndData(STREAM_ID)]
        self._conn.receive_data(data)
        if not data:
            self._eof = True
        elif not self._head_checked:
            self._head += data
        return self._next_events()

    def _next_events(self) -> list[Event]:
        events: list[Event] = []
        conn = self._conn
        while True:
            if conn.their_state is h11.IDLE and not self._head_checked:
                problem = self._check_head()
                if problem is None:
                    break  # the head is not complete yet
                if isinstance(problem, tuple):
                    return events + self._fail(*problem)
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                code = _CODES.get(status, ErrorCode.BAD_REQUEST)
                return events + self._fail(code, str(exc))
            if event is h11.NEED_DATA or event is h11.PAUSED:
                if conn.their_state is h11.SEND_BODY and self._chunk_too_large():
                    return events + self._fail(ErrorCode.BAD_REQUEST, "bad chunk size")
                break
            if isinstance(event, h11.Request):
                self._body_expected = any(
                    n == b"transfer-encoding" or (n == b"content-length" and v.strip(b"0 "))
                    for n, v in event.headers
                )
                problem = self._validate(event)
                if problem is not None:
                    return events + self._fail(*problem)
                events.append(self._request(event))
            elif isinstance(event, h11.Data):
                if event.chunk_start and self._chunk_too_large():
                    return events + self._fail(ErrorCode.BAD_REQUEST, "bad chunk size")
                events.append(Body(STREAM_ID, bytes(event.data)))
            elif isinstance(event, h11.EndOfMessage):
                events.append(EndBody(STREAM_ID))
            elif isinstance(event, h11.ConnectionClosed):
                # Only a request awaiting (the rest of) its response is a stream to close;
                # between requests h11 moves our side from IDLE to MUST_CLOSE.
                if conn.our_state in (h11.SEND_RESPONSE, h11.SEND_BODY) or self._response_started:
                    events.append(StreamClosed(STREAM_ID))
                events.append(ConnectionClosed("peer closed"))
                self._closed = True
                break
        return events

    def _check_head(self) -> tuple[ErrorCode, str] | bool | None:
        """Look at the raw head h11 is about to parse; True when fine, None when incomplete.

        h11 silently unfolds obsolete line folding, which RFC 9112 §5.2 lets a server reject
        and which proxies must reject so two parsers can never disagree about a header.
        """
        buffered = self._head
        if buffered and buffered[0] not in _TOKEN_START:
            # e.g. a TLS ClientHello on the clear-text port: no point waiting for a head.
            return (ErrorCode.BAD_REQUEST, "not an HTTP/1.x request")
        # The head ends at the first empty line (CRLF or bare LF); only the new bytes, and the
        # two before them, can complete one.
        start = max(0, self._scanned - 2)
        ends = [
            i for i in (buffered.find(b"\n\r\n", start), buffered.find(b"\n\n", start)) if i >= 0
        ]
        end = min(ends) if ends else -1
        self._scanned = len(buffered)
        if end < 0 or end > self.max_header_bytes:
            if len(buffered) > self.max_header_bytes:
                return (ErrorCode.HEADERS_TOO_LARGE, "request head too large")
            # At EOF no head will complete: let h11 report a clean close or a truncated head.
            return True if self._eof else None
        head = bytes(buffered[:end])
        self._head_checked = True
        self._head = bytearray()
        if b"\n " in head or b"\n\t" in head:
            return (ErrorCode.BAD_REQUEST, "obsolete line folding is not allowed")
        # h11 merges identical duplicates (as lines or as a `3, 3` list); a proxy refuses any
        # duplicate (smuggling shape).
        lengths = [ln for ln in head.lower().split(b"\n") if ln.startswith(b"content-length:")]
        if len(lengths) > 1 or any(b"," in ln for ln in lengths):
            return (ErrorCode.BAD_REQUEST, "duplicate Content-Length")
        return True

    def _chunk_too_large(self) -> bool:
        """Does the chunk h11 is reading announce more than a signed 64-bit size?

        h11 takes up to 20 hex digits; a size past 2**63 - 1 is what parsers that disagree
        about overflow are smuggled through, and nginx refuses it too. h11 keeps the rest of
        the current chunk privately; should that change, this check reads 0 and does nothing.
        """
        reader = getattr(self._conn, "_reader", None)
        return getattr(reader, "_bytes_in_chunk", 0) > _MAX_CHUNK_SIZE

    def _validate(self, event: h11.Request) -> tuple[ErrorCode, str] | None:
        if event.http_version not in (b"1.1", b"1.0"):
            return (ErrorCode.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.0 and HTTP/1.1 here")
        if len(event.headers) > settings.MAX_HEADER_COUNT:
            return (ErrorCode.HEADERS_TOO_LARGE, "too many header fields")
        lengths = 0
        chunked = False
        hosts = 0
        for name, _ in event.headers:
            if name == b"content-length":
                lengths += 1
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"host":
                hosts += 1
        # RFC 9112 §6.3: a message with both is a smuggling shape; a proxy rejects, not guesses.
        if chunked and lengths:
            return (ErrorCode.BAD_REQUEST, "both Content-Length and Transfer-Encoding")
        if lengths > 1:
            return (ErrorCode.BAD_REQUEST, "duplicate Content-Length")
        if hosts > 1:
            return (ErrorCode.BAD_REQUEST, "duplicate Host")
        if len(event.target) > settings.MAX_TARGET_BYTES:
            return (ErrorCode.URI_TOO_LONG, "request target too long")
        return None

    def _request(self, event: h11.Request) -> Request:
        self.requests += 1
        self._response_started = False
        authority = ""
        headers = []
        for name, value in event.headers:
            if name == b"host":
                authority = value.decode("latin-1")
            headers.append((bytes(name), bytes(value)))
        return Request(
            stream_id=STREAM_ID,
            method=event.method.decode("ascii"),
            target=event.target.decode("latin-1"),
            authority=authority,
            scheme=self.scheme,
            headers=headers,
            http_version=event.http_version.decode("ascii"),
        )

    def _fail(self, code: ErrorCode, detail: str) -> list[Event]:
        """Answer a request we cannot parse, then close: the stream position is lost."""
        if self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE) and not self._response_started:
            body = error_body(code, detail)
            headers = [*error_headers(body), (b"connection", b"close")]
            self._emit(
                h11.Response(status_code=code.status, headers=headers, reason=_reason(code.status))
            )
            self._emit(h11.Data(data=body))
            self._emit(h11.EndOfMessage())
        self._closed = True
        return [StreamClosed(STREAM_ID), ConnectionClosed(f"{code.status} {detail}")]

    # --- sending --------------------------------------------------------------------------------

    def send(self, event: Event) -> list[Event]:
        """Queue an event's bytes; returns follow-up events (e.g. the next pipelined request)."""
        if self._closed and not isinstance(event, StreamReset):
            return []
        try:
            return self._send(event)
        except h11.LocalProtocolError as exc:
            # A handler bug must not become a corrupt byte stream: close instead.
            self._closed = True
            return [StreamClosed(STREAM_ID), ConnectionClosed(f"local protocol error: {exc}")]

    def _send(self, event: Event) -> list[Event]:
        conn = self._conn
        if isinstance(event, Body):
            if event.data:
                self._emit(h11.Data(data=event.data))
            return []
        if isinstance(event, Data):
            if event.data:
                self._out.append(event.data)
            return []
        if isinstance(event, Response):
            self._response_started = True
            if event.status == 101:
                self._emit(h11.InformationalResponse(status_code=101, headers=event.headers))
                self._tunnel = True
                rest, _ = conn.trailing_data
                return [Data(STREAM_ID, rest)] if rest else []
            headers = event.headers
            if conn.their_state is h11.SEND_BODY:
                # Answered before the request body is in: the connection will likely close
                # with it unread (`_cycle`), and RFC 9112 §9.6 wants the client told, or it
                # sends its next request down a connection that is going away.
                headers = [*headers, (b"connection", b"close")]
            self._emit(
                h11.Response(
                    status_code=event.status, headers=headers, reason=_reason(event.status)
                )
            )
            return []
        if isinstance(event, InformationalResponse):
            # RFC 8297 §2 / RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
            if conn.their_http_version != b"1.0":
                self._emit(
                    h11.InformationalResponse(status_code=event.status, headers=event.headers)
                )
            return []
        if isinstance(event, EndBody):
            self._emit(h11.EndOfMessage())
            return self._cycle()
        if isinstance(event, EndData):
            self._closed = True
            return [StreamClosed(STREAM_ID), ConnectionClosed("tunnel closed")]
        if isinstance(event, StreamReset):
            # CANCELLED means the client went away (errors.py): nothing is sent, not a 499.
            cancelled = event.code is ErrorCode.CANCELLED
            if not self._response_started and not self._closed and not cancelled:
                return self._fail(event.code, event.code.reason)
            # After the head, HTTP/1.1's only way to say "broken" is to close the connection.
            self._closed = True
            return [StreamClosed(STREAM_ID), ConnectionClosed(f"reset: {event.code.name}")]
        if isinstance(event, PushPromise):
            return []  # no push in HTTP/1.1; the Link header and 103 still work
        raise TypeError(f"cannot send {event!r} over HTTP/1.1")

    def _cycle(self) -> list[Event]:
        conn = self._conn
        if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
            self._closed = True
            return [StreamClosed(STREAM_ID), ConnectionClosed("not keep-alive")]
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self._head_checked = False
            self._head = bytearray(conn.trailing_data[0])  # a pipelined request's first bytes
            self._scanned = 0
            self._response_started = False
            return [StreamClosed(STREAM_ID), *self._next_events()]
        # The response is done but the request body is not: RFC 9112 §9.3 lets us close.
        if conn.our_state is h11.DONE:
            self._closed = True
            return [StreamClosed(STREAM_ID), ConnectionClosed("request body not read")]
        return []

    def _emit(self, event: h11.Event) -> None:
        data = self._conn.send(event)
        if data:
            self._out.append(data)

    def data_to_send(self) -> bytes:
        if not self._out:
            return b""
        out = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        return out

    # --- state the server layer asks about ------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def idle(self) -> bool:
        """No request in progress: the keep-alive timer may run."""
        return self._conn.their_state is h11.IDLE and self._conn.our_state is h11.IDLE

    @property
    def peer_sending(self) -> bool:
        """The client is (or may still be) sending a request body nobody will read."""
        return self._body_expected and self._conn.their_state is h11.SEND_BODY

    @property
    def head_started(self) -> bool:
        return bool(self._conn.trailing_data[0])

    def is_tunnel(self, stream_id: int) -> bool:
        return self._tunnel

    def body_framing(self, stream_id: int) -> framing.Framing:
        """Pre-rendered bytes are a body of unknown length: chunks for an HTTP/1.1 client, as
        they are (the connection's close ends them) for HTTP/1.0, raw in a tunnel."""
        if self._tunnel or self._conn.their_http_version != b"1.1":
            return framing.UNFRAMED
        return CHUNKED

    def frame_prerendered(self, stream_id: int, data: bytes, *, framed: bool = False) -> bytes:
        """The bytes bypass h11 (it only frames the head and the last chunk); a response head
        still queued goes first, in the same write."""
        if not framed:
            data = self.body_framing(stream_id).frame(data)
        if self._out:
            return self.data_to_send() + data
        return data

    def can_push(self) -> bool:
        return False  # no push in HTTP/1.1; the Link header and 103 still work

    @property
    def stream_count(self) -> int:
        return 0 if self.idle else 1

    def shutdown(self) -> None:
        """Nothing to announce: HTTP/1.1 says goodbye by closing (`Connection: close`)."""

    def pending(self, stream_id: int) -> int:
        return 0

    def send_window(self, stream_id: int) -> int:
        return 1 << 30  # TCP's own backpressure is the only flow control here

    def acknowledge(self, stream_id: int, size: int) -> None:
        """Flow-control credit for consumed body bytes: nothing to do on HTTP/1.1."""


# RFC 9112 §7.1 sets no bound; this is the largest size a signed 64-bit parser can hold.
_MAX_CHUNK_SIZE = 2**63 - 1

_CODES = {
    400: ErrorCode.BAD_REQUEST,
    414: ErrorCode.URI_TOO_LONG,
    431: ErrorCode.HEADERS_TOO_LARGE,
    501: ErrorCode.NOT_IMPLEMENTED,
    505: ErrorCode.HTTP_VERSION_NOT_SUPPORTED,
}


_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}


def _reason(status: int) -> bytes:
    return _REASONS.get(status, b"")
