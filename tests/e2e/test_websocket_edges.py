"""WebSocket edges the main e2e file does not reach: every refused handshake and its reason,
exact Origin comparison, `send:` isolation / vary / order / failure, liveness and close codes
(1001 on shutdown, 1011 on a dead peer or upstream, the close handshake's timeout), slow
readers, bad frames on one HTTP/2 stream beside a healthy one, and pass-through close codes."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import socket
from pathlib import Path

import pytest
import websockets
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, Ping, TextMessage

from bridge import settings
from tests.e2e.test_websocket import _client_frame
from tests.support.harness import config_text, run, running_bridge
from tests.support.origin import Origin
from tests.support.subscribers import ws_http1, ws_http2

ROUTES = """\
routes:
  - path: /prices/{symbol}
    stream:
      upstream: app
      poll: /api/price?s={symbol}
      every: 200ms
      event: price
      send: /api/orders?s={symbol}
      vary: [authorization]
      heartbeat: 1s
      origins: ["https://trusted.example"]
  - path: /quiet/{symbol}
    stream:
      upstream: app
      poll: /api/price?s={symbol}
      every: 200ms
      heartbeat: 1s
  - path: /raw/{name}
    stream:
      upstream: app
      poll: /api/raw/{name}
      every: 200ms
      ws_format: raw
  - path: /sse-only
    stream:
      upstream: app
      poll: /api/price
      every: 1s
      protocols: [sse]
