"""`Http2Protocol` against a real h2 client, in memory, fed whole and one byte at a time.

Covers the connection preface and SETTINGS, requests and responses (pseudo-headers in,
connection-specific fields out), flow control in both directions, the stream limit, the abuse
defences (rapid reset, CONTINUATION flood, garbage), client resets, RFC 8441 extended CONNECT
tunnels and server push.
"""

from __future__ import annotations

import h2.errors
import h2.events
import h2.exceptions
import hpack
import pytest
from h2.settings import SettingCodes
from hyperframe.frame import (
    ContinuationFrame,
    Frame,
    HeadersFrame,
    WindowUpdateFrame,
)
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
    WindowOpened,
)
from bridge.protocol.http2 import PREFACE, Http2Protocol

from .helpers import H2Pair, feed, feed_modes, of_type

# Every test here runs on both HTTP/2 engines (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("h2_engine")

ErrorCodes = h2.errors.ErrorCodes


def _ready(bytewise: bool, **kwargs: object) -> H2Pair:
    pair = H2Pair(bytewise, **kwargs)  # type: ignore[arg-type]
    pair.handshake()
    return pair


def _terminated(client_events: list[h2.events.Event]) -> h2.events.ConnectionTerminated:
    (goaway,) = of_type(client_events, h2.events.ConnectionTerminated)
    return goaway


# --- preface and SETTINGS ------------------------------------------------------------------------


@feed_modes
@pytest.mark.parametrize("limit", [128, 7])
def test_preface_and_settings_exchange(limit: int, bytewise: bool) -> None:
    pair = H2Pair(bytewise, max_concurrent_streams=limit)
    server_events, client_events = pair.handshake()
    assert server_events == []  # nothing a handler needs to see
    (changed,) = of_type(client_events, h2.events.RemoteSettingsChanged)
    advertised = {code: c.new_value for code, c in changed.changed_settings.items()}
    assert advertised[SettingCodes.ENABLE_CONNECT_PROTOCOL] == 1  # RFC 8441 §3
    assert advertised[SettingCodes.MAX_CONCURRENT_STREAMS] == limit
    assert advertised[SettingCodes.INITIAL_WINDOW_SIZE] == settings.H2_INITIAL_WINDOW
    assert advertised[SettingCodes.MAX_HEADER_LIST_SIZE] == settings.MAX_HEADER_BYTES
    # The connection window is opened as far as the stream windows.
    (opened,) = of_type(client_events, h2.events.WindowUpdated)
    assert (opened.stream_id, opened.delta) == (0, settings.H2_INITIAL_WINDOW)
    # The adapter acknowledged the client's SETTINGS, the client acknowledged the adapter's.
    assert of_type(client_events, h2.events.SettingsAcknowledged)
    assert pair.client.remote_settings.enable_connect_protocol == 1
    assert pair.server.idle and not pair.server.closed


# --- requests and responses ----------------------------------------------------------------------


@feed_modes
def test_get_maps_pseudo_headers(bytewise: bool) -> None:
    pair = _ready(bytewise)
    sid = pair.get(b"/path?q=1", extra=[(b"user-agent", b"t/1"), (b"accept", b"*/*")])
    assert pair.to_server() == [
        Request(
            stream_id=sid,
            method="GET",
            target="/path?q=1",
            authority="example.com",
            scheme="https",
            headers=[(b"user-agent", b"t/1"), (b"accept", b"*/*")],
            http_version="2",
        ),
        EndBody(sid),
    ]
    assert not pair.server.idle
    assert pair.server.requests == 1


@feed_modes
def test_host_header_stands_in_for_authority(bytewise: bool) -> None:
    pair = _ready(bytewise)
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_headers(
        sid,
        [(b":method", b"GET"), (b":scheme", b"http"), (b":path", b"/"), (b"host", b"h.test")],
        end_stream=True,
    )
    (request, _end) = pair.to_server()
    assert (request.authority, request.scheme) == ("h.test", "http")


