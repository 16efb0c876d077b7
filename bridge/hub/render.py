"""Wire renderings of one event: SSE frames, HTTP/1.1 chunks, WebSocket frames.

Each is computed once per event and shared by every subscriber using that format.
"""

from __future__ import annotations

import re
import struct

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")

SSE_HEARTBEAT = b":\n\n"


def sse_frame(event_id: str | None, event: str | None, data: bytes) -> bytes:
    """One `text/event-stream` event. Every CR, LF or CRLF in `data` starts a new `data:`
    line, so no payload can ever inject an `id:`, `event:` or `retry:` field (WHATWG HTML
    §9.2.6)."""
    parts = []
    if event_id is not None:
        parts.append(b"id: " + _one_line(event_id) + b"\n")
    if event is not None and event != "message":
        parts.append(b"event: " + _one_line(event) + b"\n")
    for line in _LINE_BREAK.split(data):
        parts.append(b"data: " + line + b"\n")
    parts.append(b"\n")
    return b"".join(parts)


def _one_line(text: str) -> bytes:
    # Field values from config or ids are single lines already; this is the belt to that brace.
    return _LINE_BREAK.sub(b" ", text.encode("utf-8")).replace(b"\0", b"")


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk (RFC 9112 §7.1)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """A complete, unmasked server WebSocket frame (RFC 6455 §5.2), FIN set."""
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, length)
    return head + payload


WS_TEXT = 0x1
WS_BINARY = 0x2
WS_PING = 0x9
WS_HEARTBEAT = ws_frame(WS_PING, b"")