"""


@pytest.fixture(autouse=True)
def short_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "STREAM_LINGER", 0.5)


def no_errors(caplog: pytest.LogCaptureFixture) -> None:
    """bridge logged no failure: a crash after the handshake is invisible on the wire."""
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


async def handshake(
    port: int, path: str, extra: bytes = b"", *, start: bytes | None = None
) -> tuple[int, dict[bytes, bytes], bytes, asyncio.StreamReader, asyncio.StreamWriter]:
    """A hand-written HTTP/1.1 handshake on the clear-text port: (status, headers, body, r, w)."""
    key = base64.b64encode(os.urandom(16))
    request = start or b"GET " + path.encode() + b" HTTP/1.1\r\n"
    request += (
        b"Host: app.test:8080\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n"
    )
    request += extra + b"\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if b":" in line:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
    body = b""
    if status != 101:
        size = int(headers.get(b"content-length", b"0"))
        body = await asyncio.wait_for(reader.readexactly(size), 5)
    return status, headers, body, reader, writer


@pytest.mark.parametrize(
    "path,start,replace,status,reason",
    [
        ("/prices/A", None, (b"Sec-WebSocket-Key: ", b"X-Key: "), 400, b"Sec-WebSocket-Key"),
        ("/prices/A", None, (b"Sec-WebSocket-Key: ", b"Sec-WebSocket-Key: c2hvcnQ=\r\nX: "), 400,
         b"Sec-WebSocket-Key"),
        ("/prices/A", None, (b"Version: 13", b"Version: 8"), 426, b"version 13"),
        ("/prices/A", None, (b"Connection: Upgrade", b"Connection: keep-alive"), 400,
         b"Connection: Upgrade"),
        ("/prices/A", b"POST /prices/A HTTP/1.1\r\n", None, 405, b"GET"),
        ("/prices/A", b"GET /prices/A HTTP/1.0\r\n", None, 400, b"HTTP/1.1"),
        ("/sse-only", None, None, 426, b"not enabled"),
    ],
    ids=["no-key", "short-key", "version", "no-connection-upgrade", "post", "http10", "sse-only"],
)  # fmt: skip
def test_invalid_http1_handshakes_get_a_status_and_the_reason(
    certs: Path,
    path: str,
    start: bytes | None,
    replace: tuple[bytes, bytes] | None,
    status: int,
    reason: bytes,
) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                port = b.ports["http"]
                if replace is None:
                    got, headers, text, _, writer = await handshake(port, path, start=start)
                else:
                    # rewrite one header of the otherwise valid handshake
                    key = base64.b64encode(os.urandom(16))
                    raw = (
                        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: app.test:8080\r\n"
                        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n"
                    ).replace(*replace)
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.write(raw)
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                    got = int(head.split()[1])
                    headers = {
                        n.strip().lower(): v.strip()
                        for n, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])
                        if v
                    }
                    text = await asyncio.wait_for(
                        reader.readexactly(int(headers[b"content-length"])), 5
                    )
                writer.close()
                assert got == status, text
                assert reason in text, text
                if status == 426 and path != "/sse-only":
                    # RFC 6455 §4.4: name the version we speak
                    assert headers[b"sec-websocket-version"] == b"13"
                # nothing was upgraded, nothing subscribed
                assert b"upgrade" not in headers

    run(body())


def test_invalid_extended_connects_get_a_status(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                ctx = b.client_ssl(("h2",))
                async with ws_http2(b.ports["https"], "/sse-only", ctx) as h2ws:
                    # RFC 8441 on a stream without websocket: the CONNECT method is not allowed
                    assert h2ws.status == 405
                    assert h2ws.first.headers[b"allow"] == b"GET, HEAD"
                    await asyncio.wait_for(h2ws.stream_ended.wait(), 5)
                    assert b"not enabled" in h2ws.first.body
                    # same connection: a wrong version is refused, and names ours (§4.4)
                    good = await h2ws.open_stream("/prices/A")
                    assert good.status == 200
                    status, headers = await H2BadVersion(h2ws).open("/prices/A")
                    assert status == 426 and headers[b"sec-websocket-version"] == b"13"
                    assert json.loads((await good.sub.next_event()).data) == {"p": 1}

    run(body())


class H2BadVersion:
    """An extended CONNECT with Sec-WebSocket-Version 8 on an open H2WebSocket connection."""

    def __init__(self, owner) -> None:  # type: ignore[no-untyped-def]
        self.owner = owner

    async def open(self, path: str) -> tuple[int | None, dict[bytes, bytes]]:
        from tests.support.subscribers import H2WsStream

        owner = self.owner
        sid = owner.h2.get_next_available_stream_id()
        stream = owner.streams[sid] = H2WsStream(owner, sid)
        owner.h2.send_headers(
            sid,
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"websocket"),
                (b":scheme", b"https"),
                (b":path", path.encode()),
                (b":authority", f"localhost:{owner.port}".encode()),
                (b"sec-websocket-version", b"8"),
            ],
        )
        owner.writer.write(owner.h2.data_to_send())
        await asyncio.wait_for(stream.response.wait(), 5)
        return stream.status, stream.headers


@pytest.mark.parametrize(
    "origin,allowed",
    [
        ("http://app.test:8080", True),  # the request's own origin (Host: app.test:8080)
        ("HTTP://APP.TEST:8080", True),  # scheme and host are case-insensitive
        ("https://trusted.example", True),  # listed in origins:
        ("https://trusted.example:443", True),  # the default port is the same origin
        ("http://app.test", False),  # another port is another origin
        ("https://app.test:8080", False),  # another scheme too
        ("http://app.test:8080/", False),  # not a serialised origin: a path
        ("http://x@app.test:8080", False),  # user info
        ("https://trusted.example:8443", False),
        ("https://trusted.example.evil", False),
        ("http://app.test:8080 https://evil.example", False),  # a list of several
        ("null", False),
        ("", False),
    ],
)
def test_origin_is_compared_exactly(certs: Path, origin: str, allowed: bool) -> None:
    async def body() -> None:
        async with Origin() as upstream:
            upstream.json("/api/price", {"p": 1})
            async with running_bridge(
                config_text(ROUTES, upstream_url=upstream.url, certs=certs), certs
            ) as b:
                status, _, text, _, writer = await handshake(
                    b.ports["http"], "/prices/A", b"Origin: " + origin.encode() + b"\r\n"
                )
                writer.close()
                assert status == (101 if allowed else 403), text

    run(body())


def test_origin_refused_over_http2(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as upstream:
            upstream.json("/api/price", {"p": 1})
            async with running_bridge(
                config_text(ROUTES, upstream_url=upstream.url, certs=certs), certs
            ) as b:
                port, ctx = b.ports["https"], b.client_ssl(("h2",))
                async with ws_http2(
                    port, "/prices/A", ctx, [(b"origin", b"https://evil.example")]
                ) as refused:
                    assert refused.status == 403
                async with ws_http2(
                    port, "/prices/A", ctx, [(b"origin", f"https://localhost:{port}".encode())]
                ) as own:
                    assert own.status == 200
                    await own.sub.next_event()

    run(body())


def test_send_answers_the_sender_only_in_order_with_vary(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            active = 0
            most = 0

            async def orders(request):  # type: ignore[no-untyped-def]
                nonlocal active, most
                active += 1
                most = max(most, active)
                try:
                    await asyncio.sleep(0.01 * (hash(request.body) % 3))
                    if request.body == b"refuse":
                        return 409, [], b"no"
                    return 200, [], b"ack:" + request.body
                finally:
                    active -= 1

            origin.route("/api/orders", orders)
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                ctx = b.client_ssl(("http/1.1",))
                url = f"wss://localhost:{b.ports['https']}/prices/A"
                auth = {"authorization": "Bearer u1", "cookie": "secret=1"}
                async with (
                    ws_http1(url, ctx, additional_headers=auth) as sender,
                    ws_http2(
                        b.ports["https"],
                        "/prices/A",
                        b.client_ssl(("h2",)),
                        [(b"authorization", b"Bearer u1")],
                    ) as other,
                ):
                    await sender.next_event()
                    await other.sub.next_event()
                    await sender.ws.send("refuse")  # a non-2xx answer sends nothing back
                    for n in range(20):
                        await sender.ws.send(f"m{n}")
                    answers: list[str] = []
                    for _ in range(200):
                        if len(answers) == 20:
                            break
                        message = await asyncio.wait_for(sender.raw.get(), 5)
                        if isinstance(message, str) and message.startswith("ack:"):
                            answers.append(message)
                    assert answers == [f"ack:m{n}" for n in range(20)]
                    # the other subscriber of the same channel got events only, no answers
                    origin.set("/api/price", {"p": 2})
                    assert json.loads((await other.sub.next_event()).data) == {"p": 2}
                    while not other.sub.raw.empty():
                        assert not str(other.sub.raw.get_nowait()).startswith("ack:")
                posted = [r for r in origin.requests if r.path == "/api/orders"]
                assert [r.body for r in posted] == [b"refuse"] + [b"m%d" % n for n in range(20)]
                assert all(r.header("authorization") == "Bearer u1" for r in posted)
                assert all(r.header("cookie") is None for r in posted)  # only `vary` goes up
                assert most == 1  # in order: one POST at a time per connection

    run(body())


def test_send_to_a_dead_upstream_closes_1011(certs: Path) -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()  # nothing listens here now

    async def body() -> None:
        text = config_text(ROUTES, upstream_url=f"http://127.0.0.1:{port}", certs=certs)
        async with running_bridge(text, certs) as b:
            ctx = b.client_ssl(("http/1.1",))
            async with ws_http1(f"wss://localhost:{b.ports['https']}/prices/A", ctx) as sub:
                await sub.ws.send("buy")
                await asyncio.wait_for(sub.ws.wait_closed(), 10)
                assert (
                    sub.ws.protocol.close_rcvd is not None
                    and sub.ws.protocol.close_rcvd.code == 1011
                )

    run(body())


async def frames(reader: asyncio.StreamReader, client: Connection, until: type) -> list[object]:
    """Read server frames until one of type `until` (or EOF); every read under a timeout."""
    seen: list[object] = []
    for _ in range(500):
        data = await asyncio.wait_for(reader.read(65536), 10)
        if not data:
            return seen
        client.receive_data(data)
        seen += list(client.events())
        if any(isinstance(e, until) for e in seen):
            return seen
    raise AssertionError("no end in sight")


def test_unanswered_pings_close_1011_answered_ones_keep_it_open(
    certs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    routes = ROUTES.replace("heartbeat: 1s", "heartbeat: 200ms")

    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            async with running_bridge(
                config_text(routes, upstream_url=origin.url, certs=certs), certs
            ) as b:
                ctx = b.client_ssl(("http/1.1",))
                url = f"wss://localhost:{b.ports['https']}/quiet/A"
                # websockets answers every ping; it must outlive many silent periods
                async with ws_http1(url, ctx, ping_interval=None) as alive:
                    status, _, _, reader, writer = await handshake(b.ports["http"], "/quiet/A")
                    assert status == 101
                    seen = await frames(reader, Connection(ConnectionType.CLIENT), CloseConnection)
                    pings = [e for e in seen if isinstance(e, Ping)]
                    closes = [e for e in seen if isinstance(e, CloseConnection)]
                    assert pings, seen  # it was asked before being dropped
                    assert [c.code for c in closes] == [1011]
                    assert await asyncio.wait_for(reader.read(), 5) == b""  # and dropped
                    writer.close()
                    assert alive.ws.protocol.close_rcvd is None
                    origin.set("/api/price", {"p": 2})
                    while json.loads((await alive.next_event()).data) != {"p": 2}:
                        pass
        no_errors(caplog)

    run(body())


def test_unanswered_pings_on_one_http2_stream_spare_the_other(certs: Path) -> None:
    routes = ROUTES.replace("heartbeat: 1s", "heartbeat: 200ms")

    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            async with running_bridge(
                config_text(routes, upstream_url=origin.url, certs=certs), certs
            ) as b:
                async with ws_http2(b.ports["https"], "/quiet/A", b.client_ssl(("h2",))) as h2ws:
                    mute = await h2ws.open_stream("/quiet/A")
                    mute.answer_pings = False
                    await asyncio.wait_for(mute.close_received.wait(), 10)
                    assert mute.closed == 1011 and mute.pings
                    await asyncio.wait_for(mute.stream_ended.wait(), 5)
                    assert h2ws.closed is None and not h2ws.stream_ended.is_set()
                    origin.set("/api/price", {"p": 2})
                    while json.loads((await h2ws.sub.next_event()).data) != {"p": 2}:
                        pass

    run(body())


def test_shutdown_closes_1001_over_both_versions(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                ctx = b.client_ssl(("http/1.1",))
                async with (
                    ws_http1(f"wss://localhost:{b.ports['https']}/quiet/A", ctx) as h1,
                    ws_http2(b.ports["https"], "/quiet/A", b.client_ssl(("h2",))) as h2ws,
                ):
                    await h1.next_event()
                    await h2ws.sub.next_event()
                    stopping = asyncio.create_task(b.bridge.stop(grace=5.0))
                    await asyncio.wait_for(h1.ws.wait_closed(), 10)
                    assert (
                        h1.ws.protocol.close_rcvd is not None
                        and h1.ws.protocol.close_rcvd.code == 1001
                    )
                    await asyncio.wait_for(h2ws.first.close_received.wait(), 10)
                    assert h2ws.closed == 1001
                    # the h2 client answers the close; bridge then ends the stream
                    from wsproto.events import CloseConnection as Close

                    h2ws.send_raw(h2ws.first.ws.send(Close(code=1001)))
                    await asyncio.wait_for(h2ws.stream_ended.wait(), 10)
                    await asyncio.wait_for(stopping, 15)

    run(body())


def test_close_handshake_both_ways(
    certs: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(settings, "CLOSE_TIMEOUT", 1.0)
    routes = "limits:\n  max_ws_message: 1KB\n" + ROUTES

    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            async with running_bridge(
                config_text(routes, upstream_url=origin.url, certs=certs), certs
            ) as b:
                # the client closes: bridge answers with the same code
                ctx = b.client_ssl(("http/1.1",))
                async with ws_http1(f"wss://localhost:{b.ports['https']}/quiet/A", ctx) as sub:
                    await sub.next_event()
                    await asyncio.wait_for(sub.ws.close(4000, "bye"), 5)
                    assert (
                        sub.ws.protocol.close_rcvd is not None
                        and sub.ws.protocol.close_rcvd.code == 4000
                    )
                # bridge closes (1009) and the client only pings: the pings get no pong
                # (RFC 6455 §5.5.1 closing state), the connection waits CLOSE_TIMEOUT, then ends
                status, _, _, reader, writer = await handshake(b.ports["http"], "/quiet/A")
                assert status == 101
                client = Connection(ConnectionType.CLIENT)
                writer.write(_client_frame(0x1, b"x" * 2000))
                seen = await frames(reader, client, CloseConnection)
                assert [e.code for e in seen if isinstance(e, CloseConnection)] == [1009]
                origin.set("/api/price", {"p": 2})  # an event after the close is not sent
                writer.write(_client_frame(0x9, b"still there?"))
                loop = asyncio.get_running_loop()
                started = loop.time()
                rest = await asyncio.wait_for(reader.read(), 10)
                assert rest == b""  # no pong, no event: nothing after the close frame
                assert loop.time() - started > 0.5  # it waited for our close, then gave up
                writer.close()
        no_errors(caplog)

    run(body())


def test_slow_websocket_reader_lags_then_is_closed_1013(
    certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "LAG_CLOSE_AFTER", 1.0)
    monkeypatch.setattr(settings, "LAG_CHECK", 0.25)
    big = {"blob": "x" * 600_000}
    routes = "limits:\n  subscriber_buffer: 64KB\n  max_snapshot: 2MB\n" + ROUTES

    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {**big, "n": 0})
            async with running_bridge(
                config_text(routes, upstream_url=origin.url, certs=certs), certs
            ) as b:
                stalled = socket.socket()
                stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                stalled.connect(("127.0.0.1", b.ports["http"]))
                key = base64.b64encode(os.urandom(16))
                stalled.sendall(
                    b"GET /quiet/S HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    b"Sec-WebSocket-Key: " + key + b"\r\n\r\n"
                )
                ctx = b.client_ssl(("http/1.1",))
                url = f"wss://localhost:{b.ports['https']}/quiet/S"
                async with ws_http1(url, ctx, max_size=None) as healthy:
                    await healthy.next_event()
                    for n in range(1, 8):
                        origin.set("/api/price", {**big, "n": n})
                        event = await healthy.next_event(timeout=5)
                        assert json.loads(event.data)["n"] == n
                    hub = b.bridge.site.hub
                    channel = next(iter(hub.channels.values()))  # type: ignore[union-attr]
                    for _ in range(100):  # the stalled one is closed after LAG_CLOSE_AFTER
                        if len(channel.subscribers) == 1:
                            break
                        await asyncio.sleep(0.1)
                    assert len(channel.subscribers) == 1
                    # now read what the stalled client was sent: fewer events, then 1013
                    stalled.setblocking(False)
                    loop = asyncio.get_running_loop()
                    client = Connection(ConnectionType.CLIENT)
                    seen: list[object] = []
                    for _ in range(2000):
                        data = await asyncio.wait_for(loop.sock_recv(stalled, 65536), 10)
                        if not data:
                            break
                        if not seen and data.startswith(b"HTTP/1.1 101"):
                            data = data.partition(b"\r\n\r\n")[2]
                        client.receive_data(data)
                        seen += list(client.events())
                        if any(isinstance(e, CloseConnection) for e in seen):
                            break
                    texts = [e for e in seen if isinstance(e, TextMessage) and e.message_finished]
                    closes = [e.code for e in seen if isinstance(e, CloseConnection)]
                    assert closes == [1013]
                    assert len(texts) < 8  # conflated: it never got every event
                    stalled.close()
                    # the healthy one was never held up
                    origin.set("/api/price", {"n": 99})
                    while json.loads((await healthy.next_event()).data).get("n") != 99:
                        pass

    run(body())


BAD_FRAMES = [
    (_client_frame(0x1, b"hi", rsv=4), 1002),
    (_client_frame(0x3, b"??"), 1002),
    (_client_frame(0x1, b"\xff\xfe"), 1007),
    (_client_frame(0x1, b"\xe2\x82", fin=False) + _client_frame(0x0, b"\x28"), 1007),
    (_client_frame(0x1, b"hi", mask=False), 1002),
    (_client_frame(0x9, b"p" * 126), 1002),  # control frames carry at most 125 bytes
    (_client_frame(0x9, b"p", fin=False), 1002),  # and are never fragmented
    (_client_frame(0x1, b"x" * 2000), 1009),
]


@pytest.mark.parametrize(
    "frame,code",
    BAD_FRAMES,
    ids=["rsv", "opcode", "utf8", "utf8-split", "unmasked", "long-ping", "frag-ping", "big"],
)
def test_bad_frames_on_one_http2_stream_spare_the_other(
    certs: Path, frame: bytes, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    routes = "limits:\n  max_ws_message: 1KB\n" + ROUTES

    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            async with running_bridge(
                config_text(routes, upstream_url=origin.url, certs=certs), certs
            ) as b:
                async with ws_http2(b.ports["https"], "/quiet/A", b.client_ssl(("h2",))) as h2ws:
                    await h2ws.sub.next_event()
                    bad = await h2ws.open_stream("/quiet/A")
                    await bad.sub.next_event()
                    bad.send_raw(frame)
                    await asyncio.wait_for(bad.close_received.wait(), 10)
                    assert bad.closed == code
                    origin.set("/api/price", {"p": 9})
                    assert json.loads((await h2ws.sub.next_event()).data) == {"p": 9}
                    assert h2ws.closed is None
        no_errors(caplog)

    run(body())


def test_raw_format_text_and_binary_and_envelope_strings(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            origin.status("/api/raw/bin", 200, [(b"content-type", b"image/png")], b"\x89PNG\xff")
            origin.status("/api/raw/text", 200, [(b"content-type", b"text/plain")], b"hi there")
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                ctx = b.client_ssl(("http/1.1",))
                base = f"wss://localhost:{b.ports['https']}"
                async with websockets.connect(base + "/raw/bin", ssl=ctx) as ws:
                    assert await asyncio.wait_for(ws.recv(), 5) == b"\x89PNG\xff"
                async with websockets.connect(base + "/raw/text", ssl=ctx) as ws:
                    assert await asyncio.wait_for(ws.recv(), 5) == "hi there"
                # the envelope of a body that is not JSON carries it as a string
                text = ROUTES.replace("/api/price?s={symbol}", "/api/raw/text")
            async with running_bridge(
                config_text(text, upstream_url=origin.url, certs=certs), certs
            ) as b:
                async with ws_http2(b.ports["https"], "/quiet/A", b.client_ssl(("h2",))) as h2ws:
                    message = json.loads(await asyncio.wait_for(h2ws.sub.raw.get(), 5))
                    assert message["data"] == "hi there" and message["event"] == "message"
                    assert set(message) == {"id", "event", "data"}

    run(body())


def test_resume_over_http2_inside_and_outside_history(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                port, ctx = b.ports["https"], b.client_ssl(("h2",))
                async with ws_http2(port, "/quiet/A", ctx) as keeper:
                    first = await keeper.sub.next_event()
                    for p in (2, 3):
                        origin.set("/api/price", {"p": p})
                        await keeper.sub.next_event()
                    async with ws_http2(port, f"/quiet/A?last_event_id={first.id}", ctx) as again:
                        got = [await again.sub.next_event(), await again.sub.next_event()]
                        assert [json.loads(e.data)["p"] for e in got] == [2, 3]
                        assert await _quiet(again.sub.events, 0.5)
                    async with ws_http2(port, "/quiet/A?last_event_id=gone-1", ctx) as lost:
                        reset = await lost.sub.next_event()
                        assert (reset.event, json.loads(reset.data)) == ("reset", {"p": 3})

    run(body())


async def _quiet(queue: asyncio.Queue[object], wait: float) -> bool:
    try:
        await asyncio.wait_for(queue.get(), wait)
    except TimeoutError:
        return True
    return False


def test_pass_through_keeps_close_codes_and_pings(certs: Path) -> None:
    closed_with: list[int | None] = []

    async def app(ws) -> None:  # type: ignore[no-untyped-def]
        try:
            async for message in ws:
                if message == "bye":
                    await ws.close(4001, "done")
                    return
                await ws.send(message)
        finally:
            closed_with.append(ws.close_code)

    async def body() -> None:
        server = await websockets.serve(app, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]  # type: ignore[index]
        try:
            text = config_text(
                "routes:\n  - path: /{rest*}\n    upstream: app\n",
                upstream_url=f"http://127.0.0.1:{port}",
                certs=certs,
            )
            async with running_bridge(text, certs) as b:
                ctx = b.client_ssl(("http/1.1",))
                url = f"wss://localhost:{b.ports['https']}/chat"
                # the upstream closes: the client sees its code
                async with websockets.connect(url, ssl=ctx) as ws:
                    await ws.send("bye")
                    await asyncio.wait_for(ws.wait_closed(), 5)
                    assert (
                        ws.protocol.close_rcvd is not None and ws.protocol.close_rcvd.code == 4001
                    )
                    assert ws.protocol.close_rcvd.reason == "done"
                # the client closes: the upstream sees the client's code
                async with websockets.connect(url, ssl=ctx) as ws:
                    await ws.send("x")
                    await asyncio.wait_for(ws.recv(), 5)
                    await asyncio.wait_for(ws.close(4002, "leaving"), 5)
                for _ in range(100):
                    if len(closed_with) == 2:
                        break
                    await asyncio.sleep(0.02)
                assert closed_with == [4001, 4002]
                # over RFC 8441: a ping is the upstream's to answer, a close its to echo
                async with ws_http2(b.ports["https"], "/chat", b.client_ssl(("h2",))) as h2ws:
                    assert h2ws.status == 200
                    h2ws.send_raw(h2ws.first.ws.send(Ping(b"are you there")))
                    assert await asyncio.wait_for(h2ws.first.pongs.get(), 5) == b"are you there"
                    h2ws.send("echo")
                    assert await asyncio.wait_for(h2ws.sub.raw.get(), 5) == "echo"
                    h2ws.send("bye")
                    await asyncio.wait_for(h2ws.first.close_received.wait(), 5)
                    assert h2ws.closed == 4001
        finally:
            server.close()
            await server.wait_closed()

    run(body())


def test_pass_through_relays_a_refusal_and_checks_the_accept_key(certs: Path) -> None:
    from http import HTTPStatus

    def refuse(connection, request):  # type: ignore[no-untyped-def]
        if request.path == "/private":
            return connection.respond(HTTPStatus.FORBIDDEN, "members only\n")
        return None

    async def liar(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: bm90IHRoZSBrZXk=\r\n\r\n"
        )
        await writer.drain()
        await reader.read()  # hold the connection until bridge drops it
        writer.close()

    async def body() -> None:
        async def echo(ws) -> None:  # type: ignore[no-untyped-def]
            async for message in ws:
                await ws.send(message)

        server = await websockets.serve(echo, "127.0.0.1", 0, process_request=refuse)
        lying = await asyncio.start_server(liar, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]  # type: ignore[index]
        lying_port = lying.sockets[0].getsockname()[1]
        routes = (
            "routes:\n  - path: /lie\n    upstream: liar\n  - path: /{rest*}\n    upstream: app\n"
        )
        try:
            text = config_text(routes, upstream_url=f"http://127.0.0.1:{port}", certs=certs)
            # a second upstream next to the harness's `app`
            liar_block = f'  liar:\n    url: "http://127.0.0.1:{lying_port}"\n'
            text = text.replace("    timeout: 5s\n", "    timeout: 5s\n" + liar_block, 1)
            async with running_bridge(text, certs) as b:
                ctx = b.client_ssl(("http/1.1",))
                base = f"wss://localhost:{b.ports['https']}"
                with pytest.raises(websockets.exceptions.InvalidStatus) as info:
                    async with websockets.connect(base + "/private", ssl=ctx):
                        pass
                assert info.value.response.status_code == 403
                assert info.value.response.body == b"members only\n"
                h2ctx = b.client_ssl(("h2",))
                async with ws_http2(b.ports["https"], "/private", h2ctx) as h2ws:
                    assert h2ws.status == 403
                    await asyncio.wait_for(h2ws.stream_ended.wait(), 5)
                    assert h2ws.first.body == b"members only\n"
                with pytest.raises(websockets.exceptions.InvalidStatus) as info:
                    async with websockets.connect(base + "/lie", ssl=ctx):
                        pass
                assert info.value.response.status_code == 502
                async with ws_http2(b.ports["https"], "/lie", h2ctx) as h2ws:
                    assert h2ws.status == 502
        finally:
            server.close()
            lying.close()
            await server.wait_closed()
            await lying.wait_closed()

    run(body())


def test_a_full_send_queue_closes_1008(certs: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setattr(settings, "WS_SEND_QUEUE_TIMEOUT", 0.5)

    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            release = asyncio.Event()

            async def stuck(request):  # type: ignore[no-untyped-def]
                await asyncio.wait_for(release.wait(), 10)
                return 200, [], b"late"

            origin.route("/api/orders", stuck)
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                ctx = b.client_ssl(("http/1.1",))
                async with ws_http1(f"wss://localhost:{b.ports['https']}/prices/A", ctx) as sub:
                    await sub.next_event()
                    # one POST in flight, MAX_IN_FLIGHT queued, and more the queue cannot take
                    for n in range(settings.WS_SEND_IN_FLIGHT + 3):
                        await sub.ws.send(f"m{n}")
                    await asyncio.wait_for(sub.ws.wait_closed(), 10)
                    assert sub.ws.protocol.close_rcvd is not None
                    assert sub.ws.protocol.close_rcvd.code == 1008
                    release.set()
                assert origin.count("/api/orders") <= 2  # nothing beyond the bound was sent

    run(body())
