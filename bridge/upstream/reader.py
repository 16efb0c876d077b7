"""Sans-IO reader of upstream HTTP/1.1 answers, on llhttp (httptools), and the request writer.

`ResponseReader.feed(data)` parses what arrived and queues events; `next()` hands them out one
at a time (`NEED_DATA` when the queue is empty). Events are plain tuples, the cheapest thing
to make per body piece: (`HEAD`, status, reason, headers, version), (`INFO`, status, headers),
(`DATA`, bytes), (`END`,).

Like the server side, every lenient flag of llhttp is off. What llhttp cannot know is asked of
bridge: the request method (the answer to HEAD has no body, whatever its headers say), the end
of the connection (llhttp has no EOF entry in httptools, so a close-delimited body is ended
here), and the head-size bound (llhttp buffers nothing, but httptools joins a header field
from its pieces, so a head sent in drips is cut off at `settings.MAX_HEADER_BYTES`).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import httptools

from .. import settings
from ..events import Headers
from ..protocol import h1wire, httptoolsshim

HEAD, INFO, DATA, END = range(4)
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
NEED_DATA: tuple[Any, ...] = ()


class ResponseError(Exception):
    """The upstream's bytes are not a valid HTTP/1.1 answer (or it closed mid-answer)."""

    def __init__(self, detail: str, *, eof: bool = False) -> None:
        super().__init__(detail)
        self.eof = eof  # the connection closed before the answer's end


def _new_parser(callbacks: object) -> httptools.HttpResponseParser:
    return h1wire.strict(httptools.HttpResponseParser(callbacks))


