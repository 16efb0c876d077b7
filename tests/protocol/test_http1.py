"""`Http1Protocol` against a real h11 client, in memory, fed whole and one byte at a time.

Covers the request/response cycle (keep-alive, pipelining, bodies both framings), every
malformed-request shape the adapter must answer with a status and a close, HTTP/1.0 peers,
resets before and after the response head, peer EOF, and the 101 switch to tunnel bytes.
"""

from __future__ import annotations

import h11
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from bridge import settings
from bridge.errors import ErrorCode
from bridge.events import (
    Body,
    ConnectionClosed,
    Data,
    EndBody,
    EndData,
    InformationalResponse,
    PushPromise,
    Request,
    Response,
    StreamClosed,
    StreamReset,
)
from bridge.protocol.http1 import Http1Protocol

from .helpers import H1Pair, feed, feed_modes, of_type, parse_response, parse_responses

TEXT = [(b"content-type", b"text/plain")]


def _body_of(events: list) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Body))


# --- one request, one response -----------------------------------------------------------------


@feed_modes
def test_simple_get_becomes_request_and_end_body(bytewise: bool) -> None:
    pair = H1Pair(bytewise, scheme="https")
    events = pair.raw(
        b"GET /path?q=1 HTTP/1.1\r\nHost: example.com:8443\r\nUser-Agent: t/1\r\n"
        b"X-Mixed-Case: Value\r\n\r\n"
    )
    assert events == [
        Request(
            stream_id=1,
            method="GET",
            target="/path?q=1",
            authority="example.com:8443",
            scheme="https",
            headers=[
                (b"host", b"example.com:8443"),
                (b"user-agent", b"t/1"),
                (b"x-mixed-case", b"Value"),  # names lower-case, values as sent
            ],
            http_version="1.1",
        ),
        EndBody(1),
    ]
    assert not pair.server.idle
    assert not pair.server.is_tunnel(1)


