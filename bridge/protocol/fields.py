"""Heads of the multiplexed versions: HTTP/2 and HTTP/3 carry the request and status lines as
pseudo-header fields (RFC 9113 §8.3, RFC 9114 §4.3) in the same shape and forbid the same
connection-specific fields, so both adapters build and read their field lists here."""

from __future__ import annotations

from collections.abc import Iterable

from ..events import Headers, Request


def request_from_fields(
    stream_id: int, fields: Iterable[tuple[bytes, bytes]], *, scheme: str, http_version: str
) -> tuple[Request, int]:
    """The `Request` and the field section's size as RFC 9113 §6.5.2 / RFC 9114 §4.2.2 count
    it (each field's name and value plus 32). Pseudo-fields leave the headers; `:authority`
    falls back to Host (RFC 9113 §8.3.1)."""
    method = target = authority = request_scheme = ""
    protocol = None
    host = ""
    size = 0
    headers: Headers = []
    for name, value in fields:
        size += len(name) + len(value) + 32
        if name[:1] == b":":
            text = value.decode("latin-1")
            if name == b":method":
                method = text
            elif name == b":path":
                target = text
            elif name == b":authority":
                authority = text
            elif name == b":scheme":
                request_scheme = text
            elif name == b":protocol":
                protocol = text
        else:
            if name == b"host":
                host = value.decode("latin-1")
            headers.append((name, value))
    request = Request(
        stream_id=stream_id,
        method=method,
        target=target,
        authority=authority or host,
        scheme=request_scheme or scheme,
        headers=headers,
        http_version=http_version,
        protocol=protocol,
    )
    return request, size


# RFC 9113 §8.2.2 and RFC 9114 §4.2: connection-specific fields are malformed in these versions;
# dropped when a handler passes them on (TE is allowed only as "trailers").
CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)


def response_fields(status: int, headers: Headers) -> Headers:
    head = [(b":status", str(status).encode())]
    for name, value in headers:
        if name in CONNECTION_SPECIFIC or (name == b"te" and value != b"trailers"):
            continue
        head.append((name, value))
    return head
