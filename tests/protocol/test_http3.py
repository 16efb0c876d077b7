"""`Http3Protocol` and the QUIC gate against aioquic's own client, in memory, whole datagrams.

A client `QuicConnection` + `H3Connection` and a bridge `ServerQuic` + `Http3Protocol` trade
datagrams through lists on a fake clock: requests and responses, bodies both ways with
consumption-paced receive windows, trailers, resets both ways, 103, RFC 9220 extended CONNECT,
push only after MAX_PUSH_ID, the pre-rendered DATA fast path, GOAWAY, and garbage.
"""

from __future__ import annotations

import os
from pathlib import Path

import aioquic.h3.events as h3e
import pytest
from aioquic import tls
from aioquic.h3.connection import H3_ALPN, H3Connection, Setting
from aioquic.h3.connection import ErrorCode as H3Code
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent
from aioquic.quic.events import StreamReset as QuicStreamReset
from aioquic.quic.packet import QuicProtocolVersion
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
    Event,
    InformationalResponse,
    PushPromise,
    Request,
    Response,
    StreamClosed,
    StreamReset,
    WindowOpened,
)
from bridge.protocol.http3 import Http3Protocol, h3_code
from bridge.protocol.quic import (
    MIN_INITIAL_SIZE,
    QuicGate,
    ServerQuic,
    Verdict,
    peek_header,
    server_configuration,
)

CLIENT = ("127.0.0.2", 4433)
SERVER = ("127.0.0.1", 443)
WINDOW = 64 * 1024


class NoPushH3(H3Connection):
    """An aioquic client that never sends MAX_PUSH_ID (it grants no push ids)."""

    def _init_connection(self) -> None:
        self._max_push_id = None
        super()._init_connection()


class H3Pair:
    """An aioquic HTTP/3 client and bridge's server adapter joined by datagram lists."""

    def __init__(self, certs: Path, *, push: bool = False, window: int = WINDOW) -> None:
        self.now = 1000.0
        client_config = QuicConfiguration(is_client=True, alpn_protocols=list(H3_ALPN))
        client_config.load_verify_locations(str(certs / "ca.crt"))
        client_config.server_name = "localhost"
        self.client_quic = QuicConnection(configuration=client_config)
        self.client = (H3Connection if push else NoPushH3)(self.client_quic)
        server_config = server_configuration(
            str(certs / "server.crt"),
            str(certs / "server.key"),
            idle_timeout=60.0,
            stream_window=window,
        )
        self.server_quic: ServerQuic | None = None
        self.server_config = server_config
        self.window = window
        self.adapter: Http3Protocol | None = None
        self.server_events: list[Event] = []
        self.client_events: list[h3e.H3Event] = []
        self.client_quic_events: list[QuicEvent] = []
        self.client_quic.connect(SERVER, now=self.now)

    def _server_receive(self, data: bytes) -> None:
        if self.server_quic is None:
            header = peek_header(data)
            assert header is not None
            self.server_quic = ServerQuic(
                stream_window=self.window,
                configuration=self.server_config,
                original_destination_connection_id=header.destination_cid,
            )
            self.adapter = Http3Protocol(self.server_quic)
        self.server_quic.receive_datagram(data, CLIENT, now=self.now)
        self._server_events()

    def _server_events(self) -> None:
        assert self.server_quic is not None and self.adapter is not None
        while (event := self.server_quic.next_event()) is not None:
            self.server_events.extend(self.adapter.receive_event(event))

    def pump(self, rounds: int = 20) -> None:
        for _ in range(rounds):
            moved = False
            for data, _addr in self.client_quic.datagrams_to_send(now=self.now):
                moved = True
                self._server_receive(data)
            if self.server_quic is not None:
                for data, _addr in self.server_quic.datagrams_to_send(now=self.now):
                    moved = True
                    self.client_quic.receive_datagram(data, SERVER, now=self.now)
                assert self.adapter is not None
                self.server_events.extend(self.adapter.drained())
            while (event := self.client_quic.next_event()) is not None:
                self.client_quic_events.append(event)
                self.client_events.extend(self.client.handle_event(event))
            self.now += 0.001
            if not moved:
                return

    @property
    def server(self) -> Http3Protocol:
        assert self.adapter is not None
        return self.adapter

    def take(self) -> list[Event]:
        events, self.server_events = self.server_events, []
        return events

    def take_client(self) -> list[h3e.H3Event]:
        events, self.client_events = self.client_events, []
        return events

    def send(self, event: Event) -> list[Event]:
        out = self.server.send(event)
        self.pump()
        return out

    def request(
        self,
        path: str = "/",
        method: str = "GET",
        *,
        end: bool = True,
        extra=(),
    ) -> int:
        sid = self.client_quic.get_next_available_stream_id()
        headers = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", path.encode()),
            *extra,
        ]
        self.client.send_headers(sid, headers, end_stream=end)
        self.pump()
        return sid


