"""The short plain-text body of every error bridge answers itself (400, 404, 502, 504 ...)."""

from __future__ import annotations

from .errors import ErrorCode


def error_body(code: ErrorCode, detail: str = "") -> bytes:
    reason = code.reason
    text = f"{code.status} {reason}"
    if detail and detail != reason:
        # Peer-controlled text can end up here; keep it one printable line.
        clean = "".join(ch if ch.isprintable() else "?" for ch in detail)[:200]
        text += f": {clean}"
    return (text + "\n").encode("utf-8", "replace")


def error_headers(body: bytes) -> list[tuple[bytes, bytes]]:
    return [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