@feed_modes
def test_response_strips_connection_specific_fields(bytewise: bool) -> None:
    pair = _ready(bytewise)
    sid = pair.get()
    pair.to_server()
    follow = pair.respond(
        InformationalResponse(sid, 103, [(b"link", b"</a.css>; rel=preload")]),
        Response(
            sid,
            200,
            [
                (b"content-type", b"text/plain"),
                (b"connection", b"keep-alive"),
                (b"keep-alive", b"timeout=5"),
                (b"transfer-encoding", b"chunked"),
                (b"upgrade", b"h2c"),
                (b"proxy-connection", b"close"),
                (b"te", b"gzip"),
                (b"x-kept", b"yes"),
            ],
        ),
        Body(sid, b"hello "),
        Body(sid, b"world"),
        EndBody(sid),
    )
    assert follow == [StreamClosed(sid)]
    # h2's client validates inbound headers: a connection-specific field would be an error here.
    events = pair.to_client()
    (hints,) = of_type(events, h2.events.InformationalResponseReceived)
    assert hints.headers == [(b":status", b"103"), (b"link", b"</a.css>; rel=preload")]
    (response,) = of_type(events, h2.events.ResponseReceived)
    assert response.headers == [
        (b":status", b"200"),
        (b"content-type", b"text/plain"),
        (b"x-kept", b"yes"),
    ]
    assert b"".join(e.data for e in of_type(events, h2.events.DataReceived)) == b"hello world"
    assert [e.stream_id for e in of_type(events, h2.events.StreamEnded)] == [sid]
    assert pair.server.idle


@feed_modes
def test_two_streams_interleave(bytewise: bool) -> None:
    pair = _ready(bytewise)
    first, second = pair.get(b"/1"), pair.get(b"/2")
    events = pair.to_server()
    assert [e.target for e in of_type(events, Request)] == ["/1", "/2"]
    pair.respond(Response(second, 200), Body(second, b"two"))
    pair.respond(Response(first, 200), Body(first, b"one"), EndBody(first), EndBody(second))
    client_events = pair.to_client()
    bodies: dict[int, bytes] = {}
    for ev in of_type(client_events, h2.events.DataReceived):
        bodies[ev.stream_id] = bodies.get(ev.stream_id, b"") + ev.data
    assert bodies == {first: b"one", second: b"two"}
    assert pair.server.idle


@feed_modes
def test_response_before_request_body_ends_resets_with_no_error(bytewise: bool) -> None:
    pair = _ready(bytewise)
    sid = pair.get(b"/upload", end=False)
    pair.client.send_data(sid, b"partial")
    events = pair.to_server()
    assert b"".join(e.data for e in of_type(events, Body)) == b"partial"
    follow = pair.respond(Response(sid, 413), EndBody(sid))
    assert follow == [StreamClosed(sid)]
    client_events = pair.to_client()
    assert of_type(client_events, h2.events.StreamEnded)
    # RFC 9113 §8.1: a complete response may end an unread request with NO_ERROR.
    (reset,) = of_type(client_events, h2.events.StreamReset)
    assert reset.error_code == ErrorCodes.NO_ERROR


# --- flow control ----------------------------------------------------------------------------------


def test_prerendered_frames_are_charged_to_the_windows_and_keep_order() -> None:
    """The fan-out fast path frames DATA itself; the client must see valid frames in order
    (the response head first), and the windows must be charged exactly as h2 would."""
    window = 1000
    pair = _ready(False, client_settings={SettingCodes.INITIAL_WINDOW_SIZE: window})
    sid = pair.get(b"/feed")
    pair.to_server()
    assert pair.server.frame_prerendered(sid, b"early") is None  # no response head yet
    pair.respond(Response(sid, 200, [(b"content-type", b"text/event-stream")]))
    event = b"data: x\n\n" * 40  # 360 bytes
    first = pair.server.frame_prerendered(sid, event)
    assert first is not None
    second = pair.server.frame_prerendered(sid, event)
    assert second is not None
    assert pair.server.send_window(sid) == window - 2 * len(event)
    # A third does not fit the stream window: the caller falls back to the queued path.
    assert pair.server.frame_prerendered(sid, event) is None
    pair.respond(Body(sid, event))
    assert pair.server.pending(sid) == 3 * len(event) - window
    events = pair.client.receive_data(first + second + pair.server.data_to_send())
    kinds = [type(e) for e in events if not isinstance(e, h2.events.WindowUpdated)]
    assert kinds[0] is h2.events.ResponseReceived
    data = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
    assert data == (event * 3)[:window]  # h2 raises if a window was overrun


