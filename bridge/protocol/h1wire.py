"""HTTP/1.1 bytes bridge writes itself: message heads, chunk framing, a chunked-body tracker.

Parsing is llhttp's (httptools); writing is simple enough to do directly, and doing it here
means one `b"".join` per head instead of a state machine's validation and copies. The one
check writing cannot skip is header injection: a CR or LF inside a name or value would let
one header become two (or end the head), so every head is checked, once, after the join.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import TypeVar

import httptools

from ..events import Headers

_Parser = TypeVar("_Parser", httptools.HttpRequestParser, httptools.HttpResponseParser)

# RFC 9112 §7.1 sets no bound; this is the largest size a signed 64-bit parser can hold, and
# a size past it is what parsers that disagree about overflow are smuggled through (nginx
# refuses it too).
MAX_CHUNK_SIZE = 2**63 - 1
# A chunk-size line's extensions or a trailer section longer than this is refused.
MAX_CHUNK_LINE = 4096

_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
_STATUS_LINES: dict[int, bytes] = {
    status: b"HTTP/1.1 %d %s\r\n" % (status, reason) for status, reason in _REASONS.items()
}
LAST_CHUNK = b"0\r\n\r\n"


class HeadError(ValueError):
    """A head that cannot be written as given (CR/LF injection, a bad status)."""


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise HeadError(f"status {status} out of range")
        line = b"HTTP/1.1 %d \r\n" % status
    return line


def head(first_line: bytes, headers: Headers, extra: Headers | None = None) -> bytes:
    """`first_line` (CRLF-terminated) and the header fields, joined once, injection-checked."""
    parts = [first_line]
    for name, value in headers:
        parts += (name, b": ", value, b"\r\n")
    lines = len(headers) + 2
    if extra:
        for name, value in extra:
            parts += (name, b": ", value, b"\r\n")
        lines += len(extra)
    parts.append(b"\r\n")
    data = b"".join(parts)
    # Every line ends in exactly one CRLF: any other CR or LF came from a name or a value.
    if data.count(b"\n") != lines or data.count(b"\r") != lines:
        raise HeadError("CR or LF inside a header field")
    return data


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class ChunkedTracker:
    """Finds where a chunked body ends in the raw bytes, and refuses oversized chunk sizes.

    llhttp parses and validates the body; this only follows its framing so bridge knows how
    many of the bytes received belong to the current message (the rest is a pipelined
    request, held back until the response is done) and sees each chunk size, which
    httptools does not expose. It only has to be exact for valid input: on anything else
    llhttp raises first, or the two disagree about where the message ends, and the request
    is refused.
    """

    __slots__ = ("_left", "_line", "_size", "_state", "done", "failed_at", "trailer_bytes")

    _SIZE, _EXT, _DATA, _DATA_END, _TRAILER = range(5)

    def __init__(self) -> None:
        self._state = self._SIZE
        self._size = 0
        self._left = 0
        self._line = 0  # bytes in the current extension or trailer line so far
        self.trailer_bytes = 0
        self.done = False
        self.failed_at = 0  # where in the scanned bytes a ValueError was found

    def scan(self, buf: bytes | bytearray, max_trailer: int) -> int:
        """How many bytes of `buf` belong to the body; raises ValueError on a bad size."""
        i = 0
        n = len(buf)
        while i < n and not self.done:
            state = self._state
            if state == self._DATA:
                take = min(self._left, n - i)
                i += take
                self._left -= take
                if not self._left:
                    self._state = self._DATA_END
            elif state == self._SIZE:
                digit = _HEX.get(buf[i])
                if digit is None:
                    self._state = self._EXT
                    self._line = 0
                    continue
                self._size = self._size * 16 + digit
                if self._size > MAX_CHUNK_SIZE:
                    self.failed_at = i
                    raise ValueError("chunk size beyond 2**63 - 1")
                i += 1
            else:
                end = buf.find(b"\n", i)
                stop = n if end < 0 else end + 1
                self._line += stop - i
                if state == self._TRAILER:
                    self.trailer_bytes += stop - i
                    if self.trailer_bytes > max_trailer:
                        self.failed_at = i
                        raise ValueError("trailer section too large")
                elif self._line > MAX_CHUNK_LINE:
                    self.failed_at = i
                    raise ValueError("chunk line too long")
                i = stop
                if end < 0:
                    continue
                line, self._line = self._line, 0  # with its CRLF
                if state == self._EXT:
                    if self._size:
                        self._state, self._left, self._size = self._DATA, self._size, 0
                    else:
                        self._state = self._TRAILER  # the last chunk: trailers follow
                elif state == self._DATA_END:
                    self._state = self._SIZE
                elif line <= 2:  # an empty line ("\r\n") ends the trailer section
                    self.done = True
        return i


_HEX = {ord(c): int(c, 16) for c in "0123456789abcdefABCDEF"}


def strict(parser: _Parser) -> _Parser:
    """`parser` with every llhttp leniency off, said explicitly rather than trusted to the
    defaults: each one is a request-smuggling shape in front of another parser (bare LF,
    lone CR, spaces after a chunk size, data after `Connection: close`...)."""
    parser.set_dangerous_leniencies(
        lenient_headers=False,
        lenient_chunked_length=False,
        lenient_keep_alive=False,
        lenient_transfer_encoding=False,
        lenient_version=False,
        lenient_data_after_close=False,
        lenient_optional_lf_after_cr=False,
        lenient_optional_cr_before_lf=False,
        lenient_optional_crlf_after_chunk=False,
        lenient_spaces_after_chunk_size=False,
    )
    return parser
