"""The WebSocket opening handshake, ours on every HTTP version.

RFC 6455 §4.2 over HTTP/1.1 (GET + Upgrade, answered 101) and RFC 8441 §5 / RFC 9220 over
HTTP/2 and HTTP/3 (extended CONNECT with `:protocol websocket`, answered 200).
"""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import urlsplit

from ..errors import ErrorCode
from ..events import Headers
from ..server.exchange import Exchange
from .util import header

_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_key(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def handshake_problem(exchange: Exchange) -> tuple[ErrorCode, str, Headers] | None:
    """RFC 6455 §4.2.1 (HTTP/1.1) and RFC 8441 §5 (extended CONNECT) request checks."""
    request = exchange.request
    headers = request.headers
    version = header(headers, b"sec-websocket-version")
    if version != b"13":
        return (
            ErrorCode.UPGRADE_REQUIRED,
            "WebSocket version 13 required",
            [(b"sec-websocket-version", b"13")],
        )
    if request.protocol is None:  # HTTP/1.1 Upgrade
        if request.method != "GET":
            return (ErrorCode.METHOD_NOT_ALLOWED, "WebSocket handshake must be GET", [])
        connection = (header(headers, b"connection") or b"").lower()
        if b"upgrade" not in [t.strip() for t in connection.split(b",")]:
            return (ErrorCode.BAD_REQUEST, "Connection: Upgrade missing", [])
        key = header(headers, b"sec-websocket-key")
        try:
            if key is None or len(base64.b64decode(key, validate=True)) != 16:
                raise ValueError
        except ValueError:
            return (ErrorCode.BAD_REQUEST, "bad Sec-WebSocket-Key", [])
    return None


def origin_allowed(exchange: Exchange, allowed: tuple[str, ...]) -> bool:
    """Same origin by default, or one listed in `origins:` (RFC 6454 exact comparison)."""
    origin = header(exchange.request.headers, b"origin")
    if origin is None:
        return True  # not a browser; cross-site hijacking needs a browser's ambient cookies
    text = origin.decode("latin-1").strip().lower()
    if text == "null":
        return False
    own = _normalise_origin(f"{exchange.request.scheme}://{exchange.request.authority}")
    return _normalise_origin(text) in {own, *allowed}


def _normalise_origin(value: str) -> str:
    try:
        parts = urlsplit(value.lower())
        port = parts.port
    except ValueError:
        return ""
    if not parts.scheme or not parts.hostname:
        return ""
    default = {"http": 80, "https": 443, "ws": 80, "wss": 443}.get(parts.scheme)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + ("" if port in (None, default) else f":{port}")


async def accept(exchange: Exchange) -> None:
    """Send the handshake answer; the exchange becomes a tunnel of frames."""
    request = exchange.request
    if request.protocol is None:
        key = header(request.headers, b"sec-websocket-key") or b""
        exchange.start_response(
            101,
            [
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
                (b"sec-websocket-accept", accept_key(key)),
            ],
        )
    else:
        exchange.start_response(200, [])