@feed_modes
def test_large_response_only_goes_out_within_the_window(bytewise: bool) -> None:
    window = 16_384
    pair = _ready(bytewise, client_settings={SettingCodes.INITIAL_WINDOW_SIZE: window})
    sid = pair.get(b"/big")
    pair.to_server()
    body = bytes(range(256)) * 4096  # 1 MiB
    assert pair.respond(Response(sid, 200), Body(sid, body)) == []
    assert pair.server.pending(sid) == len(body) - window
    assert pair.respond(EndBody(sid)) == []  # END_STREAM waits behind the queued bytes

    received = bytearray()
    ends = 0
    opened = closed = 0
    for _ in range(10_000):  # bounded: each round moves at least one window's worth
        client_events = pair.to_client()  # h2 raises if the adapter overran a window
        for ev in client_events:
            if isinstance(ev, h2.events.DataReceived):
                assert ends == 0, "DATA after END_STREAM"
                received += ev.data
                pair.client.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                ends += 1
        if ends:
            break
        assert pair.server.pending(sid) == len(body) - len(received)
        server_events = pair.to_server()
        opened += server_events.count(WindowOpened(sid))
        closed += server_events.count(StreamClosed(sid))
    assert bytes(received) == body
    assert ends == 1
    assert opened > 0 and closed == 1
    assert pair.server.pending(sid) == 0
    assert pair.server.idle