@feed_modes
def test_response_parses_with_h11_client(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    assert pair.request(target=b"/hello") == [
        Request(1, "GET", "/hello", "example.com", "http", [(b"host", b"example.com")], "1.1"),
        EndBody(1),
    ]
    follow = pair.respond(
        Response(1, 200, [*TEXT, (b"content-length", b"5"), (b"x-thing", b"1")]),
        Body(1, b"hel"),
        Body(1, b""),  # an empty write must not end a chunked body or confuse h11
        Body(1, b"lo"),
        EndBody(1),
    )
    assert follow == [StreamClosed(1)]
    parsed = pair.client_read()
    assert (parsed.status, parsed.reason, parsed.body, parsed.complete) == (
        200,
        b"OK",
        b"hello",
        True,
    )
    assert parsed.header(b"content-type") == b"text/plain"
    assert parsed.header(b"x-thing") == b"1"
    assert pair.server.idle
    assert not pair.server.closed


@feed_modes
def test_response_without_length_is_chunked(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    pair.request()
    pair.respond(Response(1, 200, TEXT), Body(1, b"part one, "), Body(1, b"part two"))
    wire = pair.server.data_to_send()
    assert b"transfer-encoding: chunked" in wire.lower()
    pair.respond(EndBody(1))
    wire += pair.server.data_to_send()
    assert wire.endswith(b"0\r\n\r\n")
    parsed = parse_response(wire)
    assert parsed.body == b"part one, part two"
    assert parsed.complete


@feed_modes
def test_keep_alive_two_sequential_requests(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    for n in range(2):
        events = pair.request(target=f"/{n}".encode())
        assert [type(e) for e in events] == [Request, EndBody]
        assert events[0].target == f"/{n}"
        assert pair.respond(
            Response(1, 200, [(b"content-length", b"1")]), Body(1, str(n).encode()), EndBody(1)
        ) == [StreamClosed(1)]
        parsed = pair.client_read()
        assert (parsed.status, parsed.body, parsed.complete) == (200, str(n).encode(), True)
        assert not pair.server.closed
        assert pair.server.idle
        pair.next_cycle()
    assert pair.server.requests == 2


@feed_modes
def test_pipelined_requests_answered_in_order(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    events = pair.raw(
        b"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n"
        b"POST /b HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\nxyz"
    )
    # The second request waits in the buffer until the first response is complete.
    assert [type(e) for e in events] == [Request, EndBody]
    assert events[0].target == "/a"
    assert pair.respond(Response(1, 200, [(b"content-length", b"1")]), Body(1, b"A")) == []
    follow = pair.respond(EndBody(1))
    assert [type(e) for e in follow] == [StreamClosed, Request, Body, EndBody]
    assert follow[1].target == "/b" and follow[1].method == "POST"
    assert follow[2].data == b"xyz"
    assert pair.respond(
        Response(1, 200, [(b"content-length", b"1")]), Body(1, b"B"), EndBody(1)
    ) == [StreamClosed(1)]
    first, second = parse_responses(pair.server.data_to_send(), 2)
    assert (first.body, first.complete) == (b"A", True)
    assert (second.body, second.complete) == (b"B", True)


@feed_modes
def test_pipelined_request_is_checked_like_the_first(bytewise: bool) -> None:
    """The raw-head checks (folding, duplicate lengths) also cover a request that waited."""
    pair = H1Pair(bytewise)
    events = pair.raw(
        b"GET /a HTTP/1.1\r\nHost: example.com\r\n\r\n"
        b"GET /b HTTP/1.1\r\nHost: example.com\r\nX-Folded: a\r\n b\r\n\r\n"
    )
    assert [type(e) for e in events] == [Request, EndBody]
    follow = pair.respond(Response(1, 204), EndBody(1))
    assert follow[0] == StreamClosed(1)
    assert of_type(follow, Request) == []
    assert follow[-1] == ConnectionClosed("400 obsolete line folding is not allowed")
    first, second = parse_responses(pair.server.data_to_send(), 2)
    assert (first.status, second.status) == (204, 400)


# --- request bodies ------------------------------------------------------------------------------


@feed_modes
def test_post_with_content_length_body(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    body = bytes(range(256)) * 20
    events = pair.request(
        b"POST",
        b"/upload",
        [(b"host", b"example.com"), (b"content-length", str(len(body)).encode())],
        body,
    )
    assert isinstance(events[0], Request) and events[0].method == "POST"
    assert events[-1] == EndBody(1)
    assert _body_of(events) == body
    assert all(isinstance(e, Body) for e in events[1:-1])


@feed_modes
def test_post_with_chunked_body(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    chunks = [b"first chunk|", b"x" * 1000, b"|last"]
    events = pair.client_send(
        h11.Request(
            method=b"POST",
            target=b"/upload",
            headers=[(b"host", b"example.com"), (b"transfer-encoding", b"chunked")],
        ),
        *(h11.Data(data=c) for c in chunks),
        h11.EndOfMessage(),
    )
    assert isinstance(events[0], Request)
    assert (b"transfer-encoding", b"chunked") in events[0].headers
    assert events[-1] == EndBody(1)
    assert _body_of(events) == b"".join(chunks)


# --- malformed requests --------------------------------------------------------------------------

_BIG = b"a" * settings.MAX_HEADER_BYTES
_MANY = b"".join(b"X-H-%d: v\r\n" % i for i in range(settings.MAX_HEADER_COUNT))

MALFORMED = {
    "bad-request-line": (b"GARBAGE\r\n\r\n", 400),
    "request-line-without-version": (b"GET /\r\n\r\n", 400),
    "not-http-at-all": (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 400),
    "oversized-head": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + _BIG + b"\r\n\r\n", 431),
    "too-many-headers": (b"GET / HTTP/1.1\r\nHost: x\r\n" + _MANY + b"\r\n", 431),
    "target-too-long": (
        b"GET /" + b"p" * settings.MAX_TARGET_BYTES + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        414,
    ),
    "length-and-chunked": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\n",
        400,
    ),
    "duplicate-length-conflicting": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    ),
    "duplicate-length-identical": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        400,
    ),
    "length-list": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
    "unknown-transfer-coding": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc",
        501,
    ),
    "http-2.0-request-line": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    "http-1.2": (b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", 505),
    "obsolete-line-folding": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n  b\r\n\r\n", 400),
    "obsolete-line-folding-tab": (b"GET / HTTP/1.1\r\nX-Folded: a\r\n\tb\r\nHost: x\r\n\r\n", 400),
    "duplicate-host": (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
    "missing-host-1.1": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two-empty-lines-first": (b"\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
    "folding-after-one-empty-line": (b"\r\nGET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
    # Shapes llhttp's lenient flags would let through (all off): each is a way two parsers
    # can disagree about where a header or a message ends.
    "bare-lf-lines": (b"GET / HTTP/1.1\nHost: x\n\n", 400),
    "cr-without-lf": (b"GET / HTTP/1.1\r\nHost: x\rX-Y: z\r\n\r\n", 400),
    "control-char-in-value": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Y: a\x01b\r\n\r\n", 400),
    "nul-in-value": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Y: a\x00b\r\n\r\n", 400),
    "space-before-colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "chunked-not-last": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        400,
    ),
    "coding-before-chunked": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    "two-transfer-encodings": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,  # RFC 9112 §6.1: chunked applied twice
    ),
    "double-space-request-line": (b"GET  /  HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "unknown-version-digit": (b"GET / HTTP/1.9\r\nHost: x\r\n\r\n", 505),
    "upgrade-with-body": (
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
        b"Content-Length: 3\r\n\r\nabc",
        400,
    ),
}


@feed_modes
@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_request_gets_status_and_close(name: str, bytewise: bool) -> None:
    raw, status = MALFORMED[name]
    pair = H1Pair(bytewise)
    events = pair.raw(raw)
    # No half-parsed request reaches a handler: the adapter answers and closes by itself.
    assert of_type(events, Request) == []
    assert events[-2:] == [StreamClosed(1), ConnectionClosed(events[-1].reason)]
    assert events[-1].reason.startswith(str(status))
    assert pair.server.closed
    wire = pair.server.data_to_send()
    parsed = parse_response(wire)
    assert parsed.status == status
    assert parsed.complete
    assert parsed.header(b"connection") == b"close"
    assert parsed.body.startswith(str(status).encode())
    # Whatever follows on a connection that lost its framing is ignored.
    assert pair.server.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == []
    assert pair.server.data_to_send() == b""


@feed_modes
def test_bad_chunk_size_after_request_started(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    events = pair.raw(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n"
    )
    assert isinstance(events[0], Request)
    assert _body_of(events) == b"abc"  # the good chunk got through before the bad size
    assert [type(e) for e in events[-2:]] == [StreamClosed, ConnectionClosed]
    parsed = parse_response(pair.server.data_to_send())
    assert parsed.status == 400
    assert parsed.header(b"connection") == b"close"


@feed_modes
@pytest.mark.parametrize(
    "size,data",
    [(b"8000000000000000", b""), (b"ffffffffffffffffffff", b"abc")],
    ids=["alone", "with-data"],
)
def test_chunk_size_beyond_64_bits_is_refused(size: bytes, data: bytes, bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    events = pair.raw(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
        + size
        + b"\r\n"
        + data
    )
    assert isinstance(events[0], Request)
    assert _body_of(events) == b"abc"  # the chunk before it, nothing of the oversized one
    assert [type(e) for e in events[-2:]] == [StreamClosed, ConnectionClosed]
    parsed = parse_response(pair.server.data_to_send())
    assert parsed.status == 400
    assert parsed.header(b"connection") == b"close"


@feed_modes
@pytest.mark.parametrize(
    "body",
    [
        b"3\r\nabcX\r\n0\r\n\r\n",  # no CRLF after the chunk data
        b"3 \r\nabc\r\n0\r\n\r\n",  # space after the chunk size
        b"3\nabc\n0\n\n",  # bare LF framing
        b"3\r\nabc\r\n0\r\nX-T: a\x01b\r\n\r\n",  # a control character in a trailer
    ],
    ids=["no-crlf-after-data", "space-after-size", "bare-lf", "bad-trailer"],
)
def test_lenient_chunk_shapes_are_refused(body: bytes, bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    events = pair.raw(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
    assert isinstance(events[0], Request)
    assert EndBody(1) not in events
    assert [type(e) for e in events[-2:]] == [StreamClosed, ConnectionClosed]
    parsed = parse_response(pair.server.data_to_send())
    assert (parsed.status, parsed.header(b"connection")) == (400, b"close")


@feed_modes
def test_trailers_end_the_body_and_are_not_forwarded(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    events = pair.raw(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n0\r\nX-Checksum: 1\r\nX-More: 2\r\n\r\n"
        b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert [type(e) for e in events if not isinstance(e, Body)] == [Request, EndBody]
    assert _body_of(events) == b"abc"
    assert all(n != b"x-checksum" for n, _ in events[0].headers)
    follow = pair.respond(Response(1, 204), EndBody(1))
    assert [type(e) for e in follow] == [StreamClosed, Request, EndBody]
    assert follow[1].target == "/next"


def test_oversized_trailer_section_is_refused() -> None:
    pair = H1Pair(False, max_header_bytes=1024)
    events = pair.raw(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
        + b"X-T: "
        + b"a" * 2000
        + b"\r\n\r\n"
    )
    assert isinstance(events[0], Request) and EndBody(1) not in events
    assert parse_response(pair.server.data_to_send()).status == 400


@feed_modes
def test_pipelined_bytes_wait_raw_until_the_response_is_done(bytewise: bool) -> None:
    """A request that arrives while another is answered is parsed only afterwards, so a
    malformed one cannot close the connection under the response still being sent."""
    pair = H1Pair(bytewise)
    assert [type(e) for e in pair.raw(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")] == [
        Request,
        EndBody,
    ]
    assert pair.raw(b"GET /b HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n") == []
    assert not pair.server.closed
    pair.respond(Response(1, 200, [(b"content-length", b"2")]), Body(1, b"ok"))
    follow = pair.respond(EndBody(1))
    assert follow[0] == StreamClosed(1) and follow[-1].reason.startswith("400 duplicate Host")
    first, second = parse_responses(pair.server.data_to_send(), 2)
    assert (first.status, first.body, second.status) == (200, b"ok", 400)


@feed_modes
@pytest.mark.parametrize(
    "target,path,authority",
    [
        (b"http://origin.test:8080/a/b?q=1", "/a/b?q=1", "origin.test:8080"),
        (b"HTTPS://origin.test", "/", "origin.test"),
        (b"http://origin.test?q", "/?q", "origin.test"),
    ],
)
def test_absolute_form_target_routes_by_path(
    target: bytes, path: str, authority: str, bytewise: bool
) -> None:
    """RFC 9112 §3.2.2: a server MUST accept the absolute form; the target's authority
    replaces Host."""
    pair = H1Pair(bytewise)
    events = pair.raw(b"GET " + target + b" HTTP/1.1\r\nHost: other.test\r\nX-A: 1\r\n\r\n")
    request = events[0]
    assert isinstance(request, Request)
    assert (request.target, request.authority) == (path, authority)
    assert request.headers == [(b"host", authority.encode()), (b"x-a", b"1")]


@pytest.mark.parametrize(
    "target", [b"http://user@origin.test/", b"http:///path", b"ftp://origin.test/"]
)
def test_bad_absolute_form_is_refused(target: bytes) -> None:
    pair = H1Pair(False)
    events = pair.raw(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert of_type(events, Request) == []
    assert parse_response(pair.server.data_to_send()).status == 400


def test_response_head_with_injected_line_closes() -> None:
    pair = H1Pair(False)
    pair.request()
    follow = pair.respond(Response(1, 200, [(b"x-a", b"1\r\nSet-Cookie: evil=1")]))
    assert follow[0] == StreamClosed(1) and isinstance(follow[1], ConnectionClosed)
    assert pair.server.data_to_send() == b""


def test_wrong_body_length_from_handler_closes() -> None:
    pair = H1Pair(False)
    pair.request()
    assert pair.respond(Response(1, 200, [(b"content-length", b"2")]), Body(1, b"ok")) == []
    follow = pair.respond(Body(1, b"!"))
    assert follow[0] == StreamClosed(1) and isinstance(follow[1], ConnectionClosed)
    pair = H1Pair(False)
    pair.request()
    follow = pair.respond(Response(1, 200, [(b"content-length", b"2")]), Body(1, b"o"), EndBody(1))
    assert follow[0] == StreamClosed(1) and isinstance(follow[1], ConnectionClosed)


@feed_modes
def test_head_response_has_no_body_and_keeps_the_connection(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    pair.request(b"HEAD")
    follow = pair.respond(
        Response(1, 200, [(b"content-length", b"5")]), Body(1, b"hello"), EndBody(1)
    )
    assert follow == [StreamClosed(1)]
    wire = pair.server.data_to_send()
    assert wire.endswith(b"content-length: 5\r\n\r\n")
    assert not pair.server.closed


def test_pipelined_bytes_are_bounded() -> None:
    """Past MAX_PIPELINED_BYTES waiting behind a response, the rest is dropped and the
    connection closes after that response (RFC 9112 §9.3.2: the client retries)."""
    pair = H1Pair(False)
    pair.raw(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    one = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(settings.MAX_PIPELINED_BYTES // len(one) + 10):
        assert pair.raw(one) == []
    assert len(pair.server._buf) <= settings.MAX_PIPELINED_BYTES
    assert pair.server.peer_sending  # so the server layer lingers instead of resetting
    follow = pair.respond(Response(1, 200, [(b"content-length", b"0")]), EndBody(1))
    assert follow == [StreamClosed(1), ConnectionClosed("not keep-alive")]
    parsed = parse_response(pair.server.data_to_send())
    assert (parsed.status, parsed.header(b"connection")) == (200, b"close")


@feed_modes
def test_empty_lines_before_a_request_are_ignored(bytewise: bool) -> None:
    """RFC 9112 §2.2 (a client may send a CRLF after a body); they are dropped, not kept."""
    pair = H1Pair(bytewise)
    events = pair.raw(b"\r\n\r\n\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [type(e) for e in events] == [Request, EndBody] and events[0].target == "/a"
    pair.respond(Response(1, 204), EndBody(1))
    assert pair.raw(b"\r\n" * 1000) == []
    assert not pair.server.head_started  # nothing kept
    assert pair.raw(b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")[0].target == "/b"


@feed_modes
def test_largest_signed_64_bit_chunk_size_is_accepted(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    events = pair.raw(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\nabc"
    )
    assert isinstance(events[0], Request)
    assert _body_of(events) == b"abc"
    assert not pair.server.closed


@feed_modes
def test_head_limit_is_the_configured_one(bytewise: bool) -> None:
    pair = H1Pair(bytewise, max_header_bytes=1024)
    ok = pair.raw(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 900 + b"\r\n\r\n")
    assert [type(e) for e in ok] == [Request, EndBody]
    pair.respond(Response(1, 204), EndBody(1))
    pair.server.data_to_send()
    events = pair.raw(b"GET / HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 1100 + b"\r\n\r\n")
    assert events[-1].reason.startswith("431")
    assert parse_response(pair.server.data_to_send()).status == 431


# --- HTTP/1.0 peers and 1xx ------------------------------------------------------------------------


@feed_modes
def test_http10_request_closes_after_response_and_gets_no_103(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    events = pair.raw(b"GET /old HTTP/1.0\r\nUser-Agent: ancient\r\n\r\n")
    assert events == [
        Request(1, "GET", "/old", "", "http", [(b"user-agent", b"ancient")], "1.0"),
        EndBody(1),
    ]
    # RFC 9110 §15.2: a server must not send a 1xx response to an HTTP/1.0 client.
    assert pair.respond(InformationalResponse(1, 103, [(b"link", b"</a.css>; rel=preload")])) == []
    assert pair.server.data_to_send() == b""
    assert pair.respond(Response(1, 200, TEXT), Body(1, b"old school")) == []
    assert pair.respond(EndBody(1)) == [StreamClosed(1), ConnectionClosed("not keep-alive")]
    assert pair.server.closed
    wire = pair.server.data_to_send()
    assert b" 103 " not in wire
    parsed = parse_response(wire, eof=True)  # no length, no chunking for 1.0: body ends at EOF
    assert (parsed.status, parsed.body, parsed.complete) == (200, b"old school", True)
    assert parsed.informational == []


@feed_modes
def test_early_hints_sent_to_http11_client(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    pair.request()
    link = (b"link", b"</a.css>; rel=preload; as=style")
    assert pair.respond(InformationalResponse(1, 103, [link])) == []
    assert pair.respond(Response(1, 200, [(b"content-length", b"2")]), Body(1, b"ok")) == []
    assert pair.respond(EndBody(1)) == [StreamClosed(1)]
    parsed = pair.client_read()
    assert parsed.informational == [(103, [link])]
    assert (parsed.status, parsed.body) == (200, b"ok")


# --- resets from the handler --------------------------------------------------------------------


@feed_modes
@pytest.mark.parametrize(
    "code",
    [
        ErrorCode.UPSTREAM_UNREACHABLE,
        ErrorCode.UPSTREAM_TIMEOUT,
        ErrorCode.NOT_FOUND,
        ErrorCode.BAD_REQUEST,
        ErrorCode.OVERLOADED,
    ],
)
def test_reset_before_response_becomes_status(code: ErrorCode, bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    pair.request()
    follow = pair.respond(StreamReset(1, code))
    assert follow[0] == StreamClosed(1) and isinstance(follow[1], ConnectionClosed)
    parsed = pair.client_read()
    assert parsed.status == code.status
    assert parsed.complete
    assert parsed.body.startswith(f"{code.status} {code.reason}".encode())


@feed_modes
def test_header_timeout_mid_head_answers_408(bytewise: bool) -> None:
    """What the server does when a head does not complete in time: a 408, then close."""
    pair = H1Pair(bytewise)
    assert pair.raw(b"GET / HTTP/1.1\r\nHost: exa") == []
    assert pair.server.head_started
    follow = pair.respond(StreamReset(1, ErrorCode.REQUEST_TIMEOUT))
    assert isinstance(follow[-1], ConnectionClosed)
    parsed = parse_response(pair.server.data_to_send())
    assert (parsed.status, parsed.header(b"connection")) == (408, b"close")


@feed_modes
def test_cancelled_reset_sends_nothing(bytewise: bool) -> None:
    """ErrorCode.CANCELLED means the client went away: no 499 goes on the wire."""
    pair = H1Pair(bytewise)
    pair.request()
    follow = pair.respond(StreamReset(1, ErrorCode.CANCELLED))
    assert follow[0] == StreamClosed(1) and isinstance(follow[1], ConnectionClosed)
    assert pair.server.data_to_send() == b""
    assert pair.server.closed


@feed_modes
def test_reset_after_head_closes_connection(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    pair.request()
    pair.respond(Response(1, 200, [(b"content-length", b"10")]), Body(1, b"abc"))
    follow = pair.respond(StreamReset(1, ErrorCode.UPSTREAM_TIMEOUT))
    assert follow == [StreamClosed(1), ConnectionClosed("reset: UPSTREAM_TIMEOUT")]
    assert pair.server.closed
    wire = pair.server.data_to_send()
    assert b"504" not in wire  # too late for a status: the head already went out
    pair.client.receive_data(wire)
    pair.client.receive_data(b"")
    seen = []
    with pytest.raises(h11.RemoteProtocolError):  # the client can tell the body was cut short
        for _ in range(10):
            seen.append(pair.client.next_event())
    assert isinstance(seen[0], h11.Response) and seen[1].data == b"abc"
    # A late handler write after the close is dropped, not raised.
    assert pair.respond(Body(1, b"late"), EndBody(1)) == []
    assert pair.server.data_to_send() == b""


def test_handler_misuse_closes_instead_of_raising() -> None:
    pair = H1Pair(False)
    pair.request()
    follow = pair.respond(Body(1, b"body before head"))
    assert follow[0] == StreamClosed(1)
    assert isinstance(follow[1], ConnectionClosed)
    assert pair.server.closed


def test_push_promise_is_dropped_on_http1() -> None:
    pair = H1Pair(False)
    pair.request()
    assert pair.respond(PushPromise(1, "/a.css", [(b":authority", b"example.com")])) == []
    assert pair.server.data_to_send() == b""


# --- peer EOF --------------------------------------------------------------------------------------


@feed_modes
def test_eof_mid_body_closes_stream_and_connection(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    events = pair.raw(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    assert isinstance(events[0], Request)
    assert _body_of(events) == b"abc"
    events = pair.server.receive_data(b"")
    assert StreamClosed(1) in events
    assert isinstance(events[-1], ConnectionClosed)
    assert pair.server.closed


@feed_modes
def test_eof_mid_head_closes_connection(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    assert pair.raw(b"GET / HTTP/1.1\r\nHost: x\r\n") == []
    events = pair.server.receive_data(b"")
    assert isinstance(events[-1], ConnectionClosed)
    assert of_type(events, Request) == []
    assert pair.server.closed


@feed_modes
def test_eof_while_response_pending_closes_stream(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    pair.request()
    events = pair.server.receive_data(b"")
    assert events == [StreamClosed(1), ConnectionClosed("peer closed")]


@feed_modes
def test_eof_between_requests_closes_connection_only(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    assert pair.server.receive_data(b"") == [ConnectionClosed("peer closed")]  # before any byte
    pair = H1Pair(bytewise)
    pair.request()
    assert pair.respond(Response(1, 204), EndBody(1)) == [StreamClosed(1)]
    # No stream is open on an idle keep-alive connection, so none is reported closed.
    assert pair.server.receive_data(b"") == [ConnectionClosed("peer closed")]
    assert pair.server.closed


# --- 101 switching protocols --------------------------------------------------------------------

UPGRADE = [
    (b"host", b"example.com"),
    (b"connection", b"Upgrade"),
    (b"upgrade", b"websocket"),
    (b"sec-websocket-version", b"13"),
    (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
]


@feed_modes
def test_upgrade_turns_bytes_into_data(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    request = pair.client.send(h11.Request(method=b"GET", target=b"/ws", headers=UPGRADE))
    request += pair.client.send(h11.EndOfMessage())
    events = pair.raw(request + b"early frame")  # a client may speak first after the head
    assert [type(e) for e in events] == [Request, EndBody]
    assert (b"upgrade", b"websocket") in events[0].headers
    assert not pair.server.is_tunnel(1)
    follow = pair.respond(
        Response(1, 101, [(b"upgrade", b"websocket"), (b"connection", b"Upgrade")])
    )
    assert b"".join(e.data for e in follow) == b"early frame"
    assert all(isinstance(e, Data) for e in follow)
    assert pair.server.is_tunnel(1)
    parsed = pair.client_read()
    assert parsed.status == 101
    assert pair.client.our_state is h11.SWITCHED_PROTOCOL
    # From here on nothing is HTTP: not even bytes that look like a request.
    tunnel = feed(pair.server, b"GET / HTTP/1.1\r\n\r\n\x81\x05hello", bytewise)
    assert all(isinstance(e, Data) for e in tunnel)
    assert b"".join(e.data for e in tunnel) == b"GET / HTTP/1.1\r\n\r\n\x81\x05hello"
    assert pair.respond(Data(1, b"\x81\x02hi")) == []
    assert pair.server.data_to_send() == b"\x81\x02hi"  # raw, no chunk framing
    assert pair.server.receive_data(b"") == [EndData(1)]
    assert pair.respond(EndData(1)) == [StreamClosed(1), ConnectionClosed("tunnel closed")]
    assert pair.server.closed


@feed_modes
def test_upgrade_without_early_bytes(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    events = pair.request(target=b"/ws", headers=UPGRADE)
    assert [type(e) for e in events] == [Request, EndBody]
    assert pair.respond(Response(1, 101, [(b"upgrade", b"websocket")])) == []
    assert pair.server.is_tunnel(1)
    assert feed(pair.server, b"x", bytewise) == [Data(1, b"x")]


# --- robustness ------------------------------------------------------------------------------------


@hsettings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.sampled_from(
                [
                    b"GET / HTTP/1.1\r\n",
                    b"Host: x\r\n",
                    b"Content-Length: 5\r\n",
                    b"Transfer-Encoding: chunked\r\n",
                    b"\r\n",
                    b"5\r\nhello\r\n",
                    b"0\r\n\r\n",
                    b" folded\r\n",
                ]
            ),
        ),
        max_size=12,
    )
)
def test_arbitrary_bytes_never_raise(pieces: list[bytes]) -> None:
    server = Http1Protocol(scheme="http")
    events = []
    for piece in pieces:
        events += server.receive_data(piece)
        server.data_to_send()
    events += server.receive_data(b"")
    # EOF always ends the connection, one way or another.
    assert server.closed
    assert any(isinstance(e, ConnectionClosed) for e in events)


@feed_modes
def test_answer_before_the_body_is_in_says_connection_close(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    events = pair.raw(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    assert isinstance(events[0], Request)
    assert pair.server.peer_sending  # the server layer lingers instead of closing hard
    follow = pair.server.send(Response(1, 413, [(b"content-length", b"0")]))
    follow += pair.server.send(EndBody(1))
    assert [type(e) for e in follow] == [StreamClosed, ConnectionClosed]
    parsed = parse_response(pair.server.data_to_send())
    assert parsed.status == 413
    assert parsed.header(b"connection") == b"close"


@feed_modes
def test_a_whole_request_keeps_the_connection_and_nothing_lingers(bytewise: bool) -> None:
    pair = H1Pair(bytewise)
    events = pair.raw(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
    assert events[-1] == EndBody(1)
    assert not pair.server.peer_sending
    pair.server.send(Response(1, 200, [(b"content-length", b"0")]))
    pair.server.send(EndBody(1))
    parsed = parse_response(pair.server.data_to_send())
    assert parsed.header(b"connection") is None
    assert not pair.server.closed
    # a bodiless request that fails validation leaves nothing to linger for
    failed = pair.raw(b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n")
    assert failed[-1].reason.startswith("400")
    assert not pair.server.peer_sending
