"""The tests' loopback upstream, and the HTTP server core under it, against real clients.

Everything runs on asyncio's own loop and on uvloop (bridge's production loop), because the
server core is shared by the tests and the demo app.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from bridge.demo import httpserver
from bridge.demo.httpserver import (
    HttpServer,
    ServerRequest,
    ServerResponse,
    WebSocket,
    WebSocketAccept,
)
from tests.support.upstream import MB, Upstream, retry_after, stream_bytes

LOOPS = ["asyncio", "uvloop"]
STEP = 5.0  # every single network wait in these tests


def run(coro: Coroutine[Any, Any, Any], loop: str, timeout: float = 30.0) -> Any:
    guarded = asyncio.wait_for(coro, timeout)
    if loop == "uvloop":
        import uvloop

        return uvloop.run(guarded)
    return asyncio.run(guarded)


def client(**kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(timeout=STEP, **kwargs)


async def raw(port: int, data: bytes, *, until_close: bool = True) -> bytes:
    """Send raw bytes on a new connection; read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        chunks = []
        for _ in range(10_000):  # bounded; each read has a timeout
            piece = await asyncio.wait_for(reader.read(65536), STEP)
            if not piece:
                break
            chunks.append(piece)
        return b"".join(chunks)
    finally:
        writer.close()