@feed_modes
def test_request_body_window_opens_only_when_acknowledged(
    bytewise: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A small advertised window keeps the byte-at-a-time run fast; the logic is the same.
    window = 16_384
    monkeypatch.setattr(settings, "H2_INITIAL_WINDOW", window)
    pair = _ready(bytewise)
    sid = pair.get(b"/upload", end=False)
    pair.to_server()
    assert pair.client.local_flow_control_window(sid) == window

    got = bytearray()
    for _ in range(100):  # bounded: 1000 bytes a round
        size = min(1000, pair.client.local_flow_control_window(sid))
        if size == 0:
            break
        pair.client.send_data(sid, b"u" * size)
        for event in pair.to_server():
            assert isinstance(event, Body)
            got += event.data
        # No WINDOW_UPDATE comes back while nothing is consumed.
        assert of_type(pair.to_client(), h2.events.WindowUpdated) == []
    assert len(got) == window
    assert pair.client.local_flow_control_window(sid) == 0
    with pytest.raises(h2.exceptions.FlowControlError):  # the client cannot send more
        pair.client.send_data(sid, b"x")

    pair.server.acknowledge(sid, len(got))  # the handler consumed it all
    updates = of_type(pair.to_client(), h2.events.WindowUpdated)
    assert sid in {u.stream_id for u in updates}
    assert pair.client.local_flow_control_window(sid) == window
    pair.client.send_data(sid, b"more", end_stream=True)
    events = pair.to_server()
    assert b"".join(e.data for e in of_type(events, Body)) == b"more"
    assert events[-1] == EndBody(sid)


# --- stream limit and abuse --------------------------------------------------------------------------


@feed_modes
def test_streams_beyond_the_limit_are_refused_not_fatal(bytewise: bool) -> None:
    pair = H2Pair(bytewise, max_concurrent_streams=128)
    # The client sends before it has read the adapter's SETTINGS, so it does not know the limit.
    sids = [pair.get(f"/{i}".encode()) for i in range(150)]
    events = pair.to_server()
    requests = of_type(events, Request)
    assert [r.stream_id for r in requests] == sids[:128]
    assert of_type(events, ConnectionClosed) == []
    assert pair.server.open_streams == 128

    client_events = pair.to_client()
    refused = of_type(client_events, h2.events.StreamReset)
    assert [r.stream_id for r in refused] == sids[128:]
    assert {r.error_code for r in refused} == {ErrorCodes.REFUSED_STREAM}
    assert of_type(client_events, h2.events.ConnectionTerminated) == []

    # Still usable: answer one stream, then a new one is accepted.
    assert pair.respond(Response(sids[0], 204), EndBody(sids[0])) == [StreamClosed(sids[0])]
    pair.to_server()  # the client's SETTINGS ACK
    client_events = pair.to_client()
    assert [e.stream_id for e in of_type(client_events, h2.events.ResponseReceived)] == [sids[0]]
    new = pair.get(b"/after")
    events = pair.to_server()
    assert [r.stream_id for r in of_type(events, Request)] == [new]
    assert not pair.server.closed


@feed_modes
def test_rapid_reset_gets_enhance_your_calm(bytewise: bool) -> None:
    pair = _ready(bytewise)
    for _ in range(settings.H2_MAX_RESETS):
        sid = pair.get()
        pair.client.reset_stream(sid, ErrorCodes.CANCEL)
    events = pair.to_server()
    assert len(of_type(events, StreamReset)) == settings.H2_MAX_RESETS
    assert of_type(events, ConnectionClosed) == []  # up to the limit it is tolerated

    sid = pair.get()
    pair.client.reset_stream(sid, ErrorCodes.CANCEL)
    events = pair.to_server()
    (closed,) = of_type(events, ConnectionClosed)
    assert "ENHANCE_YOUR_CALM" in closed.reason
    assert pair.server.closed
    goaway = _terminated(pair.to_client())
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    assert pair.server.receive_data(b"anything") == []


def _continuation_flood(frames: int) -> bytes:
    block = hpack.Encoder().encode(
        [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")]
    )
    head = HeadersFrame(1, data=block[:3], flags=["END_STREAM"])  # no END_HEADERS
    out = head.serialize()
    for _ in range(frames):
        out += ContinuationFrame(1, data=b"\x00\x00").serialize()
    return out


@feed_modes
def test_continuation_flood_gets_enhance_your_calm(bytewise: bool) -> None:
    pair = _ready(bytewise)
    events = feed(pair.server, _continuation_flood(200), bytewise)
    assert of_type(events, Request) == []
    (closed,) = of_type(events, ConnectionClosed)
    assert "ENHANCE_YOUR_CALM" in closed.reason
    assert _terminated(pair.to_client()).error_code == ErrorCodes.ENHANCE_YOUR_CALM


@feed_modes
def test_continuation_flood_in_the_first_packet(bytewise: bool) -> None:
    """Even before the client read our SETTINGS, the GOAWAY it gets must be parseable."""
    pair = H2Pair(bytewise)
    data = pair.client.data_to_send() + _continuation_flood(200)
    events = feed(pair.server, data, bytewise)
    assert isinstance(events[-1], ConnectionClosed)
    assert _terminated(pair.to_client()).error_code == ErrorCodes.ENHANCE_YOUR_CALM


GARBAGE = {
    "http1-request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    # Raw bytes where hyperframe refuses to build the invalid frame itself.
    "data-on-stream-0": b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x",
    "zero-window-update": b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00",
    "settings-bad-length": b"\x00\x00\x05\x04\x00\x00\x00\x00\x00abcde",
    "settings-bad-window": b"\x00\x00\x06\x04\x00\x00\x00\x00\x00\x00\x04\x80\x00\x00\x00",
    "headers-on-even-stream": HeadersFrame(2, data=b"\x82", flags=["END_HEADERS"]).serialize(),
    "bad-hpack": HeadersFrame(1, data=b"\xff\xff\xff\xff", flags=["END_HEADERS"]).serialize(),
    "huge-window-update": WindowUpdateFrame(0, window_increment=2**31 - 1).serialize(),
}


@feed_modes
@pytest.mark.parametrize("name", list(GARBAGE))
def test_garbage_after_preface_gets_goaway(name: str, bytewise: bool) -> None:
    pair = _ready(bytewise)
    events = feed(pair.server, GARBAGE[name], bytewise)  # must not raise
    assert isinstance(events[-1], ConnectionClosed)
    assert pair.server.closed
    goaway = _terminated(pair.to_client())
    assert goaway.error_code != ErrorCodes.NO_ERROR
    assert pair.server.receive_data(b"\x00" * 20) == []


@feed_modes
def test_garbage_instead_of_preface_closes(bytewise: bool) -> None:
    server = Http2Protocol(scheme="https")
    events = feed(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", bytewise)
    assert isinstance(events[-1], ConnectionClosed)
    assert server.closed


@hsettings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(st.lists(st.binary(min_size=1, max_size=64), max_size=8))
def test_arbitrary_bytes_after_preface_never_raise(pieces: list[bytes]) -> None:
    pair = _ready(False)
    events = []
    for piece in pieces:
        events += pair.server.receive_data(piece)
        pair.server.data_to_send()
    if pair.server.closed:
        assert any(isinstance(e, ConnectionClosed) for e in events)


# --- resets --------------------------------------------------------------------------------------


@feed_modes
def test_client_reset_of_open_stream(bytewise: bool) -> None:
    pair = _ready(bytewise)
    sid = pair.get(b"/upload", end=False)
    pair.client.send_data(sid, b"abc")
    assert isinstance(pair.to_server()[0], Request)
    pair.client.reset_stream(sid, ErrorCodes.CANCEL)
    assert pair.to_server() == [StreamReset(sid, ErrorCode.CANCELLED), StreamClosed(sid)]
    assert pair.server.idle
    # A handler that has not noticed yet writes into the void, not into the connection.
    assert pair.respond(Response(sid, 200), Body(sid, b"late"), EndBody(sid)) == []
    assert pair.server.data_to_send() == b""
    other = pair.get(b"/next")
    assert [type(e) for e in pair.to_server()] == [Request, EndBody]
    assert other != sid


@feed_modes
@pytest.mark.parametrize(
    "code",
    [ErrorCode.UPSTREAM_UNREACHABLE, ErrorCode.UPSTREAM_TIMEOUT, ErrorCode.NOT_FOUND],
)
def test_handler_reset_before_head_becomes_status(code: ErrorCode, bytewise: bool) -> None:
    pair = _ready(bytewise)
    sid = pair.get()
    pair.to_server()
    assert pair.respond(StreamReset(sid, code)) == [StreamClosed(sid)]
    events = pair.to_client()
    (response,) = of_type(events, h2.events.ResponseReceived)
    assert response.headers[0] == (b":status", str(code.status).encode())
    body = b"".join(e.data for e in of_type(events, h2.events.DataReceived))
    assert body.startswith(f"{code.status} {code.reason}".encode())
    assert of_type(events, h2.events.StreamEnded)


@feed_modes
def test_handler_reset_after_head_resets_stream(bytewise: bool) -> None:
    pair = _ready(bytewise)
    sid = pair.get()
    pair.to_server()
    pair.respond(Response(sid, 200), Body(sid, b"partial"))
    assert pair.respond(StreamReset(sid, ErrorCode.UPSTREAM_TIMEOUT)) == [StreamClosed(sid)]
    events = pair.to_client()
    (reset,) = of_type(events, h2.events.StreamReset)
    assert reset.error_code == ErrorCodes.INTERNAL_ERROR
    assert of_type(events, h2.events.StreamEnded) == []
    assert not pair.server.closed


@feed_modes
def test_cancelled_reset_sends_no_status(bytewise: bool) -> None:
    pair = _ready(bytewise)
    sid = pair.get()
    pair.to_server()
    assert pair.respond(StreamReset(sid, ErrorCode.CANCELLED)) == [StreamClosed(sid)]
    events = pair.to_client()
    assert of_type(events, h2.events.ResponseReceived) == []  # no 499 on the wire
    (reset,) = of_type(events, h2.events.StreamReset)
    assert reset.error_code == ErrorCodes.CANCEL


# --- extended CONNECT (RFC 8441) -----------------------------------------------------------------


@feed_modes
def test_extended_connect_becomes_a_tunnel(bytewise: bool) -> None:
    pair = _ready(bytewise)
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_headers(
        sid,
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"https"),
            (b":path", b"/ws"),
            (b":authority", b"example.com"),
            (b"sec-websocket-version", b"13"),
        ],
    )
    (request,) = pair.to_server()
    assert (request.method, request.protocol, request.target) == ("CONNECT", "websocket", "/ws")
    assert request.headers == [(b"sec-websocket-version", b"13")]
    assert not pair.server.is_tunnel(sid)

    assert pair.respond(Response(sid, 200)) == []
    assert pair.server.is_tunnel(sid)
    (accepted,) = of_type(pair.to_client(), h2.events.ResponseReceived)
    assert accepted.headers == [(b":status", b"200")]

    pair.client.send_data(sid, b"\x81\x05hello")
    events = pair.to_server()
    assert all(isinstance(e, Data) for e in events)
    assert b"".join(e.data for e in events) == b"\x81\x05hello"
    pair.server.acknowledge(sid, 7)

    assert pair.respond(Data(sid, b"\x81\x02hi")) == []
    received = of_type(pair.to_client(), h2.events.DataReceived)
    assert b"".join(e.data for e in received) == b"\x81\x02hi"

    pair.client.end_stream(sid)
    assert pair.to_server() == [EndData(sid)]
    assert pair.respond(EndData(sid)) == [StreamClosed(sid)]
    assert of_type(pair.to_client(), h2.events.StreamEnded)
    assert pair.server.idle


@feed_modes
def test_refused_connect_is_not_a_tunnel(bytewise: bool) -> None:
    pair = _ready(bytewise)
    sid = pair.client.get_next_available_stream_id()
    pair.client.send_headers(
        sid,
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"https"),
            (b":path", b"/nope"),
            (b":authority", b"example.com"),
        ],
    )
    pair.to_server()
    pair.respond(Response(sid, 404, [(b"content-length", b"0")]))
    assert not pair.server.is_tunnel(sid)
    pair.client.send_data(sid, b"x")
    assert pair.to_server() == [Body(sid, b"x")]


