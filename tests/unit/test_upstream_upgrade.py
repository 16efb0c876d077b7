"""The upstream client's Upgrade (what a pass-through WebSocket asks the upstream): a 101 hands
the connection's transport over as a `Tunnel` of bytes both ways, with backpressure; any other
answer comes back whole and bounded, and the connection is never pooled.

Each test runs on asyncio's own loop and on uvloop: taking over a transport (`set_protocol`)
and pausing its reads are where they differ.
"""

from __future__ import annotations

import asyncio

import pytest

from bridge import settings
from bridge.errors import ErrorCode, StreamError
from bridge.upstream import Tunnel, UpstreamPool, UpstreamTimeout, UpstreamUnreachable

from ._upstream_helpers import ScriptedServer, ServerConn, host, run, upstream_for

MB = 1024 * 1024
SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
ASK = [(b"upgrade", b"websocket"), (b"connection", b"Upgrade")]


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest) -> str:
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    return str(request.param)


async def read_exactly(tunnel: Tunnel, size: int) -> bytes:
    data = b""
    while len(data) < size:
        piece = await asyncio.wait_for(tunnel.read(), 5)
        assert piece, "the tunnel ended early"
        data += piece
    return data


def test_a_101_hands_over_a_tunnel_with_the_bytes_after_the_head(loop: str) -> None:
    heads: list[bytes] = []

    async def script(conn: ServerConn) -> None:
        heads.append(await conn.read_raw_head())
        await conn.write(SWITCH + b"first")  # frames may ride with the head
        while data := await asyncio.wait_for(conn.reader.read(65536), 5):
            await conn.write(data.upper())
            if data == b"bye":
                conn.writer.write_eof()
                return

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            upstream = upstream_for(server.port, base_path="/app")
            answer = await pool.upgrade(upstream, "/chat?x=1", host(server.port) + ASK)
            assert answer.status == 101
            assert (b"upgrade", b"websocket") in answer.headers
            tunnel = answer.tunnel
            assert tunnel is not None
            assert await read_exactly(tunnel, 5) == b"first"
            await tunnel.write(b"hello", 5)
            assert await read_exactly(tunnel, 5) == b"HELLO"
            await tunnel.write(b"bye", 5)
            assert await read_exactly(tunnel, 3) == b"BYE"
            assert await asyncio.wait_for(tunnel.read(), 5) == b""
            tunnel.close()
            assert heads[0].startswith(b"GET /app/chat?x=1 HTTP/1.1\r\n")
            assert pool.connections_opened == 1
            assert pool.idle_count() == 0  # an upgraded connection is never pooled

    run(main(), loop)


def test_a_refusal_comes_back_whole_and_its_connection_is_closed(loop: str) -> None:
    async def script(conn: ServerConn) -> None:
        await conn.read_raw_head()
        await conn.write(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno")
        assert await conn.wait_peer_closed()

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            upstream = upstream_for(server.port)
            answer = await pool.upgrade(upstream, "/chat", host(server.port) + ASK)
            assert (answer.status, answer.body, answer.tunnel) == (403, b"no", None)
            assert pool.idle_count() == 0
            await asyncio.sleep(0.1)
            assert server.errors == []

    run(main(), loop)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"", UpstreamUnreachable),  # closed without answering
        (b"HTTP/1.1 101 Switching Protocols\r\nUpgr", UpstreamUnreachable),  # a cut head
        (b"NOT HTTP\r\n\r\n", UpstreamUnreachable),
        (
            b"HTTP/1.1 403 Forbidden\r\n\r\n" + b"x" * (settings.BODY_CHUNK + 1),
            UpstreamUnreachable,  # a refusal body past the bound
        ),
        (None, UpstreamTimeout),  # never answers
    ],
)
def test_a_failed_upgrade_is_an_upstream_error(
    loop: str, answer: bytes | None, error: type[Exception]
) -> None:
    async def script(conn: ServerConn) -> None:
        await conn.read_raw_head()
        if answer is None:
            await conn.wait_peer_closed()
            return
        await conn.write(answer)
        conn.close()

    async def main() -> None:
        async with ScriptedServer(script) as server:
            upstream = upstream_for(server.port, timeout=0.5)
            with pytest.raises(error):
                await UpstreamPool().upgrade(upstream, "/chat", host(server.port) + ASK)

    run(main(), loop)


