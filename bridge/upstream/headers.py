"""Header rewriting between client and upstream, in both directions.

A proxy forwards end-to-end fields and drops hop-by-hop ones (RFC 9110 §7.6.1): the fixed set
below plus every field the Connection header names. Toward the upstream it says who asked and
how: X-Forwarded-For/-Proto/-Host (the de-facto trio), Forwarded (RFC 7239) and Via (RFC 9110
§7.6.3). Framing (Content-Length, Transfer-Encoding) belongs to each hop: the upstream client
frames the request body itself, the downstream adapter the response body.
"""

from __future__ import annotations

from .. import settings
from ..events import Headers
from ..routing.model import Upstream

# RFC 9110 §7.6.1, plus Keep-Alive and Proxy-Connection, which old clients still send.
HOP_BY_HOP: frozenset[bytes] = frozenset(
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
# The protocol each hop received, as Via writes it (RFC 9110 §7.6.3: "1.1", "2", "3").
_VIA = {"1.0": b"1.0 bridge", "1.1": b"1.1 bridge", "2": b"2 bridge", "3": b"3 bridge"}
# Fields of the client's that ours replace: a client cannot claim another scheme or host.
_REPLACED = frozenset({b"host", b"x-forwarded-proto", b"x-forwarded-host"})


def strip_hop_by_hop(headers: Headers) -> Headers:
    """`headers` without hop-by-hop fields, including every field the Connection header names."""
    listed: set[bytes] | None = None
    for name, value in headers:
        if name == b"connection":
            if listed is None:
                listed = set()
            for token in value.split(b","):
                token = token.strip().lower()
                if token:
                    listed.add(token)
    if listed is None:
        return [(n, v) for n, v in headers if n not in HOP_BY_HOP]
    return [(n, v) for n, v in headers if n not in HOP_BY_HOP and n not in listed]


def forward_request_headers(
    headers: Headers,
    *,
    client_ip: str,
    scheme: str,
    authority: str,
    http_version: str,
    upstream: Upstream,
    request_id: str = "",
) -> Headers:
    """The client's request headers as the upstream should see them.

    Hop-by-hop fields go; exactly one Host (the client's authority, or the upstream's own with
    `host: upstream`) comes first; X-Forwarded-For, Forwarded and Via get our hop appended to
    whatever earlier proxies wrote; X-Forwarded-Proto and -Host are ours alone; the Cookie
    fields HTTP/2 and HTTP/3 split are joined back into one (RFC 9113 §8.2.3, RFC 9114 §4.2.1).
    `request_id` goes up as X-Request-Id, replacing one that was not sane (see requestid.py).
    """
    out: Headers = [(b"host", b"")]  # the value is filled in below; Host goes first
    cookies: list[bytes] = []
    xff: list[bytes] = []
    forwarded: list[bytes] = []
    via: list[bytes] = []
    for name, value in strip_hop_by_hop(headers):
        if name == b"cookie":
            cookies.append(value)
        elif name == b"x-forwarded-for":
            xff.append(value)
        elif name == b"forwarded":
            forwarded.append(value)
        elif name == b"via":
            via.append(value)
        elif name == b"x-request-id" and request_id:
            continue  # ours (the client's own when sane) is added below
        elif name not in _REPLACED:
            out.append((name, value))
    host = authority if upstream.host_mode == "client" and authority else upstream.authority
    out[0] = (b"host", host.encode("latin-1"))
    if cookies:
        out.append((b"cookie", b"; ".join(cookies)))
    ip = client_ip.encode("latin-1")
    xff.append(ip or b"unknown")
    out.append((b"x-forwarded-for", b", ".join(xff)))
    out.append((b"x-forwarded-proto", scheme.encode("latin-1")))
    if authority:
        out.append((b"x-forwarded-host", authority.encode("latin-1")))
    forwarded.append(forwarded_element(client_ip, scheme, authority))
    out.append((b"forwarded", b", ".join(forwarded)))
    via.append(_VIA.get(http_version, b"1.1 bridge"))
    out.append((b"via", b", ".join(via)))
    if request_id:
        out.append((b"x-request-id", request_id.encode("ascii")))
    return out


# Our Forwarded element is the same for every request of a client to one host: formatted
# once, not once per request. Bounded: cleared when full (a new client costs one format).
_FORWARDED: dict[tuple[str, str, str], bytes] = {}


def forwarded_element(client_ip: str, scheme: str, authority: str) -> bytes:
    """Our `Forwarded` element: `for=192.0.2.1;proto=https;host="example.com"` (RFC 7239 §4).

    IPv6 addresses are bracketed, and a value that is not a token (IPv6, an authority with a
    port) is a quoted-string (RFC 7239 §6, §4).
    """
    key = (client_ip, scheme, authority)
    element = _FORWARDED.get(key)
    if element is None:
        if len(_FORWARDED) >= settings.FORWARDED_CACHE_SIZE:
            _FORWARDED.clear()
        element = _FORWARDED[key] = _format_forwarded(client_ip, scheme, authority)
    return element


def _format_forwarded(client_ip: str, scheme: str, authority: str) -> bytes:
    if not client_ip:
        node = "unknown"  # RFC 7239 §6.2
    elif ":" in client_ip:
        node = f'"[{client_ip}]"'
    else:
        node = client_ip
    element = f"for={node};proto={scheme}"
    if authority:
        element += f";host={_quoted(authority)}"
    return element.encode("latin-1")


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def response_headers(headers: Headers, *, http_version: str) -> Headers:
    """An upstream answer's headers, ready to go downstream: hop-by-hop gone, our Via added.

    `http_version` is the version the answer arrived in from the upstream
    (`UpstreamResponse.http_version`); only "1.0" changes Via, every other value (the
    downstream's "2" or "3" included) records the HTTP/1.1 hop bridge received it over.
    """
    out = strip_hop_by_hop(headers)
    mine = b"1.0 bridge" if http_version == "1.0" else b"1.1 bridge"
    via = [v for n, v in out if n == b"via"]
    if via:
        out = [(n, v) for n, v in out if n != b"via"]
        via.append(mine)
        out.append((b"via", b", ".join(via)))
    else:
        out.append((b"via", mine))
    return out