# --- server push ----------------------------------------------------------------------------------


@feed_modes
def test_push_promise_synthesizes_request(bytewise: bool) -> None:
    pair = _ready(bytewise)
    sid = pair.get(b"/page")
    pair.to_server()
    follow = pair.respond(
        PushPromise(sid, "/a.css", [(b":authority", b"example.com"), (b"accept", b"text/css")])
    )
    promised = sid + 1
    assert follow == [
        Request(
            stream_id=promised,
            method="GET",
            target="/a.css",
            authority="example.com",
            scheme="https",
            headers=[(b"accept", b"text/css")],
            http_version="2",
            pushed=True,
        ),
        EndBody(promised),
    ]
    (pushed,) = of_type(pair.to_client(), h2.events.PushedStreamReceived)
    assert (pushed.parent_stream_id, pushed.pushed_stream_id) == (sid, promised)
    assert pushed.headers == [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"example.com"),
        (b":path", b"/a.css"),
        (b"accept", b"text/css"),
    ]
    # The promised stream is answered like any other.
    follow = pair.respond(
        Response(promised, 200, [(b"content-type", b"text/css")]),
        Body(promised, b"a{}"),
        EndBody(promised),
    )
    assert follow == [StreamClosed(promised)]
    assert pair.respond(Response(sid, 200), EndBody(sid)) == [StreamClosed(sid)]
    events = pair.to_client()
    assert {e.stream_id for e in of_type(events, h2.events.ResponseReceived)} == {sid, promised}
    data = [(d.stream_id, d.data) for d in of_type(events, h2.events.DataReceived) if d.data]
    assert data == [(promised, b"a{}")]
    assert pair.server.idle


