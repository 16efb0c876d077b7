"""The sans-IO adapters in memory against the real client-side libraries (h11, h2), each
scenario fed whole and one byte at a time. Assertions are on events and bytes."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import h11
import pytest
from hyperframe.frame import ContinuationFrame, HeadersFrame

from bridge import settings
from bridge.errors import ErrorCode
from bridge.events import (
    Body,
    ConnectionClosed,
    Data,
    EndBody,
    InformationalResponse,
    PushPromise,
    Request,
    Response,
    StreamClosed,
    StreamReset,
    WindowOpened,
)
from bridge.protocol.http1 import Http1Protocol
from bridge.protocol.http2 import Http2Protocol

FEEDS = ["whole", "bytewise"]


def feed(adapter, data: bytes, how: str) -> list:  # type: ignore[no-untyped-def]
    if how == "whole":
        return adapter.receive_data(data)
    events = []
    for i in range(len(data)):
        events += adapter.receive_data(data[i : i + 1])
    return events


def h11_response(data: bytes) -> list[h11.Event]:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(data)
    out = []
    while True:
        event = client.next_event()
        if event in (h11.NEED_DATA, h11.PAUSED):
            return out
        out.append(event)
        if isinstance(event, h11.EndOfMessage):
            return out


# --- HTTP/1.1 ------------------------------------------------------------------------------


@pytest.mark.parametrize("how", FEEDS)
def test_http1_get_and_response(how: str) -> None:
    server = Http1Protocol(scheme="https")
    events = feed(server, b"GET /a?b=1 HTTP/1.1\r\nHost: example.test\r\nX-Thing: v\r\n\r\n", how)
    assert events == [
        Request(
            1,
            "GET",
            "/a?b=1",
            "example.test",
            "https",
            [(b"host", b"example.test"), (b"x-thing", b"v")],
            "1.1",
        ),
        EndBody(1),
    ]
    server.send(Response(1, 200, [(b"content-length", b"5")]))
    server.send(Body(1, b"hello"))
    assert server.send(EndBody(1)) == [StreamClosed(1)]
    response, data, end = h11_response(server.data_to_send())
    assert (response.status_code, response.reason) == (200, b"OK")
    assert data.data == b"hello" and isinstance(end, h11.EndOfMessage)
    assert server.idle


@pytest.mark.parametrize("how", FEEDS)
def test_http1_pipelined_requests_answered_in_order(how: str) -> None:
    server = Http1Protocol(scheme="http")
    events = feed(
        server, b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n", how
    )
    assert [e.target for e in events if isinstance(e, Request)] == ["/1"]  # one at a time
    server.send(Response(1, 200, [(b"content-length", b"0")]))
    follow = server.send(EndBody(1))
    assert follow[0] == StreamClosed(1)
    assert [e.target for e in follow if isinstance(e, Request)] == ["/2"]


@pytest.mark.parametrize("how", FEEDS)
@pytest.mark.parametrize(
    "body",
    [
        b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world",
        b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    ],
    ids=["length", "chunked"],
)
def test_http1_request_bodies(how: str, body: bytes) -> None:
    events = feed(Http1Protocol(scheme="http"), body, how)
    assert b"".join(e.data for e in events if isinstance(e, Body)) == b"hello world"
    assert isinstance(events[-1], EndBody)


BAD = [
    (b"NOT HTTP AT ALL\r\n\r\n", 400),
    (
        b"GET / HTTP/1.1\r\nHost: x\r\nA: " + b"a" * (settings.MAX_HEADER_BYTES + 10) + b"\r\n\r\n",
        431,
    ),
    (
        b"GET / HTTP/1.1\r\nHost: x\r\n"
        + b"".join(b"H%d: v\r\n" % i for i in range(settings.MAX_HEADER_COUNT + 1))
        + b"\r\n",
        431,
    ),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\nHost: x\r\nA: b\r\n\tc\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400),
]


@pytest.mark.parametrize("how", FEEDS)
@pytest.mark.parametrize(
    "data,status",
    BAD,
    ids=[
        "garbage",
        "big-head",
        "many-headers",
        "cl-te",
        "dup-cl",
        "bad-chunk",
        "gzip-te",
        "http2-line",
        "obs-fold",
        "dup-host",
    ],
)
def test_http1_bad_requests(how: str, data: bytes, status: int) -> None:
    server = Http1Protocol(scheme="http")
    events = feed(server, data, how)
    assert isinstance(events[-1], ConnectionClosed), events[-3:]
    out = server.data_to_send()
    assert out.startswith(b"HTTP/1.1 %d " % status), out[:80]
    assert b"connection: close" in out
    assert server.closed and server.receive_data(b"GET / HTTP/1.1\r\n\r\n") == []


def test_http1_informational_not_to_http10() -> None:
    for version, expect in ((b"1.1", True), (b"1.0", False)):
        server = Http1Protocol(scheme="http")
        server.receive_data(b"GET / HTTP/" + version + b"\r\nHost: x\r\n\r\n")
        server.send(InformationalResponse(1, 103, [(b"link", b"</a.css>; rel=preload")]))
        assert (b"103" in server.data_to_send()) is expect
        server.send(Response(1, 200, [(b"content-length", b"0")]))
        events = server.send(EndBody(1))
        if version == b"1.0":
            assert ConnectionClosed("not keep-alive") in events


def test_http1_reset_after_head_closes_and_eof_mid_request() -> None:
    server = Http1Protocol(scheme="http")
    server.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    server.send(Response(1, 200, []))
    assert isinstance(
        server.send(StreamReset(1, ErrorCode.UPSTREAM_UNREACHABLE))[-1], ConnectionClosed
    )
    half = Http1Protocol(scheme="http")
    half.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    events = half.receive_data(b"")
    assert StreamClosed(1) in events and isinstance(events[-1], ConnectionClosed)


def test_http1_upgrade_turns_into_a_tunnel() -> None:
    server = Http1Protocol(scheme="http")
    server.receive_data(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nEARLY"
    )
    follow = server.send(
        Response(1, 101, [(b"upgrade", b"websocket"), (b"connection", b"Upgrade")])
    )
    assert follow == [Data(1, b"EARLY")]
    assert server.data_to_send().startswith(b"HTTP/1.1 101 ")
    assert server.receive_data(b"\x81\x00") == [Data(1, b"\x81\x00")]
    server.send(Data(1, b"\x81\x02hi"))
    assert server.data_to_send() == b"\x81\x02hi"


# --- HTTP/2 --------------------------------------------------------------------------------


def h2_pair(**server_args: object) -> tuple[h2.connection.H2Connection, Http2Protocol]:
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    server = Http2Protocol(scheme="https", **server_args)  # type: ignore[arg-type]
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


GET = [
    (b":method", b"GET"),
    (b":scheme", b"https"),
    (b":authority", b"example.test"),
    (b":path", b"/x"),
]


@pytest.mark.parametrize("how", FEEDS)
def test_http2_request_response(how: str) -> None:
    client, server = h2_pair()
    assert client.remote_settings.enable_connect_protocol == 1
    assert client.remote_settings.max_concurrent_streams == 128
    client.send_headers(1, [*GET, (b"cookie", b"a=1"), (b"cookie", b"b=2")], end_stream=True)
    events = feed(server, client.data_to_send(), how)
    request = events[0]
    assert isinstance(request, Request)
    assert (request.method, request.target, request.authority, request.http_version) == (
        "GET",
        "/x",
        "example.test",
        "2",
    )
    assert request.headers == [(b"cookie", b"a=1; b=2")]  # RFC 9113 §8.2.3, joined by h2
    assert events[1] == EndBody(1)
    server.send(
        Response(
            1,
            200,
            [(b"connection", b"keep-alive"), (b"transfer-encoding", b"chunked"), (b"x", b"y")],
        )
    )
    server.send(Body(1, b"hi"))
    assert server.send(EndBody(1)) == [StreamClosed(1)]
    received = client.receive_data(server.data_to_send())
    head = next(e for e in received if isinstance(e, h2.events.ResponseReceived))
    assert dict(head.headers) == {b":status": b"200", b"x": b"y"}
    assert any(isinstance(e, h2.events.StreamEnded) for e in received)


def test_http2_outbound_flow_control() -> None:
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1000}
    )
    client.initiate_connection()
    server = Http2Protocol(scheme="https")
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    client.send_headers(1, GET, end_stream=True)
    server.receive_data(client.data_to_send())
    body = bytes(range(256)) * 4000  # ~1 MB
    server.send(Response(1, 200, []))
    server.send(Body(1, body))
    server.send(EndBody(1))
    got = b""
    ended = False
    for _ in range(5000):
        events = client.receive_data(server.data_to_send())
        for event in events:
            if isinstance(event, h2.events.DataReceived):
                got += event.data
                client.acknowledge_received_data(event.flow_controlled_length, 1)
            ended = ended or isinstance(event, h2.events.StreamEnded)
        assert server.pending(1) <= len(body)
        if ended:
            break
        opened = server.receive_data(client.data_to_send())
        assert all(isinstance(e, WindowOpened | StreamClosed) for e in opened)
    assert ended and got == body


def test_http2_inbound_window_only_opens_when_consumed() -> None:
    client, server = h2_pair()
    client.send_headers(1, [(b":method", b"POST"), *GET[1:3], (b":path", b"/up")])
    server.receive_data(client.data_to_send())
    window = client.local_flow_control_window(1)
    for start in range(0, window, 16384):
        client.send_data(1, b"x" * min(16384, window - start))
    events = server.receive_data(client.data_to_send())
    assert sum(len(e.data) for e in events if isinstance(e, Body)) == window
    client.receive_data(server.data_to_send())
    assert client.local_flow_control_window(1) == 0  # nothing consumed: no credit
    server.acknowledge(1, window)
    client.receive_data(server.data_to_send())
    assert client.local_flow_control_window(1) > 0


def test_http2_streams_beyond_the_limit_are_refused() -> None:
    client, server = h2_pair(max_concurrent_streams=4)
    # a client that ignores the advertised limit
    client.remote_settings = h2.settings.Settings(
        client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000}
    )
    for sid in range(1, 13, 2):
        client.send_headers(sid, GET, end_stream=True)
    events = server.receive_data(client.data_to_send())
    assert len([e for e in events if isinstance(e, Request)]) == 4
    resets = [
        e
        for e in client.receive_data(server.data_to_send())
        if isinstance(e, h2.events.StreamReset)
    ]
    assert [(e.stream_id, e.error_code) for e in resets] == [
        (9, h2.errors.ErrorCodes.REFUSED_STREAM),
        (11, h2.errors.ErrorCodes.REFUSED_STREAM),
    ]
    server.send(Response(1, 200, []))
    assert server.send(EndBody(1)) == [StreamClosed(1)]  # the connection is still usable


def test_http2_rapid_reset_gets_enhance_your_calm() -> None:
    client, server = h2_pair()
    events = []
    for sid in range(1, 2 * (settings.H2_MAX_RESETS + 5), 2):
        client.send_headers(sid, GET, end_stream=True)
        client.reset_stream(sid)
        events += server.receive_data(client.data_to_send())
        if server.closed:
            break
    assert server.closed and isinstance(events[-1], ConnectionClosed)
    goaway = [
        e
        for e in client.receive_data(server.data_to_send())
        if isinstance(e, h2.events.ConnectionTerminated)
    ]
    assert goaway[0].error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


def test_http2_continuation_flood_gets_enhance_your_calm() -> None:
    client, server = h2_pair()
    headers = HeadersFrame(1)
    headers.data = client.encoder.encode(GET)[:5]
    flood = headers.serialize()
    for _ in range(100):
        frame = ContinuationFrame(1)
        frame.data = b"\x00" * 100
        flood += frame.serialize()
    events = server.receive_data(flood)
    assert isinstance(events[-1], ConnectionClosed)
    goaway = [
        e
        for e in client.receive_data(server.data_to_send())
        if isinstance(e, h2.events.ConnectionTerminated)
    ]
    assert goaway[0].error_code == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM


@pytest.mark.parametrize("how", FEEDS)
def test_http2_garbage_never_raises(how: str) -> None:
    server = Http2Protocol(scheme="https")
    for junk in (
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\x00\x00\x00\x00\x00\x00" + b"x" * 20,
        b"GET / HTTP/1.1\r\n\r\n",  # HTTP/1.1 on an h2 connection: a bad preface
    ):
        server = Http2Protocol(scheme="https")
        events = feed(server, junk, how)
        assert events and isinstance(events[-1], ConnectionClosed)
        assert server.closed


def test_http2_client_reset_and_extended_connect() -> None:
    client, server = h2_pair()
    client.send_headers(1, GET)
    server.receive_data(client.data_to_send())
    client.reset_stream(1)
    assert server.receive_data(client.data_to_send()) == [
        StreamReset(1, ErrorCode.CANCELLED),
        StreamClosed(1),
    ]
    client.send_headers(
        3,
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"https"),
            (b":authority", b"x"),
            (b":path", b"/ws"),
        ],
    )
    [request] = server.receive_data(client.data_to_send())
    assert (request.method, request.protocol) == ("CONNECT", "websocket")
    server.send(Response(3, 200, []))
    client.receive_data(server.data_to_send())
    client.send_data(3, b"\x81\x80abcd")
    assert server.receive_data(client.data_to_send()) == [Data(3, b"\x81\x80abcd")]


def test_http2_push_promise() -> None:
    client, server = h2_pair()
    client.send_headers(1, GET, end_stream=True)
    server.receive_data(client.data_to_send())
    follow = server.send(
        PushPromise(1, "/app.css", [(b":authority", b"example.test"), (b"user-agent", b"t")])
    )
    pushed = follow[0]
    assert isinstance(pushed, Request) and pushed.pushed and pushed.target == "/app.css"
    assert follow[1] == EndBody(pushed.stream_id)
    [promise] = [
        e
        for e in client.receive_data(server.data_to_send())
        if isinstance(e, h2.events.PushedStreamReceived)
    ]
    assert dict(promise.headers)[b":path"] == b"/app.css"
    assert dict(promise.headers)[b"user-agent"] == b"t"
    # a client that disabled push gets no promise
    quiet = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    quiet.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.ENABLE_PUSH: 0}
    )
    quiet.initiate_connection()
    server = Http2Protocol(scheme="https")
    server.receive_data(quiet.data_to_send())
    quiet.receive_data(server.data_to_send())
    server.receive_data(quiet.data_to_send())
    quiet.send_headers(1, GET, end_stream=True)
    server.receive_data(quiet.data_to_send())
    assert server.send(PushPromise(1, "/app.css", [(b":authority", b"x")])) == []
