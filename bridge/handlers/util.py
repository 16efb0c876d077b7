"""Small request helpers shared by the handlers."""

from __future__ import annotations

from ..events import Headers
from ..stream.exchange import Exchange


def header(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def is_websocket(exchange: Exchange) -> bool:
    request = exchange.request
    if request.protocol is not None:
        return request.method == "CONNECT" and request.protocol.lower() == "websocket"
    upgrade = header(request.headers, b"upgrade")
    # RFC 9110 §7.8: Upgrade is a list of protocols; RFC 6455 §4.2.1 wants "websocket" in it.
    return upgrade is not None and b"websocket" in [
        token.strip() for token in upgrade.lower().split(b",")
    ]