@feed_modes
def test_no_push_when_client_disables_it(bytewise: bool) -> None:
    pair = _ready(bytewise, client_settings={SettingCodes.ENABLE_PUSH: 0})
    sid = pair.get(b"/page")
    pair.to_server()
    assert pair.respond(PushPromise(sid, "/a.css", [(b":authority", b"example.com")])) == []
    assert pair.server.data_to_send() == b""
    assert pair.respond(Response(sid, 204), EndBody(sid)) == [StreamClosed(sid)]
    assert of_type(pair.to_client(), h2.events.PushedStreamReceived) == []


def test_no_push_when_server_disables_it() -> None:
    pair = _ready(False, enable_push=False)
    sid = pair.get(b"/page")
    pair.to_server()
    assert pair.respond(PushPromise(sid, "/a.css", [(b":authority", b"example.com")])) == []
    assert pair.server.data_to_send() == b""


@feed_modes
def test_cancelled_push_is_reset_not_answered(bytewise: bool) -> None:
    """A push whose asset failed is withdrawn with RST_STREAM(CANCEL): the client refetches."""
    pair = _ready(bytewise)
    sid = pair.get(b"/page")
    pair.to_server()
    (request, _end) = pair.respond(PushPromise(sid, "/gone.css", [(b":authority", b"e")]))
    promised = request.stream_id
    assert pair.respond(StreamReset(promised, ErrorCode.CANCELLED)) == [StreamClosed(promised)]
    events = pair.to_client()
    assert of_type(events, h2.events.PushedStreamReceived)
    assert of_type(events, h2.events.ResponseReceived) == []
    (reset,) = of_type(events, h2.events.StreamReset)
    assert (reset.stream_id, reset.error_code) == (promised, ErrorCodes.CANCEL)


