"""Header rewriting between client and upstream (RFC 9110 §7.6, RFC 7239, RFC 9113 §8.2.3)."""

from __future__ import annotations

from ..events import Headers
from ..routing.model import Upstream

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
_VIA = {"1.0": b"1.0 bridge", "1.1": b"1.1 bridge", "2": b"2 bridge", "3": b"3 bridge"}


def strip_hop_by_hop(headers: Headers) -> Headers:
    """Drop hop-by-hop fields, including every field the Connection header names."""
    listed: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            listed.update(t.strip().lower() for t in value.split(b",") if t.strip())
    if not listed:
        return [(n, v) for n, v in headers if n not in HOP_BY_HOP]
    return [(n, v) for n, v in headers if n not in HOP_BY_HOP and n not in listed]


def _forwarded_node(ip: str) -> str:
    # RFC 7239 §6: IPv6 addresses are bracketed and the value quoted.
    return f'"[{ip}]"' if ":" in ip else ip


def forward_request_headers(
    headers: Headers,
    *,
    client_ip: str,
    scheme: str,
    authority: str,
    http_version: str,
    upstream: Upstream,
) -> Headers:
    out: Headers = []
    cookies: list[bytes] = []
    xff = forwarded = via = None
    for name, value in strip_hop_by_hop(headers):
        if name == b"host":
            continue
        if name == b"cookie":
            cookies.append(value)
        elif name == b"x-forwarded-for":
            xff = value if xff is None else xff + b", " + value
        elif name == b"forwarded":
            forwarded = value if forwarded is None else forwarded + b", " + value
        elif name == b"via":
            via = value if via is None else via + b", " + value
        elif name in (b"x-forwarded-proto", b"x-forwarded-host"):
            continue  # ours replace the client's: it cannot claim another scheme or host
        else:
            out.append((name, value))
    host = authority if upstream.host_mode == "client" and authority else upstream.authority
    ip = client_ip.encode()
    out.insert(0, (b"host", host.encode("latin-1")))
    if cookies:
        out.append((b"cookie", b"; ".join(cookies)))
    out.append((b"x-forwarded-for", xff + b", " + ip if xff else ip))
    out.append((b"x-forwarded-proto", scheme.encode()))
    if authority:
        out.append((b"x-forwarded-host", authority.encode("latin-1")))
    node = f"for={_forwarded_node(client_ip)};proto={scheme}"
    if authority:
        node += f';host="{authority}"'
    element = node.encode("latin-1")
    out.append((b"forwarded", forwarded + b", " + element if forwarded else element))
    mine = _VIA.get(http_version, b"1.1 bridge")
    out.append((b"via", via + b", " + mine if via else mine))
    return out


def response_headers(headers: Headers, *, http_version: str = "1.1") -> Headers:
    """An upstream response's headers, ready to go downstream: hop-by-hop gone, Via added."""
    out = strip_hop_by_hop(headers)
    via = [v for n, v in out if n == b"via"]
    out = [(n, v) for n, v in out if n != b"via"]
    out.append((b"via", b", ".join([*via, b"1.1 bridge"])))
    return out