class ResponseReader:
    __slots__ = (
        "_error",
        "_events",
        "_head_bytes",
        "_head_done",
        "_headers",
        "_no_body",
        "_parser",
        "_reason",
        "_until_close",
        "_upgrade_ok",
        "complete",
        "keep_alive",
        "rest",
        "stray",
        "switched",
    )

    def __init__(self) -> None:
        self._parser: httptools.HttpResponseParser | None = _new_parser(self)
        self._events: deque[tuple[Any, ...]] = deque()
        self.begin("GET")

    def begin(self, method: str, *, upgrade: bool = False) -> None:
        """Expect the answer to a `method` request; `upgrade`: a 101 may end the HTTP part
        (its head is a HEAD event, and the bytes after it are in `rest`)."""
        if getattr(self, "_no_body", False) or self._parser is None:
            # llhttp waits for the body a HEAD answer's headers announce: start afresh.
            self._parser = _new_parser(self)
        self._no_body = method == "HEAD"
        self._upgrade_ok = upgrade
        self.switched = False
        self.rest = b""
        self._events.clear()
        self._error: ResponseError | None = None
        self._start_head()
        self.complete = False  # the final answer has ended
        self.keep_alive = True
        self.stray = False  # bytes after the answer's end: the connection is not reusable

    def _start_head(self) -> None:
        self._head_done = False
        self._head_bytes = 0
        self._headers: Headers = []
        self._reason = b""
        self._until_close = False

    # --- llhttp callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.complete:
            self.stray = True
            raise ResponseError("bytes after the end of the answer")

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._head_done:
            return  # a trailer field: not forwarded
        headers = self._headers
        headers.append((name.lower(), value))
        if len(headers) > settings.UPSTREAM_MAX_HEADER_COUNT:
            raise ResponseError("too many header fields")

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None  # called from inside its feed_data
        status = parser.get_status_code()
        headers = self._headers
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise ResponseError(f"unsupported HTTP version {version}")
        if status == 101 and self._upgrade_ok:
            self.complete = self.switched = True
            self._events.append((HEAD, status, self._reason, headers, version))
            return
        if 100 <= status < 200:
            if status == 101:
                raise ResponseError("unexpected 101 Switching Protocols")
            self._events.append((INFO, status, headers))
            self._start_head()
            return
        self._head_done = True
        length = chunked = False
        for name, value in headers:
            if name == b"content-length":
                length = True
            elif name == b"transfer-encoding":
                # bridge re-frames the body it forwards, so it must be able to decode it:
                # any coding but one `chunked` is refused, as h11 did (RFC 9112 §6.1).
                if chunked or value.strip().lower() != b"chunked":
                    raise ResponseError("unsupported transfer coding")
                chunked = True
        if length and chunked:
            # RFC 9112 §6.3: "ought to be handled as an error" - a smuggling attempt.
            raise ResponseError("both Content-Length and Transfer-Encoding")
        self.keep_alive = bool(parser.should_keep_alive())
        bodiless = self._no_body or status in (204, 304)
        self._until_close = not (bodiless or length or chunked)
        if self._until_close:
            self.keep_alive = False
        self._events.append((HEAD, status, self._reason, headers, version))
        if self._no_body:
            self._end()

    def on_body(self, body: bytes) -> None:
        if self.complete:
            self.stray = True  # after a HEAD answer's head: llhttp took it for a body
            return
        self._events.append((DATA, body))

    def on_message_complete(self) -> None:
        if self._head_done and not self.complete:
            self._end()

    def _end(self) -> None:
        self.complete = True
        self._events.append((END,))

    def detach(self) -> None:
        """The connection is closed: drop the parser, which holds our bound callbacks (a
        reference cycle), so the connection is freed without the cycle collector."""
        self._parser = None
        self.stray = True

    # --- feeding -----------------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Parse `data`. A ResponseError is raised by `next()` once the events parsed before
        it (a head, good body pieces) have been handed out, in order."""
        if self.stray or self._error is not None or self._parser is None:
            return
        try:
            self._feed(data)
        except ResponseError as exc:
            self._error = exc

    def _feed(self, data: bytes) -> None:
        parser = self._parser
        assert parser is not None  # `feed` checked
        head_pending = not self._head_done
        if head_pending:
            self._head_bytes += len(data)
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            if not self.switched:
                raise ResponseError("unexpected upgrade") from None
            self.rest = bytes(data[httptoolsshim.upgrade_offset(exc) :])
        except httptools.HttpParserCallbackError as exc:
            cause = httptoolsshim.callback_error(exc)
            if self.stray:
                return
            if isinstance(cause, ResponseError):
                raise cause from None
            raise ResponseError("malformed answer") from None
        except httptools.HttpParserError as exc:
            if self.complete:
                self.stray = True
                return
            raise ResponseError(httptoolsshim.reason(exc) or "malformed answer") from None
        if head_pending and not self._head_done and self._head_bytes > settings.MAX_HEADER_BYTES:
            raise ResponseError("response head too large")

    def feed_eof(self) -> None:
        """The upstream closed: that ends a close-delimited body; anything else is cut short."""
        if self.complete or self._error is not None:
            return
        if self._head_done and self._until_close:
            self._end()
            return
        where = "body" if self._head_done else "head"
        raise ResponseError(
            f"upstream closed the connection in the middle of the {where}", eof=True
        )

    def next(self) -> tuple[Any, ...]:
        events = self._events
        if events:
            return events.popleft()
        if self._error is not None:
            raise self._error
        return NEED_DATA

    def take_whole_body(self) -> bytes | None:
        """The rest of the body if the answer's end is already parsed (then it is consumed),
        else None and nothing is consumed: an answer that came in one read is passed on
        whole, with no wait per piece."""
        events = self._events
        if not events or events[-1][0] != END:
            return None
        pieces = []
        for event in events:
            kind = event[0]
            if kind == DATA:
                pieces.append(event[1])
            elif kind != END:
                return None
        events.clear()
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    @property
    def has_events(self) -> bool:
        return bool(self._events)


def request_head(method: str, target: str, headers: Headers) -> bytes:
    """The request line and header block, joined once (ValueError for unsendable input)."""
    if not target or " " in target or not method or not set(method) <= _TCHAR:
        raise ValueError(f"cannot send {method} {target!r}")
    line = b"%s %s HTTP/1.1\r\n" % (method.encode("ascii"), target.encode("ascii"))
    return h1wire.head(line, headers)
