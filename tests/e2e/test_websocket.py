"""WebSocket end to end: stream subscribers over HTTP/1.1 (the `websockets` client) and over
HTTP/2 extended CONNECT (raw h2 + wsproto), `send:` round trips, Origin checks, limits, bad
frames, and pass-through to an upstream's own WebSocket endpoint."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from pathlib import Path

import httpx
import pytest
import websockets
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, TextMessage

from bridge import settings
from tests.support.harness import config_text, run, running_bridge
from tests.support.origin import Origin
from tests.support.subscribers import sse, ws_http1, ws_http2

ROUTES = """\
routes:
  - path: /prices/{symbol}
    stream:
      upstream: app
      poll: /api/price?s={symbol}
      every: 200ms
      event: price
      send: /api/orders?s={symbol}
      heartbeat: 1s
      origins: ["https://trusted.example"]
  - path: /raw/{symbol}
    stream:
      upstream: app
      poll: /api/price?s={symbol}
      every: 200ms
      ws_format: raw
      protocols: [websocket]
  - path: /sse-only
    stream:
      upstream: app
      poll: /api/price
      every: 1s
      protocols: [sse]
  - path: /{rest*}
    upstream: app
"""


@pytest.fixture(autouse=True)
def short_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "STREAM_LINGER", 0.5)


async def orders(request):  # type: ignore[no-untyped-def]
    if request.header(
        "content-type",
    ) and request.header("content-type").startswith("text/"):
        return 200, [(b"content-type", b"text/plain")], b"ack:" + request.body
    return 200, [(b"content-type", b"application/octet-stream")], request.body[::-1]


def wss(b, path: str) -> str:  # type: ignore[no-untyped-def]
    return f"wss://localhost:{b.ports['https']}{path}"


def test_http1_websocket_stream_send_and_resume(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            origin.route("/api/orders", orders)
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                ctx = b.client_ssl(("http/1.1",))
                async with ws_http1(wss(b, "/prices/A"), ctx) as sub:
                    first = await sub.next_event()
                    assert (first.event, json.loads(first.data)) == ("price", {"p": 1})
                    origin.set("/api/price", {"p": 2})
                    second = await sub.next_event()
                    assert json.loads(second.data) == {"p": 2}
                    # send: a text message is POSTed; the answer comes back to this client only
                    await sub.ws.send("buy 5")
                    for _ in range(50):  # stream envelopes may come first
                        if await asyncio.wait_for(sub.raw.get(), 5) == "ack:buy 5":
                            break
                    else:
                        raise AssertionError("no answer to the text message")
                    await sub.ws.send(b"\x01\x02\x03")
                    for _ in range(50):
                        message = await asyncio.wait_for(sub.raw.get(), 5)
                        if isinstance(message, bytes):  # binary in, binary back, unwrapped
                            assert message == b"\x03\x02\x01"
                            break
                    else:
                        raise AssertionError("no answer to the binary message")
                    posted = [r for r in origin.requests if r.path == "/api/orders"]
                    assert [r.body for r in posted] == [b"buy 5", b"\x01\x02\x03"]
                    assert posted[0].header("content-type").startswith("text/plain")
                    assert posted[1].header("content-type") == "application/octet-stream"
                    assert posted[0].target == "/api/orders?s=A"
                # resume with ?last_event_id= (an SSE subscriber keeps the channel alive)
                async with (
                    httpx.AsyncClient(verify=b.client_ssl()) as c,
                    sse(c, b.url("https", "/prices/A")) as keeper,
                ):
                    await keeper.next_event()
                    origin.set("/api/price", {"p": 3})
                    await keeper.next_event()
                    async with ws_http1(wss(b, f"/prices/A?last_event_id={first.id}"), ctx) as sub:
                        got = [await sub.next_event(), await sub.next_event()]
                        assert [json.loads(e.data)["p"] for e in got] == [2, 3]

    run(body())


def test_raw_format_and_protocol_restrictions(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": "raw"})
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                ctx = b.client_ssl(("http/1.1",))
                async with websockets.connect(wss(b, "/raw/X"), ssl=ctx) as ws:
                    assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"p": "raw"}
                # sse-only route refuses WebSocket; ws-only route ignores text/event-stream
                with pytest.raises(websockets.exceptions.InvalidStatus) as info:
                    async with websockets.connect(wss(b, "/sse-only"), ssl=ctx):
                        pass
                assert info.value.response.status_code == 426
                async with httpx.AsyncClient(verify=b.client_ssl()) as c:
                    r = await c.get(
                        b.url("https", "/raw/X"), headers={"accept": "text/event-stream"}
                    )
                    assert r.status_code == 200 and r.json() == {"p": "raw"}  # snapshot instead

    run(body())


def test_origin_policy(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                ctx = b.client_ssl(("http/1.1",))
                port = b.ports["https"]
                for allowed in (f"https://localhost:{port}", "https://trusted.example", None):
                    async with websockets.connect(
                        wss(b, "/prices/A"), ssl=ctx, origin=allowed
                    ) as ws:  # type: ignore[arg-type]
                        await asyncio.wait_for(ws.recv(), 5)
                for refused in ("https://evil.example", "null", f"http://localhost:{port}"):
                    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
                        async with websockets.connect(wss(b, "/prices/A"), ssl=ctx, origin=refused):  # type: ignore[arg-type]
                            pass
                    assert info.value.response.status_code == 403

    run(body())


def test_http2_extended_connect_matches_sse(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            origin.route("/api/orders", orders)
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                async with (
                    ws_http2(b.ports["https"], "/prices/A", b.client_ssl(("h2",))) as ws,
                    httpx.AsyncClient(verify=b.client_ssl(), http2=True) as c,
                    sse(c, b.url("https", "/prices/A")) as s,
                ):
                    assert ws.status == 200
                    a, e = await ws.sub.next_event(), await s.next_event()
                    assert (a.id, a.event, json.loads(a.data)) == (
                        e.id,
                        e.event,
                        json.loads(e.data),
                    )
                    origin.set("/api/price", {"p": 2})
                    a, e = await ws.sub.next_event(), await s.next_event()
                    assert (a.id, a.event, json.loads(a.data)) == (e.id, e.event, {"p": 2})
                    ws.send("over h2")
                    for _ in range(50):
                        if await asyncio.wait_for(ws.sub.raw.get(), 5) == "ack:over h2":
                            break
                    else:
                        raise AssertionError("no answer over RFC 8441")

    run(body())


def _client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0
) -> bytes:
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    key = os.urandom(4)
    length = len(payload)
    if length < 126:
        head += bytes([(0x80 if mask else 0) | length])
    else:
        head += bytes([(0x80 if mask else 0) | 126]) + struct.pack("!H", length)
    if not mask:
        return head + payload
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def _raw_ws(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16))
    writer.write(
        b"GET "
        + path.encode()
        + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def _close_code(reader: asyncio.StreamReader) -> int | None:
    client = Connection(ConnectionType.CLIENT)
    while True:
        data = await asyncio.wait_for(reader.read(65536), 10)
        if not data:
            return None
        client.receive_data(data)
        for event in client.events():
            if isinstance(event, CloseConnection):
                return int(event.code)


@pytest.mark.parametrize(
    "frame,code",
    [
        (_client_frame(0x1, b"hi", rsv=4), 1002),  # reserved bit without an extension
        (_client_frame(0x3, b"??"), 1002),  # reserved opcode
        (_client_frame(0x1, b"\xff\xfe"), 1007),  # invalid UTF-8 in a text frame
        (_client_frame(0x1, b"hi", mask=False), 1002),  # unmasked client frame
        (_client_frame(0x1, b"x" * 2000), 1009),  # over max_ws_message (1KB here)
    ],
    ids=["rsv", "opcode", "utf8", "unmasked", "too-big"],
)
def test_bad_frames_close_with_the_right_code(certs: Path, frame: bytes, code: int) -> None:
    routes = "limits:\n  max_ws_message: 1KB\n" + ROUTES

    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            async with running_bridge(
                config_text(routes, upstream_url=origin.url, certs=certs), certs
            ) as b:
                ctx = b.client_ssl(("http/1.1",))
                async with ws_http1(wss(b, "/prices/A"), ctx) as bystander:
                    await bystander.next_event()
                    reader, writer = await _raw_ws(b.ports["http"], "/prices/A")
                    writer.write(frame)
                    assert await _close_code(reader) == code
                    writer.close()
                    # other connections are undisturbed
                    origin.set("/api/price", {"p": 9})
                    assert json.loads((await bystander.next_event()).data) == {"p": 9}

    run(body())


def test_fragmented_message_with_interleaved_ping(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            origin.route("/api/orders", orders)
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                reader, writer = await _raw_ws(b.ports["http"], "/prices/A")
                writer.write(
                    _client_frame(0x1, b"frag", fin=False)
                    + _client_frame(0x9, b"ping!")
                    + _client_frame(0x0, b"mented", fin=True)
                )
                client = Connection(ConnectionType.CLIENT)
                seen: list[object] = []
                while not any(
                    isinstance(e, TextMessage) and e.data == "ack:fragmented" for e in seen
                ):
                    client.receive_data(await asyncio.wait_for(reader.read(65536), 5))
                    seen += list(client.events())
                from wsproto.events import Pong

                assert any(isinstance(e, Pong) and e.payload == b"ping!" for e in seen)
                writer.close()

    run(body())


def test_pass_through_to_upstream_websocket(certs: Path) -> None:
    async def echo(ws) -> None:  # type: ignore[no-untyped-def]
        async for message in ws:
            await ws.send(message)

    async def body() -> None:
        server = await websockets.serve(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]  # type: ignore[index]
        try:
            text = config_text(
                "routes:\n  - path: /{rest*}\n    upstream: app\n",
                upstream_url=f"http://127.0.0.1:{port}",
                certs=certs,
            )
            async with running_bridge(text, certs) as b:
                ctx = b.client_ssl(("http/1.1",))
                async with websockets.connect(wss(b, "/chat"), ssl=ctx) as ws:
                    await ws.send("hello")
                    assert await asyncio.wait_for(ws.recv(), 5) == "hello"
                    await ws.send(b"\x00\x01")
                    assert await asyncio.wait_for(ws.recv(), 5) == b"\x00\x01"
                    pong = await ws.ping()
                    await asyncio.wait_for(pong, 5)
                async with ws_http2(b.ports["https"], "/chat", b.client_ssl(("h2",))) as h2ws:
                    assert h2ws.status == 200
                    h2ws.send("over rfc 8441")
                    assert await asyncio.wait_for(h2ws.sub.raw.get(), 5) == "over rfc 8441"
        finally:
            server.close()
            await server.wait_closed()

    run(body())
