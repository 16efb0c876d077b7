"""Renderings of one event: SSE frames and WebSocket frames.

Each is computed once per event and the same bytes go to every subscriber using that format
(server WebSocket frames are unmasked, RFC 6455 §5.1, so one frame serves every client).
Pure functions of their arguments; no I/O.
"""

from __future__ import annotations

import json
import re
import struct

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")

# A comment line: keeps proxies and load balancers from timing out an idle stream, and is
# ignored by every EventSource (WHATWG HTML §9.2.6: a line starting with ":" is a comment).
SSE_HEARTBEAT = b":\n\n"

WS_TEXT = 0x1
WS_BINARY = 0x2
WS_PING = 0x9


def sse_frame(event_id: str | None, event: str | None, data: bytes) -> bytes:
    """One `text/event-stream` event.

    Every CR, LF or CRLF in `data` starts a new `data:` line (the client joins them with LF), so
    no payload can ever inject an `id:`, `event:` or `retry:` field, nor end the event early
    (WHATWG HTML §9.2.6). A CRLF or lone CR in the payload therefore arrives as LF: the format
    has no way to carry it. The `event:` line is left out for the default type `message`.
    """
    parts = []
    if event_id is not None:
        parts.append(b"id: " + _one_line(event_id) + b"\n")
    if event and event != "message":
        parts.append(b"event: " + _one_line(event) + b"\n")
    for line in _LINE_BREAK.split(data):
        parts.append(b"data: " + line + b"\n")
    parts.append(b"\n")
    return b"".join(parts)


def sse_retry(milliseconds: int) -> bytes:
    """A reconnection-time hint on its own (no event is dispatched for it)."""
    return b"retry: %d\n\n" % max(0, int(milliseconds))


def _one_line(text: str) -> bytes:
    # Ids are ours and event names come from validated config, so this never changes them in
    # practice; it guarantees a field can't break the frame. A NUL would make clients ignore
    # the whole `id:` field (§9.2.6), so it goes too.
    return _LINE_BREAK.sub(b" ", text.encode("utf-8", "replace")).replace(b"\0", b"")


def ws_frame(opcode: int, payload: bytes) -> bytes:
    """A complete, unmasked server WebSocket frame (RFC 6455 §5.2), FIN set, no extensions.

    The payload length uses the shortest form: 7 bits, or 126 + 16 bits, or 127 + 64 bits
    (§5.2 requires the minimal encoding).
    """
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, length)
    return head + payload


def ws_envelope(event_id: str | None, event: str, data: bytes) -> bytes:
    """The envelope text `{"id", "event", "data"}`, UTF-8 encoded.

    `data` is the body itself when it is JSON (spliced in byte for byte: numbers keep their
    exact spelling and nothing is re-serialised), otherwise the body as a JSON string.
    """
    head = b'{"id":%s,"event":%s,"data":' % (
        json.dumps(event_id).encode(),
        json.dumps(event, ensure_ascii=False).encode("utf-8"),
    )
    body = _json_text(data)
    if body is None:
        body = json.dumps(data.decode("utf-8", "replace"), ensure_ascii=False).encode("utf-8")
    return head + body + b"}"


def _json_text(data: bytes) -> bytes | None:
    """`data` if it is one strict JSON text in UTF-8 without a BOM (RFC 8259 §8.1), else None."""
    try:
        text = data.decode("utf-8")
        json.loads(text, parse_constant=_reject)  # NaN / Infinity are not JSON
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data


def _reject(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


WS_HEARTBEAT = ws_frame(WS_PING, b"")