def test_an_unsendable_upgrade_is_a_bad_request(loop: str) -> None:
    async def main() -> None:
        upstream = upstream_for(1)
        with pytest.raises(StreamError) as caught:
            await UpstreamPool().upgrade(upstream, "/a b", ASK)
        assert caught.value.code is ErrorCode.BAD_REQUEST

    run(main(), loop)


def test_an_unread_tunnel_stops_the_upstream(loop: str) -> None:
    """While nobody reads the tunnel it holds a bounded amount and the upstream's writes
    stall; reading then moves every byte."""
    size = 20 * MB
    block = b"0123456789abcdef" * (64 * 1024)  # 1 MiB
    written = 0

    async def script(conn: ServerConn) -> None:
        nonlocal written
        await conn.read_raw_head()
        await conn.write(SWITCH)
        while written < size:
            conn.writer.write(block)
            await asyncio.wait_for(conn.writer.drain(), 20)
            written += len(block)
        conn.writer.write_eof()
        await conn.wait_peer_closed(20)

    async def main() -> None:
        async with ScriptedServer(script) as server:
            upstream = upstream_for(server.port)
            answer = await UpstreamPool().upgrade(upstream, "/", host(server.port) + ASK)
            tunnel = answer.tunnel
            assert tunnel is not None
            before = -1
            for _ in range(50):
                if written == before:
                    break
                before = written
                await asyncio.sleep(0.2)
            assert written < size // 2
            assert tunnel.buffered <= settings.READ_HIGH_WATER + settings.READ_CHUNK
            received = 0
            while piece := await asyncio.wait_for(tunnel.read(), 20):
                received += len(piece)
            assert received == size == written
            tunnel.close()

    run(main(), loop, timeout=60)


def test_a_tunnel_write_the_upstream_does_not_take_times_out(loop: str) -> None:
    async def script(conn: ServerConn) -> None:
        await conn.read_raw_head()
        await conn.write(SWITCH)
        await asyncio.sleep(10)  # reads nothing

    async def main() -> None:
        async with ScriptedServer(script) as server:
            upstream = upstream_for(server.port)
            answer = await UpstreamPool().upgrade(upstream, "/", host(server.port) + ASK)
            tunnel = answer.tunnel
            assert tunnel is not None
            with pytest.raises(TimeoutError):
                for _ in range(1000):  # far more than the socket buffers take
                    await tunnel.write(b"x" * MB, 0.5)
            tunnel.close()
            with pytest.raises(ConnectionResetError):
                await tunnel.write(b"late", 0.5)

    run(main(), loop)


def test_a_closed_tunnel_is_freed_without_the_cycle_collector(loop: str) -> None:
    """Tunnel and transport refer to each other until the socket is gone; then the pair (and
    the connection it came from) must go by reference counting, not wait for a collection."""
    import gc

    from bridge.upstream.connection import Connection

    async def script(conn: ServerConn) -> None:
        await conn.read_raw_head()
        await conn.write(SWITCH + b"x")
        await conn.wait_peer_closed()

    async def main() -> None:
        async with ScriptedServer(script) as server:
            upstream = upstream_for(server.port)
            pool = UpstreamPool()
            gc.collect()
            gc.disable()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                answer = await pool.upgrade(upstream, "/", host(server.port) + ASK)
                tunnel = answer.tunnel
                assert tunnel is not None
                assert await read_exactly(tunnel, 1) == b"x"
                tunnel.close()
                del tunnel, answer
                await asyncio.sleep(0.2)  # connection_lost comes a loop turn later
                gc.collect()
                cyclic = [o for o in gc.garbage if isinstance(o, (Tunnel, Connection))]
                assert cyclic == []
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                gc.enable()

    run(main(), loop)


def test_handlers_open_no_socket_of_their_own() -> None:
    """Outbound sockets are the upstream client's (docs/architecture.md): a handler that needs the
    upstream asks `UpstreamPool`, for a request or an Upgrade."""
    from pathlib import Path

    handlers = Path(__file__).resolve().parents[2] / "bridge" / "handlers"
    for path in handlers.rglob("*.py"):
        text = path.read_text()
        for call in ("open_connection", "create_connection", "socket.socket", "StreamWriter"):
            assert call not in text, f"{path.name} uses {call}"
