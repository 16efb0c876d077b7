"""Header rewriting between client and upstream: hop-by-hop removal (RFC 9110 §7.6.1),
X-Forwarded-*, Forwarded (RFC 7239), Via, Host modes and Cookie joining (RFC 9113 §8.2.3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.routing.model import Upstream
from bridge.upstream.headers import (
    HOP_BY_HOP,
    forward_request_headers,
    forwarded_element,
    response_headers,
    strip_hop_by_hop,
)

Headers = list[tuple[bytes, bytes]]


def upstream(host_mode: str = "client", port: int = 9000) -> Upstream:
    return Upstream(
        name="app",
        url=f"http://10.1.2.3:{port}",
        scheme="http",
        host="10.1.2.3",
        port=port,
        base_path="",
        timeout=5.0,
        host_mode=host_mode,  # type: ignore[arg-type]
    )


def forward(
    headers: Headers,
    *,
    client_ip: str = "192.0.2.7",
    scheme: str = "https",
    authority: str = "example.com",
    http_version: str = "2",
    host_mode: str = "client",
) -> Headers:
    return forward_request_headers(
        headers,
        client_ip=client_ip,
        scheme=scheme,
        authority=authority,
        http_version=http_version,
        upstream=upstream(host_mode),
    )


def values(headers: Headers, name: bytes) -> list[bytes]:
    return [v for n, v in headers if n == name]


# --- strip_hop_by_hop ----------------------------------------------------------------------------


def test_hop_by_hop_set_is_rfc_9110() -> None:
    assert (
        frozenset(
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
        == HOP_BY_HOP
    )


@pytest.mark.parametrize(
    ("headers", "kept"),
    [
        ([(b"accept", b"*/*")], [(b"accept", b"*/*")]),
        (
            [(n, b"x") for n in sorted(HOP_BY_HOP)] + [(b"accept", b"*/*")],
            [(b"accept", b"*/*")],
        ),
        (  # every field Connection names goes, whatever its case and spacing
            [
                (b"connection", b"close, X-Secret ,x-other"),
                (b"x-secret", b"1"),
                (b"x-other", b"2"),
                (b"x-kept", b"3"),
            ],
            [(b"x-kept", b"3")],
        ),
        (  # several Connection fields add up
            [
                (b"connection", b"x-a"),
                (b"connection", b"x-b"),
                (b"x-a", b"1"),
                (b"x-b", b"2"),
                (b"x-c", b"3"),
            ],
            [(b"x-c", b"3")],
        ),
        (  # empty list members are allowed (RFC 9110 §5.6.1) and name nothing
            [(b"connection", b", ,keep-alive"), (b"keep-alive", b"timeout=5"), (b"a", b"b")],
            [(b"a", b"b")],
        ),
    ],
    ids=["nothing", "fixed-set", "connection-listed", "two-connection-fields", "empty-members"],
)
def test_strip_hop_by_hop(headers: Headers, kept: Headers) -> None:
    assert strip_hop_by_hop(headers) == kept


# --- forward_request_headers ---------------------------------------------------------------------


def test_a_plain_request() -> None:
    out = forward([(b"host", b"example.com"), (b"accept", b"text/html")], http_version="1.1")
    assert out == [
        (b"host", b"example.com"),
        (b"accept", b"text/html"),
        (b"x-forwarded-for", b"192.0.2.7"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"example.com"),
        (b"forwarded", b'for=192.0.2.7;proto=https;host="example.com"'),
        (b"via", b"1.1 bridge"),
    ]


@pytest.mark.parametrize(
    ("host_mode", "authority", "host"),
    [
        ("client", "example.com", b"example.com"),
        ("client", "example.com:8443", b"example.com:8443"),
        ("upstream", "example.com", b"10.1.2.3:9000"),
        ("client", "", b"10.1.2.3:9000"),  # an HTTP/1.0 client without Host
    ],
)
def test_exactly_one_host(host_mode: str, authority: str, host: bytes) -> None:
    incoming = [(b"host", b"spoofed.example"), (b"accept", b"*/*"), (b"host", b"another")]
    out = forward(incoming, authority=authority, host_mode=host_mode)
    assert values(out, b"host") == [host]
    assert out[0] == (b"host", host)  # first, as HTTP/1.1 clients send it


def test_host_mode_upstream_leaves_out_the_default_port() -> None:
    out = forward_request_headers(
        [],
        client_ip="192.0.2.7",
        scheme="https",
        authority="example.com",
        http_version="2",
        upstream=upstream("upstream", port=80),
    )
    assert values(out, b"host") == [b"10.1.2.3"]
    assert values(out, b"x-forwarded-host") == [b"example.com"]


@pytest.mark.parametrize(
    ("incoming", "client_ip", "expected"),
    [
        ([], "192.0.2.7", b"192.0.2.7"),
        ([(b"x-forwarded-for", b"203.0.113.1")], "192.0.2.7", b"203.0.113.1, 192.0.2.7"),
        (
            [(b"x-forwarded-for", b"203.0.113.1, 198.51.100.2"), (b"x-forwarded-for", b"10.0.0.1")],
            "192.0.2.7",
            b"203.0.113.1, 198.51.100.2, 10.0.0.1, 192.0.2.7",
        ),
        ([], "2001:db8::1", b"2001:db8::1"),
        ([], "", b"unknown"),
    ],
    ids=["first-hop", "appended", "several-fields", "ipv6", "no-address"],
)
def test_x_forwarded_for(incoming: Headers, client_ip: str, expected: bytes) -> None:
    assert values(forward(incoming, client_ip=client_ip), b"x-forwarded-for") == [expected]


def test_x_forwarded_proto_and_host_are_ours_alone() -> None:
    incoming = [(b"x-forwarded-proto", b"https"), (b"x-forwarded-host", b"bank.example")]
    out = forward(incoming, scheme="http", authority="example.com")
    assert values(out, b"x-forwarded-proto") == [b"http"]
    assert values(out, b"x-forwarded-host") == [b"example.com"]


@pytest.mark.parametrize(
    ("client_ip", "scheme", "authority", "element"),
    [
        ("192.0.2.7", "https", "example.com", b'for=192.0.2.7;proto=https;host="example.com"'),
        # RFC 7239 §6: IPv6 bracketed and quoted.
        ("2001:db8::1", "https", "example.com", b'for="[2001:db8::1]";proto=https;host="example.com"'),
        ("::1", "http", "localhost:8080", b'for="[::1]";proto=http;host="localhost:8080"'),
        ("192.0.2.7", "http", "", b"for=192.0.2.7;proto=http"),
        ("", "http", "a.example", b'for=unknown;proto=http;host="a.example"'),
        ('192.0.2.7', "https", 'we"ird\\', b'for=192.0.2.7;proto=https;host="we\\"ird\\\\"'),
    ],
    ids=["ipv4", "ipv6", "ipv6-loopback", "no-authority", "no-address", "quoted-pair"],
)  # fmt: skip
def test_forwarded_element(client_ip: str, scheme: str, authority: str, element: bytes) -> None:
    assert forwarded_element(client_ip, scheme, authority) == element
    out = forward([], client_ip=client_ip, scheme=scheme, authority=authority)
    assert values(out, b"forwarded") == [element]


def test_forwarded_is_appended_to_earlier_proxies() -> None:
    incoming = [(b"forwarded", b"for=203.0.113.1"), (b"forwarded", b'for="[2001:db8::2]"')]
    out = forward(incoming, client_ip="::1", authority="example.com")
    assert values(out, b"forwarded") == [
        b'for=203.0.113.1, for="[2001:db8::2]", for="[::1]";proto=https;host="example.com"'
    ]


@pytest.mark.parametrize(
    ("http_version", "via"),
    [("1.0", b"1.0 bridge"), ("1.1", b"1.1 bridge"), ("2", b"2 bridge"), ("3", b"3 bridge")],
)
def test_via_names_the_protocol_we_received(http_version: str, via: bytes) -> None:
    assert values(forward([], http_version=http_version), b"via") == [via]
    earlier = forward([(b"via", b"1.1 cdn")], http_version=http_version)
    assert values(earlier, b"via") == [b"1.1 cdn, " + via]


def test_cookies_split_by_http2_are_joined() -> None:
    incoming = [
        (b"cookie", b"a=1"),
        (b"accept", b"*/*"),
        (b"cookie", b"b=2"),
        (b"cookie", b"c=3; d=4"),
    ]
    out = forward(incoming)
    assert values(out, b"cookie") == [b"a=1; b=2; c=3; d=4"]
    assert values(forward([(b"accept", b"*/*")]), b"cookie") == []


def test_framing_and_hop_by_hop_fields_do_not_pass() -> None:
    incoming = [
        (b"connection", b"keep-alive, x-hop"),
        (b"keep-alive", b"timeout=5"),
        (b"x-hop", b"1"),
        (b"te", b"trailers"),
        (b"transfer-encoding", b"chunked"),
        (b"upgrade", b"h2c"),
        (b"proxy-authorization", b"Basic eDp5"),
        (b"content-type", b"application/json"),
    ]
    out = forward(incoming)
    names = {n for n, _ in out}
    assert names.isdisjoint(HOP_BY_HOP | {b"x-hop"})
    assert b"content-length" not in names  # not invented
    assert values(out, b"content-type") == [b"application/json"]
    with_length = forward([(b"content-length", b"42")])
    assert values(with_length, b"content-length") == [b"42"]


def test_end_to_end_fields_keep_their_order() -> None:
    incoming = [(b"x-b", b"1"), (b"accept", b"*/*"), (b"x-b", b"2"), (b"authorization", b"t")]
    out = forward(incoming)
    kept = [(n, v) for n, v in out if n in {b"x-b", b"accept", b"authorization"}]
    assert kept == incoming


OTHER = [b"host", b"cookie", b"x-forwarded-for", b"forwarded", b"via", b"accept", b"x-a", b"x-b"]
names = st.sampled_from([*sorted(HOP_BY_HOP), *OTHER])
header_lists = st.lists(st.tuples(names, st.sampled_from([b"1", b"x-a", b"x-b, close", b""])))


@given(header_lists, st.sampled_from(["client", "upstream"]))
def test_invariants(headers: Headers, host_mode: str) -> None:
    out = forward(headers, host_mode=host_mode)
    out_names = [n for n, _ in out]
    assert out_names.count(b"host") == 1
    for once in (b"cookie", b"x-forwarded-for", b"forwarded", b"via", b"x-forwarded-proto"):
        assert out_names.count(once) <= 1
    assert not set(out_names) & HOP_BY_HOP
    listed = {
        token.strip()
        for n, v in headers
        if n == b"connection"
        for token in v.split(b",")
        if token.strip()
    }
    assert not set(out_names) & listed


# --- response_headers ----------------------------------------------------------------------------


def test_response_headers() -> None:
    answer = [
        (b"content-type", b"text/html"),
        (b"connection", b"keep-alive, x-internal"),
        (b"keep-alive", b"timeout=5"),
        (b"x-internal", b"1"),
        (b"transfer-encoding", b"chunked"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"content-length", b"10"),
    ]
    assert response_headers(answer, http_version="1.1") == [
        (b"content-type", b"text/html"),
        (b"set-cookie", b"a=1"),
        (b"set-cookie", b"b=2"),
        (b"content-length", b"10"),
        (b"via", b"1.1 bridge"),
    ]


@pytest.mark.parametrize(
    ("http_version", "via"), [("1.1", b"1.1 bridge"), ("1.0", b"1.0 bridge"), ("2", b"1.1 bridge")]
)
def test_response_via(http_version: str, via: bytes) -> None:
    assert values(response_headers([], http_version=http_version), b"via") == [via]
    earlier = response_headers(
        [(b"via", b"1.1 app-cache"), (b"x", b"y"), (b"via", b"1.0 old")], http_version=http_version
    )
    assert earlier == [(b"x", b"y"), (b"via", b"1.1 app-cache, 1.0 old, " + via)]