# --- shutdown ------------------------------------------------------------------------------------


@feed_modes
def test_shutdown_sends_goaway_and_drops_late_writes(bytewise: bool) -> None:
    pair = _ready(bytewise)
    sid = pair.get()
    pair.to_server()
    pair.server.shutdown()
    assert pair.server.closed
    goaway = _terminated(pair.to_client())
    assert (goaway.error_code, goaway.last_stream_id) == (ErrorCodes.NO_ERROR, sid)
    # The connection is over: a handler still writing must not get an exception from h2.
    assert pair.respond(Response(sid, 200), Body(sid, b"late"), EndBody(sid)) == []
    assert pair.server.data_to_send() == b""


@feed_modes
def test_a_response_queued_before_shutdown_arrives_before_the_goaway(bytewise: bool) -> None:
    """Graceful stop: the last response's frames, then GOAWAY NO_ERROR (libnghttp2 would put
    the GOAWAY first, and a client that stops at it would lose the response's end)."""
    pair = _ready(bytewise)
    sid = pair.get()
    pair.to_server()
    pair.respond(Response(sid, 200), Body(sid, b"finished"), EndBody(sid))
    pair.server.shutdown()
    client_events = pair.to_client()
    kinds = [type(e) for e in client_events]
    assert kinds.index(h2.events.StreamEnded) < kinds.index(h2.events.ConnectionTerminated)
    assert b"".join(e.data for e in of_type(client_events, h2.events.DataReceived)) == b"finished"


def test_preface_constant_matches_rfc() -> None:
    assert PREFACE == b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # RFC 9113 §3.4


def _frames(data: bytes) -> list[Frame]:
    frames = []
    while data:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames


@feed_modes
def test_a_whole_response_ends_with_its_last_data_frame(bytewise: bool) -> None:
    pair = _ready(bytewise)
    sid = pair.get()
    pair.to_server()
    head = Response(sid, 200, [(b"content-length", b"5")])
    assert pair.server.send_all([head, Body(sid, b"hello"), EndBody(sid)]) == [StreamClosed(sid)]
    data = pair.server.data_to_send()
    frames = [f for f in _frames(data) if f.stream_id == sid]
    assert [type(f).__name__ for f in frames] == ["HeadersFrame", "DataFrame"]
    assert frames[1].data == b"hello" and "END_STREAM" in frames[1].flags
    events = pair.client.receive_data(data)
    assert b"".join(e.data for e in of_type(events, h2.events.DataReceived)) == b"hello"
    assert of_type(events, h2.events.StreamEnded)


@feed_modes
def test_a_whole_response_beyond_the_window_ends_when_its_rest_is_sent(bytewise: bool) -> None:
    pair = _ready(bytewise, client_settings={SettingCodes.INITIAL_WINDOW_SIZE: 3})
    sid = pair.get()
    pair.to_server()
    assert pair.server.send_all([Response(sid, 200), Body(sid, b"hello"), EndBody(sid)]) == []
    events = pair.to_client()
    assert b"".join(e.data for e in of_type(events, h2.events.DataReceived)) == b"hel"
    assert not of_type(events, h2.events.StreamEnded)
    assert pair.server.pending(sid) == 2
    pair.client.increment_flow_control_window(10, stream_id=sid)
    assert StreamClosed(sid) in pair.to_server()
    events = pair.to_client()
    assert b"".join(e.data for e in of_type(events, h2.events.DataReceived)) == b"lo"
    assert of_type(events, h2.events.StreamEnded)
