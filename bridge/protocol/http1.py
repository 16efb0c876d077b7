"""HTTP/1.1 server adapter: wire bytes <-> `bridge.events`, on llhttp (httptools), with no I/O.

llhttp (the parser Node.js uses) parses and validates; this module decides what it is fed.
It is fed exactly one message at a time: bridge finds the end of each head itself (the first
empty line), and the end of each body (Content-Length, or `ChunkedTracker` for chunked
bodies), so a pipelined request waits as raw bytes until the response to the current one is
complete, and is then parsed and checked like the first. Were llhttp and bridge ever to
disagree about where a message ends, the request is refused: a proxy must never guess at
framing (request smuggling).

None of llhttp's lenient flags is set (they are all off by default; `_new_parser` turns
them off explicitly so a changed default cannot turn one on). On top of llhttp's own checks
bridge refuses: obsolete line folding, duplicate Content-Length or Host, both
Content-Length and Transfer-Encoding, any transfer coding but `chunked` (501), chunk sizes
past 2**63 - 1, HTTP versions other than 1.0 and 1.1 (505), heads past the configured size
or field count (431), targets past `MAX_TARGET_BYTES` (414).

Responses are written here, not by a library: one status line and header block joined once
(`h1wire.head`), chunk framing when the handler gives no length.
"""

from __future__ import annotations

from enum import Enum

import httptools

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
    Headers,
    InformationalResponse,
    PushPromise,
    Request,
    Response,
    StreamClosed,
    StreamReset,
)
from . import h1wire, httptoolsshim
from .base import send_each

STREAM_ID = 1  # HTTP/1.1 has one stream at a time; it always carries this id.
# RFC 9110 §5.6.2 tchar: a request line starts with a method token (CR/LF tolerated before it).
_TOKEN_START = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\r\n"
)

chunk = h1wire.chunk  # one HTTP/1.1 chunk (RFC 9112 §7.1)
# A chunk is the same bytes on every connection: the hub frames each event once for all.
CHUNKED = framing.register("http/1.1 chunk", chunk)


class _Phase(Enum):
    """Where the current request is (any bytes after it are a pipelined request, held raw)."""

    HEAD = "head awaited"
    BODY = "body arriving"
    DONE = "all in, its response being sent"


class _BodyFraming(Enum):
    """How the response body is framed on the wire."""

    NONE = "no body"  # 1xx, 204, 304, HEAD: whatever the headers say
    LENGTH = "content-length"
    CHUNKED = "chunked"
    UNTIL_CLOSE = "until the connection closes"  # HTTP/1.0 without a length