def ready(certs: Path, **kwargs: object) -> H3Pair:
    pair = H3Pair(certs, **kwargs)  # type: ignore[arg-type]
    pair.pump()
    pair.take()
    return pair


def of(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def body_of(events: list[h3e.H3Event], sid: int) -> bytes:
    return b"".join(
        e.data for e in events if isinstance(e, h3e.DataReceived) and e.stream_id == sid
    )


# --- requests and responses ------------------------------------------------------------------------


def test_get_becomes_request_and_response_reaches_client(certs: Path) -> None:
    pair = ready(certs)
    sid = pair.request("/a?b=1", extra=[(b"user-agent", b"t")])
    events = pair.take()
    (req,) = of(events, Request)
    assert (req.method, req.target, req.authority, req.scheme) == (
        "GET",
        "/a?b=1",
        "localhost",
        "https",
    )
    assert req.http_version == "3" and req.headers == [(b"user-agent", b"t")]
    assert of(events, EndBody) == [EndBody(sid)]
    pair.send(Response(sid, 200, [(b"content-type", b"text/plain"), (b"connection", b"close")]))
    pair.send(Body(sid, b"hello"))
    out = pair.server.send(EndBody(sid))
    assert out == [StreamClosed(sid)]
    pair.pump()
    got = pair.take_client()
    (head,) = of(got, h3e.HeadersReceived)
    assert (b":status", b"200") in head.headers
    assert all(name != b"connection" for name, _ in head.headers)  # RFC 9114 §4.2
    assert body_of(got, sid) == b"hello"
    assert any(isinstance(e, h3e.DataReceived) and e.stream_ended for e in got)
    assert pair.server.idle


def answer(pair: H3Pair, sid: int, body: bytes) -> bytes:
    """Answer the request on `sid` with `body`; what the client received."""
    pair.take()
    pair.send(Response(sid, 200, []))
    pair.send(Body(sid, body))
    pair.send(EndBody(sid))
    pair.pump()
    return body_of(pair.take_client(), sid)


def test_a_settled_connection_serves_requests_and_key_updates(certs: Path) -> None:
    # The driver settles every connection once its handshake completes (the handshake's
    # buffers and keys are given back); nothing after that may need them.
    pair = ready(certs)
    assert pair.server_quic is not None
    pair.server_quic.settle()
    assert answer(pair, pair.request("/one"), b"first") == b"first"
    pair.client_quic.request_key_update()  # RFC 9001 §6: new 1-RTT keys, no TLS involved
    assert answer(pair, pair.request("/two"), b"second") == b"second"
    pair.client_quic.request_key_update()
    assert answer(pair, pair.request("/three"), b"third") == b"third"


def test_a_handshake_message_after_settling_is_a_tls_alert(certs: Path) -> None:
    # A server's TLS 1.3 context takes no handshake message once the handshake is done: a
    # client that sends one gets CRYPTO_ERROR + unexpected_message (RFC 9001 §4.8), and the
    # settled connection has no output buffer left that the alert path could need.
    pair = ready(certs)
    assert pair.server_quic is not None
    pair.server_quic.settle()
    stream = pair.client_quic._crypto_streams[tls.Epoch.ONE_RTT]
    stream.sender.write(b"\x01\x00\x00\x04abcd")  # a ClientHello's type, 4 bytes of body
    pair.pump()
    closed = pair.client_quic._close_event  # the server's CONNECTION_CLOSE, as received
    assert closed is not None
    assert closed.error_code == 0x100 + 10  # TLS alert 10, unexpected_message


def test_informational_103_precedes_response(certs: Path) -> None:
    pair = ready(certs)
    sid = pair.request()
    pair.take()
    pair.send(InformationalResponse(sid, 103, [(b"link", b"</a.css>; rel=preload")]))
    pair.send(Response(sid, 200, []))
    pair.send(EndBody(sid))
    heads = of(pair.take_client(), h3e.HeadersReceived)
    assert [dict(h.headers)[b":status"] for h in heads] == [b"103", b"200"]


def test_request_body_window_follows_consumption(certs: Path) -> None:
    pair = ready(certs)
    sid = pair.request("/up", "POST", end=False)
    pair.take()
    payload = os.urandom(4 * WINDOW)
    pair.client.send_data(sid, payload, end_stream=True)
    pair.pump()
    got = b"".join(e.data for e in of(pair.take(), Body))
    # Not acknowledged: the client may not send beyond the stream window.
    assert 0 < len(got) <= WINDOW
    received = got
    for _ in range(40):
        pair.server.acknowledge(sid, len(got))
        pair.pump()
        events = pair.take()
        got = b"".join(e.data for e in of(events, Body))
        received += got
        if of(events, EndBody):
            break
    assert received == payload


def test_response_queue_is_counted_and_drains(certs: Path) -> None:
    pair = ready(certs)
    sid = pair.request()
    pair.take()
    pair.server.send(Response(sid, 200, []))
    big = b"x" * (settings.BODY_CHUNK * 8)
    pair.server.send(Body(sid, big))
    assert pair.server.pending(sid) > settings.BODY_CHUNK  # nothing left in a packet yet
    pair.pump(200)
    assert pair.server.pending(sid) <= settings.BODY_CHUNK
    assert WindowOpened(sid) in pair.take()
    assert body_of(pair.take_client(), sid) == big


def test_trailers_from_client_end_the_body(certs: Path) -> None:
    pair = ready(certs)
    sid = pair.request("/t", "POST", end=False)
    pair.client.send_data(sid, b"abc", end_stream=False)
    pair.client.send_headers(sid, [(b"x-checksum", b"1")], end_stream=True)
    pair.pump()
    events = pair.take()
    assert [e.data for e in of(events, Body)] == [b"abc"]
    assert of(events, EndBody) == [EndBody(sid)]


def test_header_limit_answers_431(certs: Path) -> None:
    pair = ready(certs)
    pair.server.max_header_bytes = 200
    sid = pair.request(extra=[(b"x-big", b"v" * 300)])
    assert not of(pair.take(), Request)
    pair.pump()
    (head,) = of(pair.take_client(), h3e.HeadersReceived)
    assert dict(head.headers)[b":status"] == b"431"
    assert sid not in pair.server._streams


def test_stream_limit_rejects_extra_request(certs: Path) -> None:
    pair = ready(certs)
    pair.server.max_concurrent_streams = 1
    pair.request()
    second = pair.request()
    assert len(of(pair.take(), Request)) == 1
    resets = [e for e in pair.client_quic_events if isinstance(e, QuicStreamReset)]
    assert [(r.stream_id, r.error_code) for r in resets] == [(second, H3Code.H3_REQUEST_REJECTED)]


# --- resets -------------------------------------------------------------------------------------


def test_client_reset_becomes_stream_reset(certs: Path) -> None:
    pair = ready(certs)
    sid = pair.request(end=False)
    pair.take()
    pair.client_quic.reset_stream(sid, H3Code.H3_REQUEST_CANCELLED)
    pair.pump()
    events = pair.take()
    assert StreamReset(sid, ErrorCode.CANCELLED) in events and StreamClosed(sid) in events
    assert pair.server.idle


def test_reset_before_head_is_an_error_page_after_is_a_reset(certs: Path) -> None:
    pair = ready(certs)
    first = pair.request()
    second = pair.request()
    pair.take()
    pair.send(StreamReset(first, ErrorCode.UPSTREAM_TIMEOUT))
    pair.send(Response(second, 200, []))
    pair.send(StreamReset(second, ErrorCode.UPSTREAM_TIMEOUT))
    got = pair.take_client()
    (head,) = [h for h in of(got, h3e.HeadersReceived) if h.stream_id == first]
    assert dict(head.headers)[b":status"] == b"504"
    assert b"504" in body_of(got, first)
    resets = [e for e in pair.client_quic_events if isinstance(e, QuicStreamReset)]
    assert [(r.stream_id, r.error_code) for r in resets] == [(second, H3Code.H3_INTERNAL_ERROR)]
    assert pair.server.idle


def test_error_codes_map_exhaustively() -> None:
    assert {h3_code(code) for code in ErrorCode} <= set(H3Code)
    assert h3_code(ErrorCode.CANCELLED) == H3Code.H3_REQUEST_CANCELLED


# --- extended CONNECT (RFC 9220) ----------------------------------------------------------------


def test_server_enables_connect_protocol(certs: Path) -> None:
    pair = ready(certs)
    assert pair.client.received_settings is not None
    assert pair.client.received_settings.get(Setting.ENABLE_CONNECT_PROTOCOL) == 1


def test_websocket_connect_becomes_tunnel(certs: Path) -> None:
    pair = ready(certs)
    sid = pair.request(
        "/ws",
        "CONNECT",
        end=False,
        extra=[(b":protocol", b"websocket"), (b"sec-websocket-version", b"13")],
    )
    (req,) = of(pair.take(), Request)
    assert (req.method, req.protocol, req.http_version) == ("CONNECT", "websocket", "3")
    pair.send(Response(sid, 200, []))
    assert pair.server.is_tunnel(sid)
    pair.client.send_data(sid, b"\x81\x00", end_stream=False)
    pair.pump()
    assert of(pair.take(), Data) == [Data(sid, b"\x81\x00")]
    pair.send(Data(sid, b"\x81\x02hi"))
    assert body_of(pair.take_client(), sid) == b"\x81\x02hi"
    pair.client.send_data(sid, b"", end_stream=True)
    pair.pump()
    assert EndData(sid) in pair.take()


# --- the pre-rendered fast path -----------------------------------------------------------------


def test_frame_prerendered_is_a_data_frame(certs: Path) -> None:
    pair = ready(certs)
    sid = pair.request()
    pair.take()
    server = pair.server
    assert server.frame_prerendered(sid, b"early") is None  # no head yet
    server.send(Response(sid, 200, [(b"content-type", b"text/event-stream")]))
    for n in range(3):
        framed = server.frame_prerendered(sid, b"data: %d\n\n" % n)
        assert framed is not None
        server.write_framed(sid, framed)
    big = b"y" * 70000  # a four-byte length varint
    shared = server.body_framing(sid).frame(big)  # what the hub caches for every stream
    assert shared[:5] == b"\x00\x80\x01\x11\x70"
    assert server.frame_prerendered(sid, shared, framed=True) == shared
    server.write_framed(sid, shared)
    pair.pump(100)
    assert body_of(pair.take_client(), sid) == b"data: 0\n\ndata: 1\n\ndata: 2\n\n" + big
    assert server.frame_prerendered(sid + 4, b"x") is None  # unknown stream


# --- push -------------------------------------------------------------------------------------


def test_push_only_after_max_push_id(certs: Path) -> None:
    pair = ready(certs, push=False)
    sid = pair.request()
    pair.take()
    assert not pair.server.can_push()
    assert pair.send(PushPromise(sid, "/a.css", [(b":authority", b"localhost")])) == []
    assert not of(pair.take_client(), h3e.PushPromiseReceived)

    pushing = ready(certs, push=True)
    sid = pushing.request()
    pushing.take()
    assert pushing.server.can_push()
    out = pushing.server.send(PushPromise(sid, "/a.css", [(b":authority", b"localhost")]))
    (pushed,) = of(out, Request)
    assert pushed.pushed and pushed.target == "/a.css" and pushed.http_version == "3"
    pushing.send(Response(pushed.stream_id, 200, [(b"content-type", b"text/css")]))
    pushing.send(Body(pushed.stream_id, b"a{}"))
    pushing.send(EndBody(pushed.stream_id))
    got = pushing.take_client()
    (promise,) = of(got, h3e.PushPromiseReceived)
    assert (b":path", b"/a.css") in promise.headers
    data = [e for e in got if isinstance(e, h3e.DataReceived) and e.push_id == promise.push_id]
    assert b"".join(e.data for e in data) == b"a{}"


# --- lifetime and garbage -----------------------------------------------------------------------


def test_goaway_rejects_later_requests_and_closes(certs: Path) -> None:
    pair = ready(certs)
    sid = pair.request()
    pair.take()
    pair.server.go_away()
    pair.pump()
    later = pair.request()
    assert not of(pair.take(), Request)
    resets = [e for e in pair.client_quic_events if isinstance(e, QuicStreamReset)]
    assert [r.stream_id for r in resets] == [later]
    pair.send(Response(sid, 200, []))
    pair.send(EndBody(sid))
    pair.server.shutdown()
    pair.pump()
    closed = pair.client_quic._close_event  # the client is draining: its close is known
    assert isinstance(closed, ConnectionTerminated) and closed.error_code == H3Code.H3_NO_ERROR


def test_garbage_and_truncated_datagrams_leave_the_connection_working(certs: Path) -> None:
    pair = ready(certs)
    quic = pair.server_quic
    assert quic is not None
    for size in (0, 1, 7, 40, 1200, 1500):
        quic.receive_datagram(os.urandom(size), CLIENT, now=pair.now)
    # A real packet of this connection, cut short: fails decryption, is dropped.
    sid = pair.client_quic.get_next_available_stream_id()
    pair.client.send_headers(
        sid,
        [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"h"), (b":path", b"/")],
        end_stream=True,
    )
    ((datagram, _addr),) = pair.client_quic.datagrams_to_send(now=pair.now)
    quic.receive_datagram(datagram[: len(datagram) // 2], CLIENT, now=pair.now)
    pair._server_events()
    assert not of(pair.take(), (Request, ConnectionClosed))
    quic.receive_datagram(datagram, CLIENT, now=pair.now)
    pair._server_events()
    pair.pump()
    (req,) = of(pair.take(), Request)
    assert req.stream_id == sid and not pair.server.closed


def test_protocol_error_closes_cleanly(certs: Path) -> None:
    pair = ready(certs)
    sid = pair.client_quic.get_next_available_stream_id()
    pair.client_quic.send_stream_data(sid, b"\x00\x03abc")  # DATA before HEADERS (§4.1)
    pair.pump()
    events = pair.take()
    assert of(events, ConnectionClosed)
    assert pair.server.closed
    closed = pair.client_quic._close_event
    assert isinstance(closed, ConnectionTerminated)
    assert closed.error_code == H3Code.H3_FRAME_UNEXPECTED


# --- the gate -----------------------------------------------------------------------------------


def _initial(certs: Path, *, version: int | None = None) -> bytes:
    config = QuicConfiguration(is_client=True, alpn_protocols=list(H3_ALPN))
    if version is not None:
        config.supported_versions = [version]
    client = QuicConnection(configuration=config)
    client.connect(SERVER, now=0.0)
    ((data, _),) = client.datagrams_to_send(now=0.0)
    return data


def test_gate_accepts_full_initial_and_drops_the_rest(certs: Path) -> None:
    gate = QuicGate([QuicProtocolVersion.VERSION_1], retry_above=10)
    data = _initial(certs)
    header = peek_header(data)
    assert header is not None and len(data) >= MIN_INITIAL_SIZE
    assert gate.admit(data, header, CLIENT, 0.0, 0).verdict is Verdict.ACCEPT
    short = data[:1100]
    short_header = peek_header(short)
    assert short_header is not None
    assert gate.admit(short, short_header, CLIENT, 0.0, 0).verdict is Verdict.DROP
    assert peek_header(b"") is None and peek_header(b"\xc0\x00") is None


def test_gate_retries_under_load_and_accepts_the_token(certs: Path) -> None:
    from aioquic.buffer import Buffer
    from aioquic.quic.packet import pull_quic_header

    gate = QuicGate([QuicProtocolVersion.VERSION_1], retry_above=1)
    config = QuicConfiguration(is_client=True, alpn_protocols=list(H3_ALPN))
    client = QuicConnection(configuration=config)
    client.connect(SERVER, now=0.0)
    ((data, _),) = client.datagrams_to_send(now=0.0)
    header = peek_header(data)
    assert header is not None
    retry = gate.admit(data, header, CLIENT, 0.0, handshaking=5)
    assert retry.verdict is Verdict.REPLY
    assert pull_quic_header(Buffer(data=retry.reply), host_cid_length=8).packet_type.name == "RETRY"
    client.receive_datagram(retry.reply, SERVER, now=0.0)
    ((again, _),) = client.datagrams_to_send(now=0.0)
    again_header = peek_header(again)
    assert again_header is not None and again_header.token
    accepted = gate.admit(again, again_header, CLIENT, 0.0, handshaking=5)
    assert accepted.verdict is Verdict.ACCEPT
    assert accepted.original_cid == header.destination_cid
    assert accepted.retry_cid == again_header.destination_cid
    # The same token from another address is refused with INVALID_TOKEN.
    other = gate.admit(again, again_header, ("127.0.0.9", 1), 0.0, handshaking=5)
    assert other.verdict is Verdict.REPLY and other.why == "bad token"


def test_gate_negotiates_version(certs: Path) -> None:
    gate = QuicGate([QuicProtocolVersion.VERSION_1], retry_above=10)
    data = _initial(certs, version=QuicProtocolVersion.VERSION_2)
    header = peek_header(data)
    assert header is not None
    answer = gate.admit(data, header, CLIENT, 0.0, 0)
    assert answer.verdict is Verdict.REPLY and answer.why == "version negotiation"
    vn = peek_header(answer.reply)
    assert vn is not None and vn.packet_type.name == "VERSION_NEGOTIATION"
    # A Version Negotiation packet is never answered (no reflection loop).
    assert gate.admit(answer.reply + bytes(1200), vn, CLIENT, 0.0, 0).verdict is Verdict.DROP


@pytest.mark.parametrize("size", [0, 1, 5, 21, 100, 1200])
def test_random_bytes_are_not_a_header_or_are_dropped(size: int) -> None:
    gate = QuicGate([QuicProtocolVersion.VERSION_1], retry_above=10)
    for _ in range(50):
        data = os.urandom(size)
        header = peek_header(data)
        if header is not None:
            assert gate.admit(data, header, CLIENT, 0.0, 0).verdict in (Verdict.DROP, Verdict.REPLY)


def test_requests_arriving_out_of_order_are_all_served(certs: Path) -> None:
    pair = ready(certs)
    head = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"h"), (b":path", b"/")]
    first = pair.client_quic.get_next_available_stream_id()
    pair.client.send_headers(first, head, end_stream=True)
    early = [d for d, _ in pair.client_quic.datagrams_to_send(now=pair.now)]
    second = pair.client_quic.get_next_available_stream_id()
    pair.client.send_headers(second, head, end_stream=True)
    late = [d for d, _ in pair.client_quic.datagrams_to_send(now=pair.now)]
    for datagram in late + early:  # the network reordered them
        pair._server_receive(datagram)
    assert [r.stream_id for r in of(pair.take(), Request)] == [second, first]


