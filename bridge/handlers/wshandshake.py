"""The WebSocket opening handshake, ours on every HTTP version.

RFC 6455 §4.2 over HTTP/1.1 (GET + Upgrade, answered 101) and RFC 8441 §5 / RFC 9220 over
HTTP/2 and HTTP/3 (extended CONNECT with `:protocol websocket`, answered 200).
"""

from __future__ import annotations

import base64
import hashlib

from ..errors import ErrorCode
from ..events import Headers
from ..routing.units import normalize_origin
from ..stream.exchange import Exchange
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
        if request.http_version != "1.1":
            # RFC 6455 §4.1: "the HTTP version MUST be at least 1.1" (h11 answers no 101 to 1.0).
            return (ErrorCode.BAD_REQUEST, "WebSocket needs HTTP/1.1", [])
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
    # RFC 6454 §7.1: the header is "null" or serialised origins; anything else (a path, user
    # info, a list of several) is not an origin we could compare, and is refused. A browser
    # never sends "null" for a page it can name, so "null" (sandboxed frames, file: pages,
    # some redirects) is refused too (docs/configuration.md, "Origins").
    text = origin.decode("latin-1").strip()
    if "/" in text.partition("://")[2] or " " in text:
        return False
    theirs = normalize_origin(text)
    if theirs is None:
        return False
    request = exchange.request
    return theirs == normalize_origin(f"{request.scheme}://{request.authority}") or (
        theirs in allowed
    )


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