async def eventually(condition: Any, timeout: float = STEP) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():  # bounded by the deadline
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# --- JSON, validators, status, delay ----------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_json_with_etag_and_last_modified_answers_304(loop: str) -> None:
    async def body() -> None:
        async with Upstream() as up, client() as http:
            up.set_json("/api/price", {"p": 1})
            first = await http.get(f"{up.url}/api/price")
            assert first.status_code == 200
            assert first.json() == {"p": 1}
            assert first.headers["content-type"] == "application/json"
            tag = first.headers["etag"]
            assert tag.startswith('"') and tag.endswith('"')
            modified = first.headers["last-modified"]

            same = await http.get(f"{up.url}/api/price", headers={"if-none-match": tag})
            assert same.status_code == 304 and same.content == b""
            assert same.headers["etag"] == tag
            listed = await http.get(
                f"{up.url}/api/price", headers={"if-none-match": f'"other", W/{tag}'}
            )
            assert listed.status_code == 304
            by_date = await http.get(f"{up.url}/api/price", headers={"if-modified-since": modified})
            assert by_date.status_code == 304
            # If-None-Match decides alone when present (RFC 9110 §13.2.2).
            both = await http.get(
                f"{up.url}/api/price",
                headers={"if-none-match": '"other"', "if-modified-since": modified},
            )
            assert both.status_code == 200

            up.set_json("/api/price", {"p": 2})
            changed = await http.get(f"{up.url}/api/price", headers={"if-none-match": tag})
            assert changed.status_code == 200 and changed.json() == {"p": 2}
            assert changed.headers["etag"] != tag
            # A change within the same second still moves Last-Modified forward.
            again = await http.get(f"{up.url}/api/price", headers={"if-modified-since": modified})
            assert again.status_code == 200
            assert up.count("/api/price") == 7

    run(body(), loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_json_without_etag_has_only_last_modified(loop: str) -> None:
    async def body() -> None:
        async with Upstream() as up, client() as http:
            up.set_json("/plain", [1, 2], etag=False)
            answer = await http.get(f"{up.url}/plain")
            assert "etag" not in answer.headers and "last-modified" in answer.headers
            assert (
                await http.get(f"{up.url}/plain", headers={"if-none-match": "*"})
            ).status_code == 200

    run(body(), loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_status_retry_after_and_times(loop: str) -> None:
    async def body() -> None:
        async with Upstream() as up, client() as http:
            up.set_status("/boom", 500, body=b"broken")
            answer = await http.get(f"{up.url}/boom")
            assert (answer.status_code, answer.content) == (500, b"broken")

            later = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
            assert retry_after(later) == (b"retry-after", b"Wed, 02 Jan 2030 03:04:05 GMT")
            up.set_json("/api", {"ok": True})
            up.set_status("/api", 503, headers=[retry_after(2)], times=2)
            for _ in range(2):
                busy = await http.get(f"{up.url}/api")
                assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
            recovered = await http.get(f"{up.url}/api")
            assert recovered.status_code == 200 and recovered.json() == {"ok": True}
            assert (await http.get(f"{up.url}/nothing")).status_code == 404

    run(body(), loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_delay_holds_the_first_byte(loop: str) -> None:
    async def body() -> None:
        async with Upstream() as up:
            up.set_json("/slow", {"v": 1})
            up.set_delay("/slow", 3.0)
            async with httpx.AsyncClient(timeout=httpx.Timeout(STEP, read=0.3)) as impatient:
                with pytest.raises(httpx.ReadTimeout):
                    await impatient.get(f"{up.url}/slow")
            up.set_delay("/slow", 0)
            async with httpx.AsyncClient(timeout=httpx.Timeout(STEP, read=0.3)) as impatient:
                assert (await impatient.get(f"{up.url}/slow")).json() == {"v": 1}

    run(body(), loop)


# --- bodies both ways ---------------------------------------------------------------------------


def test_stream_bytes_is_offset_consistent() -> None:
    whole = stream_bytes(0, 100_000)
    assert stream_bytes(12_345, 777) == whole[12_345 : 12_345 + 777]
    assert whole[251] == 0 and whole[250] == 250


@pytest.mark.parametrize("loop", LOOPS)
def test_streaming_10_mb_content_checked(loop: str) -> None:
    total = 10 * MB

    async def body() -> None:
        async with Upstream() as up, client() as http:
            up.set_stream("/big", total)
            up.set_stream("/sized", total, chunk=100_000, content_length=True)
            for path, framing in (("/big", "transfer-encoding"), ("/sized", "content-length")):
                received = 0
                digest = hashlib.sha256()
                async with http.stream("GET", f"{up.url}{path}") as answer:
                    assert answer.status_code == 200
                    assert framing in answer.headers
                    async for piece in answer.aiter_raw():
                        assert piece == stream_bytes(received, len(piece)), f"at {received}"
                        received += len(piece)
                        digest.update(piece)
                assert received == total
                assert digest.hexdigest() == hashlib.sha256(stream_bytes(0, total)).hexdigest()
            head = await http.head(f"{up.url}/big")
            assert head.status_code == 200 and head.content == b""
            assert up.connections == 1

    run(body(), loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_slow_reader_gets_backpressure_not_buffering(loop: str) -> None:
    """A producer ahead of its reader waits in drain(): it cannot run far ahead."""
    produced = [0]

    async def body() -> None:
        async def endless() -> Any:
            for _ in range(10_000):  # 640 MB if nobody pushed back
                produced[0] += 65536
                yield b"x" * 65536

        async def handler(request: ServerRequest) -> ServerResponse:
            return ServerResponse(200, [], endless())

        server = HttpServer(handler)
        port = await server.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=65536)
            writer.write(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP)
            await asyncio.sleep(0.5)  # read nothing: socket buffers fill, then drain() waits
            stalled = produced[0]
            await asyncio.sleep(0.3)
            assert produced[0] == stalled
            assert stalled < 64 * MB
            writer.close()
        finally:
            await server.stop()

    run(body(), loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_echo_small_large_and_chunked_bodies(loop: str) -> None:
    async def body() -> None:
        async with Upstream() as up, client() as http:
            small = await http.post(
                f"{up.url}/echo/x?a=1&a=2&b=", content=b"hello", headers={"x-test": "yes"}
            )
            seen = small.json()
            assert seen["method"] == "POST" and seen["target"] == "/echo/x?a=1&a=2&b="
            assert seen["path"] == "/echo/x" and seen["query"] == {"a": "1", "b": ""}
            assert seen["body"] == "hello" and seen["body_length"] == 5
            assert ["x-test", "yes"] in seen["headers"]

            large = bytes(range(256)) * 4096  # 1 MiB, not UTF-8
            big = (await http.put(f"{up.url}/echo", content=large)).json()
            assert big["body"] is None and big["body_length"] == len(large)
            assert big["body_sha256"] == hashlib.sha256(large).hexdigest()

            async def pieces() -> Any:
                for i in range(50):
                    yield b"%04d" % i

            chunked = (await http.post(f"{up.url}/echo", content=pieces())).json()
            assert ["transfer-encoding", "chunked"] in chunked["headers"]
            assert chunked["body"] == "".join(f"{i:04d}" for i in range(50))
            assert up.requests[-1].body == chunked["body"].encode()
            assert up.count("/echo") == 3

    run(body(), loop)


# --- connections --------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_keep_alive_reuses_one_connection(loop: str) -> None:
    async def body() -> None:
        async with Upstream() as up:
            async with client() as http:
                ids = {(await http.get(f"{up.url}/echo")).json()["connection_id"] for _ in range(5)}
            assert len(ids) == 1 and up.connections == 1
            async with client() as other:
                await other.get(f"{up.url}/echo")
            assert up.connections == 2
            assert [r.connection_id for r in up.requests] == [1] * 5 + [2]

            # Pipelined requests on one connection are answered in order.
            data = await raw(
                up.port,
                b"GET /echo?n=1 HTTP/1.1\r\nhost: x\r\n\r\n"
                b"GET /echo?n=2 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            )
            assert data.count(b"HTTP/1.1 200 OK") == 2
            assert data.index(b"n=1") < data.index(b"n=2")
            assert up.connections == 3

    run(body(), loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_bad_requests_are_refused(loop: str) -> None:
    async def body() -> None:
        async with Upstream() as up:
            assert (await raw(up.port, b"NOT HTTP AT ALL\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
            too_big = b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % (
                httpserver.MAX_BODY + 1
            )
            assert (await raw(up.port, too_big)).startswith(b"HTTP/1.1 413 ")
            assert up.count("/") == 0

            async def fails(request: ServerRequest) -> ServerResponse:
                raise RuntimeError("handler bug")

            up.route("/bug", fails)
            async with client() as http:
                assert (await http.get(f"{up.url}/bug")).status_code == 500
                assert (await http.get(f"{up.url}/echo")).status_code == 200  # still serving

    run(body(), loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_header_and_idle_timeouts(loop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(httpserver, "HEADER_TIMEOUT", 0.3)
    monkeypatch.setattr(httpserver, "IDLE_TIMEOUT", 0.3)

    async def body() -> None:
        async with Upstream() as up:
            # Half a head, then silence: 408 and close.
            assert (await raw(up.port, b"GET /echo HTTP/1.1\r\nhos")).startswith(b"HTTP/1.1 408 ")
            # An idle keep-alive connection is closed without a word.
            reader, writer = await asyncio.open_connection("127.0.0.1", up.port)
            writer.write(b"GET /echo HTTP/1.1\r\nhost: x\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), STEP)
            length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
            await asyncio.wait_for(reader.readexactly(length), STEP)
            assert await asyncio.wait_for(reader.read(), STEP) == b""
            writer.close()

    run(body(), loop)


# --- long-poll ----------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_longpoll_holds_until_publish(loop: str) -> None:
    async def body() -> None:
        async with Upstream() as up, client() as http:
            up.longpoll("/api/updates", initial={"v": "a"})
            now = await http.get(f"{up.url}/api/updates")
            assert now.json() == {"seq": 0, "v": "a"}

            held = asyncio.ensure_future(http.get(f"{up.url}/api/updates?since=0"))
            await eventually(lambda: up.holding("/api/updates") == 1)
            assert not held.done()
            assert up.publish("/api/updates", {"v": "b"}) == 1
            released = await asyncio.wait_for(held, STEP)
            assert released.json() == {"seq": 1, "v": "b"}
            assert up.holding("/api/updates") == 0

            behind = await http.get(f"{up.url}/api/updates?since=0")  # behind: at once
            assert behind.json() == {"seq": 1, "v": "b"}
            quiet = await http.get(f"{up.url}/api/updates?since=1&timeout=0.2")
            assert quiet.status_code == 200 and quiet.json() == {"seq": 1, "v": "b"}
            assert (await http.get(f"{up.url}/api/updates?since=x")).status_code == 400

    run(body(), loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_longpoll_custom_cursor_and_client_abort(loop: str) -> None:
    async def body() -> None:
        async with Upstream() as up:
            up.longpoll("/lp", cursor_field="cursor", param="after")
            async with client() as http:
                assert (await http.get(f"{up.url}/lp")).json() == {"cursor": 0}
                held = asyncio.ensure_future(http.get(f"{up.url}/lp?after=0"))
                await eventually(lambda: up.holding("/lp") == 1)
                held.cancel()  # the client gives up and closes its connection
                with pytest.raises(asyncio.CancelledError):
                    await held
            # The server notices the EOF and cancels the held handler.
            await eventually(lambda: up.holding("/lp") == 0)
            await eventually(lambda: up.open_connections == 0)

    run(body(), loop)


# --- WebSocket ----------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_ws_echo_with_a_real_client(loop: str) -> None:
    async def body() -> None:
        async with Upstream() as up:
            up.ws_echo("/ws")
            async with ws_connect(f"ws://127.0.0.1:{up.port}/ws") as ws:
                await ws.send("hello")
                assert await asyncio.wait_for(ws.recv(), STEP) == "hello"
                await ws.send(b"\x00\x01\xff")
                assert await asyncio.wait_for(ws.recv(), STEP) == b"\x00\x01\xff"
                big = "z" * 300_000  # several frames' worth
                await ws.send(big)
                assert await asyncio.wait_for(ws.recv(), STEP) == big
                pong = await ws.ping()
                await asyncio.wait_for(pong, STEP)
            assert ws.close_code == 1000
            assert up.requests[-1].header("upgrade") == "websocket"
            # A plain GET on a WebSocket endpoint is refused, not upgraded.
            async with client() as http:
                assert (await http.get(f"{up.url}/ws")).status_code == 426

    run(body(), loop)


@pytest.mark.parametrize("loop", LOOPS)
def test_ws_handler_end_and_failure_close_codes(loop: str) -> None:
    async def greet(ws: WebSocket) -> None:
        await ws.send("hi " + ws.request.path)

    async def broken(ws: WebSocket) -> None:
        raise RuntimeError("bug")

    async def body() -> None:
        async with Upstream() as up:

            async def accept_greet(request: ServerRequest) -> WebSocketAccept:
                return WebSocketAccept(greet, subprotocol="demo")

            async def accept_broken(request: ServerRequest) -> WebSocketAccept:
                return WebSocketAccept(broken)

            up.route("/greet", accept_greet)
            up.route("/broken", accept_broken)
            async with ws_connect(
                f"ws://127.0.0.1:{up.port}/greet",
                subprotocols=["demo"],  # type: ignore[list-item]
            ) as ws:
                assert ws.subprotocol == "demo"
                assert await asyncio.wait_for(ws.recv(), STEP) == "hi /greet"
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), STEP)
            assert ws.close_code == 1000
            async with ws_connect(f"ws://127.0.0.1:{up.port}/broken") as ws:
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), STEP)
            assert ws.close_code == 1011

    run(body(), loop)


def test_stop_ends_held_requests_and_open_websockets() -> None:
    async def body() -> None:
        up = await Upstream().start()
        up.longpoll("/lp")
        up.ws_echo("/ws")
        ws = await ws_connect(f"ws://127.0.0.1:{up.port}/ws")
        reader, writer = await asyncio.open_connection("127.0.0.1", up.port)
        writer.write(b"GET /lp?since=0 HTTP/1.1\r\nhost: x\r\n\r\n")
        await eventually(lambda: up.holding("/lp") == 1)
        await asyncio.wait_for(up.stop(), STEP)
        assert await asyncio.wait_for(reader.read(), STEP) == b""
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), STEP)
        writer.close()

    asyncio.run(asyncio.wait_for(body(), 30))


def test_retry_after_seconds_are_whole() -> None:
    assert retry_after(2.4) == (b"retry-after", b"2")
    assert retry_after(-1) == (b"retry-after", b"0")
    soon = datetime.now(UTC) + timedelta(seconds=30)
    assert retry_after(soon)[1].endswith(b" GMT")


def test_echo_is_json_even_for_empty_bodies() -> None:
    async def body() -> None:
        async with Upstream() as up, client() as http:
            answer = await http.get(f"{up.url}/echo")
            assert json.loads(answer.content)["body"] == ""

    asyncio.run(asyncio.wait_for(body(), 30))