def test_body_in_the_request_packet_is_credited_only_when_read(certs: Path) -> None:
    """HEADERS and the first body bytes in one packet: the body still waits for the handler
    before the client gets its window back (no credit twice)."""
    pair = ready(certs)
    sid = pair.client_quic.get_next_available_stream_id()
    head = [(b":method", b"POST"), (b":scheme", b"https"), (b":authority", b"h"), (b":path", b"/")]
    pair.client.send_headers(sid, head)
    pair.client.send_data(sid, b"x" * 1000, end_stream=False)
    pair.pump()
    assert [len(e.data) for e in of(pair.take(), Body)] == [1000]
    quic = pair.server_quic
    assert quic is not None
    consumed = quic._consumed[sid]
    assert consumed < 1000  # framing and headers only
    pair.server.acknowledge(sid, 1000)
    assert quic._consumed[sid] == consumed + 1000


def test_a_request_head_that_never_completes_is_reset_after_the_header_timeout(
    certs: Path,
) -> None:
    pair = ready(certs)
    now = [0.0]
    pair.server.clock = lambda: now[0]
    sid = pair.client_quic.get_next_available_stream_id()
    # Most of a HEADERS frame (type 0x1, length 100) and then nothing (RFC 9114 §4.1).
    pair.client_quic.send_stream_data(sid, b"\x01\x40\x64" + b"\x00" * 20)
    pair.pump()
    assert not of(pair.take(), Request)
    assert pair.server.head_deadline(10.0) == 10.0
    now[0] = 9.0
    pair.server.expire_heads(10.0)
    assert pair.server.head_deadline(10.0) == 10.0  # not yet
    now[0] = 10.5
    pair.server.expire_heads(10.0)
    pair.pump()
    assert pair.server.head_deadline(10.0) is None
    resets = [e for e in pair.client_quic_events if isinstance(e, QuicStreamReset)]
    assert [(r.stream_id, r.error_code) for r in resets] == [(sid, H3Code.H3_REQUEST_INCOMPLETE)]
    # A complete request afterwards is served as usual, and leaves no head timing.
    other = pair.request()
    assert [r.stream_id for r in of(pair.take(), Request)] == [other]
    assert pair.server.head_deadline(10.0) is None