class _Refused(Exception):
    def __init__(self, code: ErrorCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _new_parser(callbacks: object) -> httptools.HttpRequestParser:
    return h1wire.strict(httptools.HttpRequestParser(callbacks))


class _Message:
    """What llhttp's callbacks collect about the current request.

    A separate object, not the adapter, so that the parser (which keeps the bound callbacks)
    and the adapter form no reference cycle: a closed connection is freed at once, without
    waiting for the cycle collector (bridge raises its thresholds).
    """

    __slots__ = (
        "codings",
        "complete",
        "conn_tokens",
        "events",
        "head_done",
        "headers",
        "host",
        "hosts",
        "length",
        "lengths",
        "target",
    )

    def __init__(self) -> None:
        self.events: list[Event] = []  # filled during a feed
        self.reset()

    def reset(self) -> None:
        self.target = b""
        self.headers: Headers = []
        self.host: bytes | None = None
        self.hosts = 0
        self.lengths = 0
        self.length = 0
        self.codings: list[bytes] = []
        self.conn_tokens = b""
        self.head_done = False
        self.complete = False  # llhttp's on_message_complete

    def on_url(self, url: bytes) -> None:
        self.target += url
        if len(self.target) > settings.MAX_TARGET_BYTES:
            raise _Refused(ErrorCode.URI_TOO_LONG, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:
            return  # a trailer field: parsed (and bounded) but not forwarded
        name = name.lower()
        headers = self.headers
        headers.append((name, value))
        if len(headers) > settings.MAX_HEADER_COUNT:
            raise _Refused(ErrorCode.HEADERS_TOO_LARGE, "too many header fields")
        if name == b"host":
            self.hosts += 1
            self.host = value
        elif name == b"content-length":
            self.lengths += 1
            self.length = int(value) if value.isdigit() else -1
        elif name == b"transfer-encoding":
            self.codings.append(value)
        elif name == b"connection":
            self.conn_tokens += b"," + value.lower()

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.events.append(Body(STREAM_ID, body))

    def on_message_complete(self) -> None:
        self.complete = True


class Http1Protocol:
    """Sans-IO HTTP/1.1 server connection."""

    __slots__ = (
        "_body_expected",
        "_body_left",
        "_buf",
        "_chunked",
        "_closed",
        "_events",
        "_framing",
        "_keep_alive",
        "_left",
        "_method",
        "_msg",
        "_must_close",
        "_out",
        "_overflow",
        "_parser",
        "_phase",
        "_response_started",
        "_scanned",
        "_tunnel",
        "_upgrade",
        "_version",
        "max_header_bytes",
        "requests",
        "scheme",
    )

    http_version = "1.1"
    multiplexed = False

    def __init__(self, *, scheme: str, max_header_bytes: int = settings.MAX_HEADER_BYTES) -> None:
        self.scheme = scheme
        self.max_header_bytes = max_header_bytes
        self._msg = _Message()
        self._parser = _new_parser(self._msg)
        self._buf = bytearray()  # received, not yet fed to llhttp
        self._scanned = 0  # how much of `_buf` is known not to hold a head's end
        self._phase = _Phase.HEAD
        self._out: list[bytes] = []
        self._events: list[Event] = []  # this feed's events (`_msg.events` is the same list)
        self._closed = False
        self._tunnel = False  # after a 101: bytes are Data, not HTTP
        self._overflow = False  # too many pipelined bytes: discarding, closing after this one
        self.requests = 0
        self._reset_request()
        self._reset_response()

    def _reset_request(self) -> None:
        self._msg.reset()
        self._version = ""
        self._method = ""
        self._left = 0  # Content-Length bytes still to come
        self._chunked: h1wire.ChunkedTracker | None = None
        self._upgrade = False
        self._keep_alive = True
        self._body_expected = False

    def _reset_response(self) -> None:
        self._response_started = False
        self._framing = _BodyFraming.NONE
        self._body_left = 0
        self._must_close = False

    def _check_head(self, upgrade: bool) -> None:
        """After llhttp has read a whole head: the checks bridge adds (see the docstring)."""
        m = self._msg
        parser = self._parser
        version = parser.get_http_version()
        if version == "0.9":
            raise _Refused(ErrorCode.BAD_REQUEST, "request line without an HTTP version")
        if version not in ("1.1", "1.0"):
            raise _Refused(ErrorCode.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.0 and HTTP/1.1 here")
        self._version = version
        self._method = parser.get_method().decode("ascii")
        # RFC 9112 §6.3: a message with both is a smuggling shape; a proxy rejects, not guesses.
        if m.codings and m.lengths:
            raise _Refused(ErrorCode.BAD_REQUEST, "both Content-Length and Transfer-Encoding")
        if m.lengths > 1 or m.length < 0:
            raise _Refused(ErrorCode.BAD_REQUEST, "duplicate Content-Length")
        if m.codings:
            # RFC 9112 §6.1: bridge re-frames bodies, so it can only forward one it decodes.
            if len(m.codings) > 1 or m.codings[0].strip().lower() != b"chunked":
                raise _Refused(ErrorCode.NOT_IMPLEMENTED, "unsupported transfer coding")
            self._chunked = h1wire.ChunkedTracker()
        if m.hosts > 1:
            raise _Refused(ErrorCode.BAD_REQUEST, "duplicate Host")
        if version == "1.1" and not m.hosts:
            # RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without Host.
            raise _Refused(ErrorCode.BAD_REQUEST, "missing Host header")
        tokens = m.conn_tokens
        self._keep_alive = version == "1.1" and not (
            tokens and any(t.strip() == b"close" for t in tokens.split(b","))
        )
        self._upgrade = upgrade
        self._body_expected = self._chunked is not None or m.length > 0
        if upgrade and self._body_expected:
            raise _Refused(ErrorCode.BAD_REQUEST, "an upgrade request with a body")
        self._left = m.length

    # --- receiving ----------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        if self._closed:
            return []
        if self._tunnel:
            return [Data(STREAM_ID, data)] if data else [EndData(STREAM_ID)]
        if not data:
            return self._eof()
        if self._overflow:
            return []  # the connection closes after the current response
        if (
            self._phase is _Phase.HEAD
            and not self._buf
            and len(data) <= self.max_header_bytes
            and _one_whole_head(data)
        ):
            return self._advance(data)  # the common case, without copying into the buffer
        self._buf += data
        if self._phase is _Phase.DONE:
            # A pipelined request: it waits until the response is complete, within a bound.
            if len(self._buf) > settings.MAX_PIPELINED_BYTES:
                self._overflow = self._must_close = True
                self._buf = bytearray()
            return []
        return self._advance()

    def _eof(self) -> list[Event]:
        self._closed = True
        events: list[Event] = []
        if self._phase is not _Phase.HEAD or self._response_started:
            events.append(StreamClosed(STREAM_ID))
        events.append(ConnectionClosed("peer closed"))
        return events

    def _advance(self, head: bytes | None = None) -> list[Event]:
        """Feed llhttp what belongs to the current request (`head`: a whole head that
        arrived alone, nothing buffered); its events."""
        events = self._events = self._msg.events = []
        try:
            if head is not None:
                self._parse_head(head)
            elif self._phase is _Phase.HEAD and not self._take_head():
                return events
            if self._phase is _Phase.BODY:
                self._take_body()
        except _Refused as exc:
            return [*events, *self._fail(exc.code, exc.detail)]
        except httptools.HttpParserCallbackError as exc:
            cause = httptoolsshim.callback_error(exc)
            if isinstance(cause, _Refused):
                return [*events, *self._fail(cause.code, cause.detail)]
            return [*events, *self._fail(ErrorCode.BAD_REQUEST, "malformed request")]
        except httptools.HttpParserError as exc:
            return [*events, *self._fail(*_llhttp_error(exc))]
        return events

    def _take_head(self) -> bool:
        buf = self._buf
        if buf[:1] in (b"\r", b"\n"):
            # RFC 9112 §2.2: empty lines before a request line are ignored (some clients
            # send a CRLF after a body); dropped here, so a flood of them costs no memory.
            kept = len(buf.lstrip(b"\r\n"))
            del buf[: len(buf) - kept]
            self._scanned = 0
        if not buf:
            return False
        if buf[0] not in _TOKEN_START:
            # e.g. a TLS ClientHello on the clear-text port: no point waiting for a head.
            raise _Refused(ErrorCode.BAD_REQUEST, "not an HTTP/1.x request")
        # The head ends at the first empty line; only the new bytes, and the two before
        # them, can complete one. A bare-LF ending is found too so that llhttp, which
        # wants CRLF, refuses it now rather than at the header timeout.
        start = max(0, self._scanned - 2)
        crlf = buf.find(b"\n\r\n", start)
        bare = buf.find(b"\n\n", start)
        if crlf < 0 and bare < 0:
            if len(buf) > self.max_header_bytes:
                raise _Refused(ErrorCode.HEADERS_TOO_LARGE, "request head too large")
            self._scanned = len(buf)
            return False
        end = crlf + 3 if bare < 0 or 0 <= crlf < bare else bare + 2
        if end > self.max_header_bytes:
            raise _Refused(ErrorCode.HEADERS_TOO_LARGE, "request head too large")
        self._scanned = 0
        if len(buf) == end:
            head = bytes(buf)
            buf.clear()
        else:
            head = bytes(buf[:end])
            del buf[:end]
        self._parse_head(head)
        return True

    def _parse_head(self, head: bytes) -> None:
        if b"\n " in head or b"\n\t" in head:
            # RFC 9112 §5.2: a server may reject obs-fold; a proxy must, so that two
            # parsers can never disagree about a header.
            raise _Refused(ErrorCode.BAD_REQUEST, "obsolete line folding is not allowed")
        # RFC 9112 §3: method SP target SP version. llhttp accepts runs of spaces; a
        # proxy that forwards the target must not (the next parser may split differently).
        if head.count(b" ", 0, head.find(b"\n")) != 2:
            raise _Refused(ErrorCode.BAD_REQUEST, "malformed request line")
        self._reset_request()
        msg = self._msg
        upgrade = False
        try:
            self._parser.feed_data(head)
        except httptools.HttpParserUpgrade:
            upgrade = True
        if not msg.head_done:  # llhttp did not see the head end where bridge did
            raise _Refused(ErrorCode.BAD_REQUEST, "malformed request head")
        self._check_head(upgrade)
        if upgrade:
            # llhttp stops after the head of an Upgrade or CONNECT request; bytes after it
            # are the new protocol's if the handler accepts (101), or the next request's.
            self._parser = _new_parser(msg)
            msg.complete = True
        self.requests += 1
        self._reset_response()
        self._events.append(self._request())
        if msg.complete:
            self._finish_request()
        else:
            self._phase = _Phase.BODY

    def _take_body(self) -> None:
        buf = self._buf
        if not buf:
            return
        tracker = self._chunked
        if tracker is None:
            size = min(self._left, len(buf))
            self._left -= size
        else:
            try:
                size = tracker.scan(buf, self.max_header_bytes)
            except ValueError as exc:
                # What came before the bad line is still a good part of the body.
                self._feed(bytes(buf[: buf.rfind(b"\n", 0, tracker.failed_at) + 1]))
                raise _Refused(ErrorCode.BAD_REQUEST, str(exc)) from None
        if size == len(buf):
            part = bytes(buf)
            buf.clear()
        else:
            part = bytes(buf[:size])
            del buf[:size]
        self._feed(part)
        ended = tracker.done if tracker is not None else not self._left
        if ended != self._msg.complete:
            raise _Refused(ErrorCode.BAD_REQUEST, "malformed request body")
        if ended:
            self._finish_request()

    def _feed(self, data: bytes) -> None:
        if data:
            self._parser.feed_data(data)

    def _finish_request(self) -> None:
        self._phase = _Phase.DONE
        self._events.append(EndBody(STREAM_ID))

    def _request(self) -> Request:
        msg = self._msg
        target = msg.target.decode("latin-1")
        host = msg.host
        authority = host.decode("latin-1") if host is not None else ""
        headers = msg.headers
        if target[:1] != "/" and "://" in target[:8]:
            target, authority = _absolute_form(target)
            # RFC 9112 §3.2.2: the target's authority replaces Host, which is rewritten so
            # that nothing downstream sees two different hosts.
            headers = [(n, v) for n, v in headers if n != b"host"]
            headers.insert(0, (b"host", authority.encode("latin-1")))
        return Request(
            stream_id=STREAM_ID,
            method=self._method,
            target=target,
            authority=authority,
            scheme=self.scheme,
            headers=headers,
            http_version=self._version,
        )

    def _fail(self, code: ErrorCode, detail: str) -> list[Event]:
        """Answer a request we cannot parse, then close: the stream position is lost."""
        if not self._response_started:
            body = error_body(code, detail)
            headers = [*error_headers(body), (b"connection", b"close")]
            self._out.append(h1wire.head(h1wire.status_line(code.status), headers) + body)
            self._response_started = True
        self._closed = True
        return [StreamClosed(STREAM_ID), ConnectionClosed(f"{code.status} {detail}")]

    # --- sending --------------------------------------------------------------------------------

    def send_all(self, events: list[Event]) -> list[Event]:
        return send_each(self.send, events)

    def send(self, event: Event) -> list[Event]:
        """Queue an event's bytes; returns follow-up events (e.g. the next pipelined request)."""
        if self._closed and not isinstance(event, StreamReset):
            return []
        try:
            return self._send(event)
        except h1wire.HeadError as exc:
            # A handler bug must not become a corrupt byte stream: close instead.
            return self._local_error(str(exc))

    def _local_error(self, detail: str) -> list[Event]:
        self._closed = True
        return [StreamClosed(STREAM_ID), ConnectionClosed(f"local protocol error: {detail}")]

    def _send(self, event: Event) -> list[Event]:
        if isinstance(event, Body):
            data = event.data
            framing = self._framing
            if not self._response_started:
                return self._local_error("body before the response head")
            if not data or framing is _BodyFraming.NONE:
                return []
            if framing is _BodyFraming.CHUNKED:
                self._out.append(h1wire.chunk(data))
            elif framing is _BodyFraming.LENGTH:
                if len(data) > self._body_left:
                    return self._local_error("more body than its Content-Length")
                self._body_left -= len(data)
                self._out.append(data)
            else:
                self._out.append(data)
            return []
        if isinstance(event, Response):
            return self._send_head(event)
        if isinstance(event, EndBody):
            if not self._response_started:
                return self._local_error("end of body before the response head")
            if self._framing is _BodyFraming.CHUNKED:
                self._out.append(h1wire.LAST_CHUNK)
            elif self._framing is _BodyFraming.LENGTH and self._body_left:
                return self._local_error("less body than its Content-Length")
            return self._cycle()
        if isinstance(event, Data):
            if event.data:
                self._out.append(event.data)
            return []
        if isinstance(event, InformationalResponse):
            # RFC 8297 §2 / RFC 9110 §15.2: no 1xx to an HTTP/1.0 client.
            if (
                self._version != "1.0"
                and self._phase is not _Phase.HEAD
                and not self._response_started
            ):
                line = h1wire.status_line(event.status)
                self._out.append(h1wire.head(line, event.headers))
            return []
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

    def _send_head(self, event: Response) -> list[Event]:
        if self._response_started or self._phase is _Phase.HEAD:
            return self._local_error("a second response head")
        status = event.status
        self._response_started = True
        if status == 101:
            if not self._upgrade or self._phase is not _Phase.DONE:
                return self._local_error("101 to a request that asked for no upgrade")
            self._out.append(h1wire.head(h1wire.status_line(101), event.headers))
            self._tunnel = True
            rest = bytes(self._buf)
            self._buf.clear()
            return [Data(STREAM_ID, rest)] if rest else []
        headers = event.headers
        extra: Headers = []
        framing = _BodyFraming.CHUNKED
        length = -1
        chunked = False
        for name, value in headers:
            if name == b"content-length":
                length = int(value) if value.isdigit() else -1
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                self._must_close = True
        if status < 200 or status in (204, 304) or self._method == "HEAD":
            framing = _BodyFraming.NONE  # RFC 9112 §6.3: no body, whatever the headers say
        elif chunked:
            framing = _BodyFraming.CHUNKED if self._version == "1.1" else _BodyFraming.UNTIL_CLOSE
        elif length >= 0:
            framing = _BodyFraming.LENGTH
            self._body_left = length
        elif self._version == "1.1":
            extra.append((b"transfer-encoding", b"chunked"))
        else:
            framing = _BodyFraming.UNTIL_CLOSE  # HTTP/1.0: the body ends when the connection does
        if chunked and framing is _BodyFraming.UNTIL_CLOSE:
            headers = [(n, v) for n, v in headers if n != b"transfer-encoding"]
        self._framing = framing
        if self._phase is _Phase.BODY:
            # Answered before the request body is in: the connection will likely close with
            # it unread (`_cycle`), and RFC 9112 §9.6 wants the client told, or it sends its
            # next request down a connection that is going away.
            self._must_close = True
        if framing is _BodyFraming.UNTIL_CLOSE or not self._keep_alive:
            self._must_close = True
        if self._must_close and not any(n == b"connection" for n, _ in headers):
            extra.append((b"connection", b"close"))
        self._out.append(h1wire.head(h1wire.status_line(status), headers, extra))
        return []

    def _cycle(self) -> list[Event]:
        if self._must_close:
            self._closed = True
            return [StreamClosed(STREAM_ID), ConnectionClosed("not keep-alive")]
        if self._phase is _Phase.DONE:
            self._phase = _Phase.HEAD
            self._reset_response()
            if not self._buf:
                return [StreamClosed(STREAM_ID)]
            return [StreamClosed(STREAM_ID), *self._advance()]  # a pipelined request
        # The response is done but the request body is not: RFC 9112 §9.3 lets us close.
        self._closed = True
        return [StreamClosed(STREAM_ID), ConnectionClosed("request body not read")]

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    # --- state the server layer asks about ------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def idle(self) -> bool:
        """No request in progress: the keep-alive timer may run."""
        return self._phase is _Phase.HEAD and not self._response_started

    @property
    def peer_sending(self) -> bool:
        """The client is (or may still be) sending a request body nobody will read."""
        return (self._body_expected and self._phase is _Phase.BODY) or self._overflow

    @property
    def head_started(self) -> bool:
        return self._phase is _Phase.HEAD and bool(self._buf)

    def is_tunnel(self, stream_id: int) -> bool:
        return self._tunnel

    def body_framing(self, stream_id: int) -> framing.Framing:
        """Pre-rendered bytes are a body of unknown length: chunks for an HTTP/1.1 client, as
        they are (the connection's close ends them) for HTTP/1.0, raw in a tunnel."""
        if self._tunnel or self._version != "1.1":
            return framing.UNFRAMED
        return CHUNKED

    def frame_prerendered(self, stream_id: int, data: bytes, *, framed: bool = False) -> bytes:
        """The bytes go straight out (the adapter frames only heads and the last chunk); a
        response head still queued goes first, in the same write."""
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


def _one_whole_head(data: bytes) -> bool:
    """`data` is exactly one request head, ending in its (first) empty line, with no bare-LF
    line end and no leading empty line: it can go to llhttp as it is."""
    end = len(data) - 3
    return (
        end > 0
        and data[0] in _TOKEN_START
        and data[0] not in (13, 10)
        and data.find(b"\n\r\n") == end
        and data[-4] == 13
        and b"\n\n" not in data
    )


def _absolute_form(target: str) -> tuple[str, str]:
    """`http://host:port/path?q` -> ("/path?q", "host:port"), RFC 9112 §3.2.2."""
    scheme, _, rest = target.partition("://")
    if scheme.lower() not in ("http", "https"):
        raise _Refused(ErrorCode.BAD_REQUEST, "absolute-form target with an unknown scheme")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, path = rest[:cut], rest[cut:]
    # RFC 9110 §4.2.4: userinfo is deprecated and a recipient should treat it as an error.
    if not authority or "@" in authority:
        raise _Refused(ErrorCode.BAD_REQUEST, "absolute-form target without a valid host")
    if not path.startswith("/"):
        path = "/" + path  # RFC 9112 §3.2.2: an empty path is "/"
    return path, authority


def _llhttp_error(exc: httptools.HttpParserError) -> tuple[ErrorCode, str]:
    if httptoolsshim.is_bad_version(exc):
        return ErrorCode.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.0 and HTTP/1.1 here"
    if httptoolsshim.is_bad_transfer_encoding(exc):
        return ErrorCode.NOT_IMPLEMENTED, "unsupported transfer coding"
    if httptoolsshim.is_obs_fold(exc):
        return ErrorCode.BAD_REQUEST, "obsolete line folding is not allowed"
    return ErrorCode.BAD_REQUEST, httptoolsshim.reason(exc) or "malformed request"