@hsettings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(junk=st.binary(min_size=1, max_size=300), uni=st.booleans())
def test_random_stream_bytes_never_raise(certs: Path, junk: bytes, uni: bool) -> None:
    """Whatever a client writes on a request or unidirectional stream, the adapter answers
    with events (a request, a reset, a closed connection) and never an exception."""
    pair = ready(certs)
    sid = pair.client_quic.get_next_available_stream_id(is_unidirectional=uni)
    pair.client_quic.send_stream_data(sid, junk, end_stream=True)
    pair.pump()  # raises if the adapter does
    for event in pair.take():
        assert isinstance(
            event, (Request, Body, EndBody, StreamReset, StreamClosed, ConnectionClosed)
        )


def test_a_second_response_head_resets_only_that_stream(certs: Path) -> None:
    pair = ready(certs)
    sid = pair.request()
    other = pair.request()
    pair.take()
    pair.send(Response(sid, 200, []))
    pair.server.send(Response(sid, 200, []))  # a handler bug; aioquic takes it as trailers
    out = pair.server.send(Response(sid, 200, []))  # and refuses a third HEADERS frame
    assert StreamReset(sid, ErrorCode.INTERNAL_ERROR) in out and StreamClosed(sid) in out
    pair.send(Response(other, 204, []))
    pair.send(EndBody(other))
    heads = [h for h in of(pair.take_client(), h3e.HeadersReceived) if h.stream_id == other]
    assert dict(heads[0].headers)[b":status"] == b"204"
    assert not pair.server.closed


def test_retry_mode_has_hysteresis(certs: Path) -> None:
    gate = QuicGate([QuicProtocolVersion.VERSION_1], retry_above=10)

    def verdict(handshaking: int) -> Verdict:
        data = _initial(certs)  # a new client each time
        header = peek_header(data)
        assert header is not None
        return gate.admit(data, header, CLIENT, 0.0, handshaking).verdict

    assert verdict(9) is Verdict.ACCEPT
    assert verdict(10) is Verdict.REPLY  # Retry from here
    assert verdict(9) is Verdict.REPLY and verdict(5) is Verdict.REPLY  # still retrying
    assert verdict(4) is Verdict.ACCEPT  # below half: off again
    assert verdict(9) is Verdict.ACCEPT


def test_a_resent_initial_after_a_retry_is_retried_again(certs: Path) -> None:
    """The client resent its first Initial before our Retry arrived; load has dropped since.
    Accepting the copy would start a handshake the client abandoned: it is retried again."""
    gate = QuicGate([QuicProtocolVersion.VERSION_1], retry_above=10)
    data = _initial(certs)
    header = peek_header(data)
    assert header is not None
    assert gate.admit(data, header, CLIENT, 0.0, 20).verdict is Verdict.REPLY
    again = gate.admit(data, header, CLIENT, 0.5, 0)
    assert again.verdict is Verdict.REPLY and again.why == "retry"
    other = _initial(certs)
    other_header = peek_header(other)
    assert other_header is not None
    assert gate.admit(other, other_header, CLIENT, 0.5, 0).verdict is Verdict.ACCEPT
    # Remembered for a bounded time only.
    later = settings.QUIC_RETRY_MEMORY_SECONDS + 1
    assert gate.admit(data, header, CLIENT, later, 0).verdict is Verdict.ACCEPT
