"""The upstream client against real loopback servers: reuse, framing, streaming, backpressure
both ways, and every way an upstream can fail (refuse, stall, garbage, close early).

Each test runs on asyncio's own loop and on uvloop: their transports differ exactly where this
client is delicate (pause_reading, EOF, write buffers).
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bridge import settings
from bridge.errors import ErrorCode, StreamError
from bridge.upstream import (
    UpstreamError,
    UpstreamPool,
    UpstreamTimeout,
    UpstreamUnreachable,
)

from ._upstream_helpers import (
    Received,
    ScriptedServer,
    ServerConn,
    host,
    keep_alive,
    run,
    upstream_for,
)

MB = 1024 * 1024


@pytest.fixture(params=["asyncio", "uvloop"])
def loop(request: pytest.FixtureRequest) -> str:
    if request.param == "uvloop":
        pytest.importorskip("uvloop")
    return str(request.param)


async def read_all(response: object) -> bytes:
    pieces = [piece async for piece in response]  # type: ignore[attr-defined]
    return b"".join(pieces)


def idle_connections(pool: UpstreamPool) -> list[Any]:
    return [conn for idle in pool._idle._idle.values() for conn in idle]


async def until(predicate: object, timeout: float = 5.0) -> None:
    """Wait (bounded) for a condition another task makes true."""
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.01)


# --- keep-alive and the pool ---------------------------------------------------------------------


def test_get_reuses_one_connection(loop: str) -> None:
    async def main() -> None:
        async with ScriptedServer(keep_alive()) as server:
            upstream = upstream_for(server.port, base_path="/app")
            pool = UpstreamPool()
            for path in ("/one?x=1", "/two"):
                response = await pool.request(upstream, "GET", path, host(server.port))
                assert response.status == 200
                assert response.http_version == "1.1"
                assert await read_all(response) == b"/app" + path.encode()
                await response.aclose()
                assert pool.idle_count(upstream) == 1
            assert server.connections == 1
            assert pool.connections_opened == 1
            assert [(r.connection, r.target) for r in server.received] == [
                (0, "/app/one?x=1"),
                (0, "/app/two"),
            ]
            await pool.close()

    run(main(), loop)


def test_headers_are_sent_as_given(loop: str) -> None:
    async def main() -> None:
        async with ScriptedServer(keep_alive()) as server:
            pool = UpstreamPool()
            headers = [(b"host", b"example.com"), (b"x-a", b"1"), (b"x-a", b"2"), (b"x-b", b"3")]
            response = await pool.request(upstream_for(server.port), "GET", "/", headers)
            await read_all(response)
            assert server.received[0].headers == headers
            await pool.close()

    run(main(), loop)


def test_concurrent_requests_open_connections_and_the_pool_keeps_at_most_the_limit(
    loop: str,
) -> None:
    async def main() -> None:
        arrived = asyncio.Event()

        async def script(conn: ServerConn) -> None:
            while True:
                request = await conn.request()
                if request is None:
                    return
                if len(conn.server.received) >= 3:
                    arrived.set()
                await asyncio.wait_for(arrived.wait(), 5)  # all three are in flight at once
                await conn.respond(200, [(b"content-length", b"2")], b"ok")

        async with ScriptedServer(script) as server:
            upstream = upstream_for(server.port)
            pool = UpstreamPool(max_idle_per_origin=2)

            async def one() -> bytes:
                response = await pool.request(upstream, "GET", "/", host(server.port))
                try:
                    return await read_all(response)
                finally:
                    await response.aclose()

            assert await asyncio.gather(one(), one(), one()) == [b"ok"] * 3
            assert server.connections == 3
            assert pool.idle_count(upstream) == 2
            # The one that did not fit was closed, and the server saw it go.
            await until(lambda: sum(c.closed_by_peer for c in server.conns) == 1)
            # Later requests take the pooled ones (newest first) and open nothing new.
            await one()
            await one()
            assert server.connections == 3
            await pool.close()

    run(main(), loop)


def test_idle_connections_expire_after_pool_idle(loop: str) -> None:
    async def main() -> None:
        async with ScriptedServer(keep_alive()) as server:
            upstream = upstream_for(server.port)
            pool = UpstreamPool(pool_idle=0.2)
            response = await pool.request(upstream, "GET", "/", host(server.port))
            await read_all(response)
            assert pool.idle_count(upstream) == 1
            # Nobody asks again: the sweep timer alone closes it, and the upstream sees that.
            await until(lambda: server.conns[0].closed_by_peer)
            assert pool.idle_count(upstream) == 0
            response = await pool.request(upstream, "GET", "/", host(server.port))
            await read_all(response)
            assert server.connections == 2
            await pool.close()

    run(main(), loop)


def test_close_closes_idle_connections(loop: str) -> None:
    async def main() -> None:
        async with ScriptedServer(keep_alive()) as server:
            upstream = upstream_for(server.port)
            pool = UpstreamPool()
            response = await pool.request(upstream, "GET", "/", host(server.port))
            await read_all(response)
            assert pool.idle_count() == 1
            await pool.close()
            assert pool.idle_count() == 0
            await until(lambda: server.conns[0].closed_by_peer)

    run(main(), loop)


def test_connection_close_answer_is_not_reused(loop: str) -> None:
    async def main() -> None:
        answer = (200, [(b"content-length", b"2"), (b"connection", b"close")], b"ok")
        async with ScriptedServer(keep_alive(lambda r: answer)) as server:
            upstream = upstream_for(server.port)
            pool = UpstreamPool()
            for _ in range(2):
                response = await pool.request(upstream, "GET", "/", host(server.port))
                assert await read_all(response) == b"ok"
                await response.aclose()
                assert pool.idle_count() == 0
            assert server.connections == 2
            await pool.close()

    run(main(), loop)


def test_http10_answer_ends_at_close_and_is_not_reused(loop: str) -> None:
    async def script(conn: ServerConn) -> None:
        await conn.request()
        await conn.write(b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nhello, ")
        await conn.write(b"world")
        conn.close()

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            response = await pool.request(upstream_for(server.port), "GET", "/", host(server.port))
            assert response.http_version == "1.0"
            assert await read_all(response) == b"hello, world"
            await response.aclose()
            assert pool.idle_count() == 0
            await pool.close()

    run(main(), loop)


@pytest.mark.parametrize(
    ("method", "status"), [("HEAD", 200), ("GET", 204), ("GET", 304), ("GET", 200)]
)
def test_bodyless_answers_keep_the_connection_even_unread(
    loop: str, method: str, status: int
) -> None:
    async def script(conn: ServerConn) -> None:
        while (request := await conn.request()) is not None:
            if request.target == "/empty":
                await conn.respond(status, [(b"content-length", b"0")] if status == 200 else [])
            else:
                # HEAD: the length of the body a GET would get, and no body (RFC 9110 §9.3.2).
                await conn.respond(status, [(b"content-length", b"1000")] * (method == "HEAD"))

    async def main() -> None:
        async with ScriptedServer(script) as server:
            upstream = upstream_for(server.port)
            pool = UpstreamPool()
            target = "/empty" if (method, status) == ("GET", 200) else "/"
            response = await pool.request(upstream, method, target, host(server.port))
            assert response.status == status
            await response.aclose()  # closed without reading: no body, so the end is here
            assert pool.idle_count(upstream) == 1
            response = await pool.request(upstream, method, target, host(server.port))
            assert await response.read() == b""
            assert response.complete
            await response.aclose()
            assert server.connections == 1
            await pool.close()

    run(main(), loop)


def test_informational_answers_are_skipped_and_reported(loop: str) -> None:
    async def script(conn: ServerConn) -> None:
        while await conn.request() is not None:
            await conn.write(
                b"HTTP/1.1 100 Continue\r\n\r\n"
                b"HTTP/1.1 103 Early Hints\r\nlink: </a.css>; rel=preload\r\n\r\n"
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
            )

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            seen: list[tuple[int, list[tuple[bytes, bytes]]]] = []
            upstream = upstream_for(server.port)
            response = await pool.request(
                upstream,
                "GET",
                "/",
                host(server.port),
                on_informational=lambda s, h: seen.append((s, h)),
            )
            assert response.status == 200
            assert await read_all(response) == b"ok"
            assert seen == [(100, []), (103, [(b"link", b"</a.css>; rel=preload")])]
            # Without a callback they are skipped all the same.
            response = await pool.request(upstream, "GET", "/", host(server.port))
            assert (response.status, await read_all(response)) == (200, b"ok")
            assert server.connections == 1
            await pool.close()

    run(main(), loop)


# --- request bodies ------------------------------------------------------------------------------


async def pieces(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part


def test_request_bodies_framing(loop: str) -> None:
    async def main() -> None:
        async with ScriptedServer(keep_alive()) as server:
            upstream = upstream_for(server.port)
            pool = UpstreamPool()
            stale_framing = [*host(server.port), (b"content-length", b"999")]

            # An async iterator without a length goes chunked; the caller's framing is replaced.
            response = await pool.request(
                upstream, "POST", "/a", stale_framing, pieces(b"hello ", b"", b"chunked ", b"world")
            )
            await read_all(response)
            # With a length, it goes as Content-Length.
            response = await pool.request(
                upstream,
                "PUT",
                "/b",
                host(server.port),
                pieces(b"12345", b"67890"),
                content_length=10,
            )
            await read_all(response)
            # Bytes get their own length.
            response = await pool.request(upstream, "POST", "/c", stale_framing, b"x" * 100_000)
            await read_all(response)

            a, b, c = server.received
            assert a.header(b"transfer-encoding") == b"chunked"
            assert a.header(b"content-length") is None
            assert a.body == b"hello chunked world"
            assert b.header(b"content-length") == b"10"
            assert b.header(b"transfer-encoding") is None
            assert b.body == b"1234567890"
            assert c.header(b"content-length") == b"100000"
            assert c.body == b"x" * 100_000
            assert server.connections == 1
            await pool.close()

    run(main(), loop)


def test_streamed_body_longer_than_its_length_is_a_bad_request(loop: str) -> None:
    async def main() -> None:
        async with ScriptedServer(keep_alive()) as server:
            pool = UpstreamPool()
            with pytest.raises(StreamError) as caught:
                await pool.request(
                    upstream_for(server.port),
                    "POST",
                    "/",
                    host(server.port),
                    pieces(b"1234", b"5678"),
                    content_length=5,
                )
            assert caught.value.code is ErrorCode.BAD_REQUEST
            assert pool.idle_count() == 0
            await until(lambda: server.conns[0].closed_by_peer)
            await pool.close()

    run(main(), loop)


def test_request_body_waits_for_the_upstream_to_read(loop: str) -> None:
    total = 40 * MB
    piece = b"b" * (256 * 1024)
    pulled = 0
    go = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        while pulled < total:
            pulled += len(piece)
            yield piece

    async def script(conn: ServerConn) -> None:
        await conn.read_raw_head()
        await asyncio.wait_for(go.wait(), 10)  # not reading: the client's writes must stall
        received = 0
        while received < total:
            data = await asyncio.wait_for(conn.reader.read(1 << 20), 5)
            assert data
            received += len(data)
        await conn.write(
            b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%d" % (len(str(received)), received)
        )

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            request = asyncio.ensure_future(
                pool.request(
                    upstream_for(server.port),
                    "POST",
                    "/",
                    host(server.port),
                    body(),
                    content_length=total,
                )
            )
            await asyncio.sleep(0.5)
            # Kernel buffers took a few MB at most; the rest was never pulled from the body.
            assert not request.done()
            assert pulled < total / 2
            go.set()
            response = await asyncio.wait_for(request, 20)
            assert response.status == 200
            assert await read_all(response) == str(total).encode()
            assert server.errors == []
            await pool.close()

    run(main(), loop)


def test_early_answer_while_sending_is_returned(loop: str) -> None:
    """RFC 9112 §9.5: the upstream may answer (413 here) without reading the body."""
    release = asyncio.Event()
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        while pulled < 200 * MB:
            pulled += 256 * 1024
            yield b"u" * (256 * 1024)

    async def script(conn: ServerConn) -> None:
        await conn.read_raw_head()
        await conn.write(
            b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 9\r\nconnection: close\r\n\r\n"
            b"too large"
        )
        await asyncio.wait_for(release.wait(), 10)

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            # Well within the upstream's timeout: we noticed the answer, not a stalled write.
            response = await asyncio.wait_for(
                pool.request(
                    upstream_for(server.port, timeout=60), "POST", "/", host(server.port), body()
                ),
                10,
            )
            assert response.status == 413
            assert await read_all(response) == b"too large"
            assert pulled < 200 * MB
            await response.aclose()
            assert pool.idle_count() == 0
            release.set()
            await pool.close()

    run(main(), loop)


# --- response bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
def test_ten_megabytes_streamed_in_bounded_pieces(loop: str, chunked: bool) -> None:
    size = 10 * MB
    block = bytes(range(256)) * 1024  # 256 KiB

    async def script(conn: ServerConn) -> None:
        await conn.request()
        framing = b"transfer-encoding: chunked" if chunked else b"content-length: %d" % size
        await conn.write(b"HTTP/1.1 200 OK\r\n" + framing + b"\r\n\r\n")
        for _ in range(size // len(block)):
            if chunked:
                await conn.write(b"%x\r\n%s\r\n" % (len(block), block))
            else:
                await conn.write(block)
        if chunked:
            await conn.write(b"0\r\n\r\n")
        await conn.request()  # keep the connection open until the client leaves

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            upstream = upstream_for(server.port)
            response = await pool.request(upstream, "GET", "/big", host(server.port))
            digest = hashlib.sha256()
            received = count = 0
            while piece := await response.read():
                assert len(piece) <= settings.BODY_CHUNK
                digest.update(piece)
                received += len(piece)
                count += 1
            assert received == size
            assert count >= size // settings.BODY_CHUNK
            assert digest.digest() == hashlib.sha256(block * (size // len(block))).digest()
            assert await response.read() == b""
            await response.aclose()
            assert pool.idle_count(upstream) == 1
            await pool.close()

    run(main(), loop)


def test_unread_response_stops_the_upstream(loop: str) -> None:
    """Backpressure: while nobody reads, the client buffers a bounded amount and the upstream's
    writes stall; reading then resumes the flow to the last byte."""
    size = 50 * MB
    block = b"0123456789abcdef" * (64 * 1024)  # 1 MiB
    written = 0

    async def script(conn: ServerConn) -> None:
        nonlocal written
        await conn.request()
        await conn.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % size)
        while written < size:
            conn.writer.write(block)
            await asyncio.wait_for(conn.writer.drain(), 20)
            written += len(block)
        await conn.request()

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            upstream = upstream_for(server.port)
            response = await pool.request(upstream, "GET", "/", host(server.port))
            # Wait (bounded) until the upstream's writes stop moving: without backpressure that
            # only happens once all 50 MB are written.
            before = -1
            for _ in range(50):
                if written == before:
                    break
                before = written
                await asyncio.sleep(0.2)
            # The upstream is stuck in drain(): kernel buffers hold a few MB, we hold 64 KiB
            # plus at most one socket read.
            assert written < size // 2
            conn = response._conn
            assert conn is not None
            assert conn.buffered <= settings.READ_HIGH_WATER + 1 * MB
            received = 0
            while piece := await response.read():
                received += len(piece)
            assert received == size == written
            await response.aclose()
            assert pool.idle_count(upstream) == 1
            await pool.close()

    run(main(), loop)


def test_aclose_mid_body_closes_the_connection(loop: str) -> None:
    async def script(conn: ServerConn) -> None:
        await conn.request()
        await conn.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n" + b"x" * 10)
        await conn.wait_peer_closed()

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            response = await pool.request(upstream_for(server.port), "GET", "/", host(server.port))
            assert await response.read() == b"x" * 10
            await response.aclose()
            await response.aclose()  # idempotent
            assert pool.idle_count() == 0
            await until(lambda: server.conns[0].closed_by_peer)
            with pytest.raises(UpstreamUnreachable):
                await response.read()  # the rest is gone, and it must not look like the end
            await pool.close()

    run(main(), loop)


# --- failures ------------------------------------------------------------------------------------


def test_connect_refused_is_unreachable(loop: str) -> None:
    async def main() -> None:
        with socket.socket() as probe:  # a port that was just free: nothing listens there
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        pool = UpstreamPool()
        with pytest.raises(UpstreamUnreachable) as caught:
            await pool.request(upstream_for(port), "GET", "/", host(port))
        assert caught.value.code is ErrorCode.UPSTREAM_UNREACHABLE
        assert caught.value.code.status == 502
        assert "cannot connect" in caught.value.detail
        await pool.close()

    run(main(), loop)


def test_silent_upstream_times_out(loop: str) -> None:
    async def script(conn: ServerConn) -> None:
        await conn.request()
        await conn.wait_peer_closed(10)

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            start = time.monotonic()
            with pytest.raises(UpstreamTimeout) as caught:
                await pool.request(
                    upstream_for(server.port), "GET", "/", host(server.port), timeout=0.3
                )
            assert time.monotonic() - start >= 0.25  # not before its time
            assert caught.value.code is ErrorCode.UPSTREAM_TIMEOUT
            # The upstream's timeout is the default.
            with pytest.raises(UpstreamTimeout):
                await pool.request(
                    upstream_for(server.port, timeout=0.2), "GET", "/", host(server.port)
                )
            await until(lambda: all(c.closed_by_peer for c in server.conns))
            assert pool.idle_count() == 0
            await pool.close()

    run(main(), loop)


def test_a_reused_connection_keeps_each_requests_own_deadline(loop: str) -> None:
    """One timer serves every wait of a connection, re-armed lazily: a later, shorter
    deadline must still fire on time, and an earlier, shorter one that is still pending must
    not cut a later, longer wait short."""
    delays = [0.0, 0.0, 1.5, None]  # per request: answer after this many seconds; None: never

    async def script(conn: ServerConn) -> None:
        for delay in delays:
            if await conn.request() is None:
                return
            if delay is None:
                await conn.wait_peer_closed(10)
                return
            await asyncio.sleep(delay)
            await conn.respond(200, [(b"content-length", b"2")], b"ok")

    async def main() -> None:
        async with ScriptedServer(script) as server:
            upstream = upstream_for(server.port)
            pool = UpstreamPool()

            async def get(timeout: float) -> bytes:
                response = await pool.request(
                    upstream, "GET", "/", host(server.port), timeout=timeout
                )
                try:
                    return await read_all(response)
                finally:
                    await response.aclose()

            assert await get(10.0) == b"ok"  # arms the timer 10 s out
            assert await get(1.0) == b"ok"  # re-arms it 1 s out
            # That 1 s timer is still pending: it must not end this 1.5 s answer's wait.
            assert await get(5.0) == b"ok"
            start = time.monotonic()
            with pytest.raises(UpstreamTimeout):
                await get(0.5)  # after a 5 s deadline, a 0.5 s one still fires in time
            assert time.monotonic() - start < 3.0
            assert server.connections == 1
            await pool.close()

    run(main(), loop)


def test_an_answer_that_came_whole_is_taken_at_once(loop: str) -> None:
    async def script(conn: ServerConn) -> None:
        await conn.request()
        await conn.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nwhole")
        await conn.request()
        await conn.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf.")
        await asyncio.sleep(0.2)
        await conn.write(b"rest.")
        await conn.wait_peer_closed(10)

    async def main() -> None:
        async with ScriptedServer(script) as server:
            upstream = upstream_for(server.port)
            pool = UpstreamPool()
            response = await pool.request(upstream, "GET", "/", host(server.port))
            assert response.whole_body() == b"whole"
            assert response.complete and pool.idle_count(upstream) == 1  # given back at once
            assert await response.read() == b""
            response = await pool.request(upstream, "GET", "/", host(server.port))
            assert response.whole_body() is None  # its end is not here: nothing taken
            assert await read_all(response) == b"half.rest."
            response.close()
            assert pool.idle_count(upstream) == 1
            await pool.close()

    run(main(), loop)


def test_stalled_body_times_out(loop: str) -> None:
    async def script(conn: ServerConn) -> None:
        await conn.request()
        await conn.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhalf.")
        await conn.wait_peer_closed(10)

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool(idle_timeout=0.3)
            response = await pool.request(upstream_for(server.port), "GET", "/", host(server.port))
            assert await response.read() == b"half."
            with pytest.raises(UpstreamTimeout):
                await response.read()
            await until(lambda: server.conns[0].closed_by_peer)
            await pool.close()

    run(main(), loop)


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly part of it",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\nsixteen bytes!!!\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10\r\nsixteen",
    ],
    ids=["content-length", "chunked-between-chunks", "chunked-mid-chunk"],
)
def test_close_mid_body_is_an_error(loop: str, answer: bytes) -> None:
    async def script(conn: ServerConn) -> None:
        await conn.request()
        await conn.write(answer)
        conn.close()

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            response = await pool.request(upstream_for(server.port), "GET", "/", host(server.port))
            assert response.status == 200
            with pytest.raises(UpstreamUnreachable) as caught:
                await read_all(response)
            assert "before the end of the body" in caught.value.detail
            assert pool.idle_count() == 0
            await pool.close()

    run(main(), loop)


@pytest.mark.parametrize(
    "answer",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n",  # then closed mid-head
    ],
    ids=["not-http", "bad-header", "two-lengths", "unknown-coding", "cl-and-te", "cut-head"],
)
def test_garbage_answer_is_unreachable(loop: str, answer: bytes) -> None:
    async def script(conn: ServerConn) -> None:
        await conn.request()
        await conn.write(answer)
        await asyncio.sleep(0.05)
        conn.close()

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            with pytest.raises(UpstreamUnreachable) as caught:
                await pool.request(upstream_for(server.port), "GET", "/", host(server.port))
            assert caught.value.code.status == 502
            assert "upstream" in caught.value.detail
            assert pool.idle_count() == 0
            await pool.close()

    run(main(), loop)


def test_bad_chunk_is_an_error_on_read(loop: str) -> None:
    async def script(conn: ServerConn) -> None:
        await conn.request()
        await conn.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n")
        await conn.wait_peer_closed()

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            response = await pool.request(upstream_for(server.port), "GET", "/", host(server.port))
            with pytest.raises(UpstreamUnreachable) as caught:
                await read_all(response)
            assert "invalid body" in caught.value.detail
            await until(lambda: server.conns[0].closed_by_peer)
            await pool.close()

    run(main(), loop)


def test_stray_bytes_on_an_idle_connection_retire_it(loop: str) -> None:
    async def script(conn: ServerConn) -> None:
        while (request := await conn.request()) is not None:
            await conn.respond(200, [(b"content-length", b"2")], b"ok")
            if request.connection == 0:
                await conn.write(b"HTTP/1.1 200 OK\r\n")  # unasked: this is not HTTP any more

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            upstream = upstream_for(server.port)
            response = await pool.request(upstream, "GET", "/", host(server.port))
            assert await read_all(response) == b"ok"
            await until(lambda: not any(c.reusable for c in idle_connections(pool)))
            # Not retryable, so this fails unless the spoiled connection is left alone.
            response = await pool.request(upstream, "POST", "/", host(server.port), b"data")
            assert await read_all(response) == b"ok"
            assert server.connections == 2
            await pool.close()

    run(main(), loop)


# --- stale pooled connections --------------------------------------------------------------------


async def _requests_on(server: ScriptedServer, connection: int) -> list[Received]:
    return [r for r in server.received if r.connection == connection]


@pytest.mark.parametrize(
    ("method", "body", "retried"),
    [
        ("GET", None, True),
        ("PUT", b"x", True),  # idempotent (RFC 9110 §9.2.2)
        ("POST", None, True),  # no body
        ("POST", b"x", False),
        ("POST", "stream", False),
        ("PUT", "stream", False),  # idempotent, but the body is consumed
    ],
)
def test_stale_pooled_connection_is_retried_when_safe(
    loop: str, method: str, body: bytes | str | None, retried: bool
) -> None:
    """The upstream's keep-alive timer fires just as our request arrives on the pooled
    connection: it closes without answering (the race RFC 9112 §9.3.1 describes)."""

    async def script(conn: ServerConn) -> None:
        await conn.request()
        if conn.index == 0:
            await conn.respond(200, [(b"content-length", b"5")], b"first")
            await conn.request()  # the next request arrives ... and the upstream closes
            conn.close()
            return
        while True:
            await conn.respond(200, [(b"content-length", b"5")], b"again")
            if await conn.request() is None:
                return

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            upstream = upstream_for(server.port)
            response = await pool.request(upstream, "GET", "/", host(server.port))
            assert await read_all(response) == b"first"
            assert pool.idle_count() == 1
            payload = pieces(b"a", b"b") if body == "stream" else body
            assert not isinstance(payload, str)
            if retried:
                response = await pool.request(upstream, method, "/", host(server.port), payload)
                assert await read_all(response) == b"again"
                assert server.connections == 2
            else:
                with pytest.raises(UpstreamUnreachable) as caught:
                    await pool.request(upstream, method, "/", host(server.port), payload)
                assert "without answering" in caught.value.detail
                assert server.connections == 1
            assert len(await _requests_on(server, 0)) == 2
            await pool.close()

    run(main(), loop)


def test_connection_closed_while_idle_is_not_used(loop: str) -> None:
    async def script(conn: ServerConn) -> None:
        await conn.request()
        # Keep-alive by the headers, but the upstream closes right after (its idle timer).
        await conn.respond(200, [(b"content-length", b"2")], b"ok")
        conn.close()

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            upstream = upstream_for(server.port)
            response = await pool.request(upstream, "GET", "/", host(server.port))
            assert await read_all(response) == b"ok"
            # The FIN arrives while the connection is idle.
            await until(lambda: not any(c.reusable for c in idle_connections(pool)))
            # A POST with a body (not retryable) works: the dead connection is never tried.
            response = await pool.request(upstream, "POST", "/", host(server.port), b"data")
            assert await read_all(response) == b"ok"
            assert server.connections == 2
            await pool.close()

    run(main(), loop)


def test_fresh_connection_closed_without_answer_is_not_retried(loop: str) -> None:
    async def script(conn: ServerConn) -> None:
        await conn.request()
        conn.close()

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            with pytest.raises(UpstreamUnreachable):
                await pool.request(upstream_for(server.port), "GET", "/", host(server.port))
            assert server.connections == 1
            await pool.close()

    run(main(), loop)


def test_cancelled_request_closes_its_connection(loop: str) -> None:
    async def script(conn: ServerConn) -> None:
        await conn.request()
        await conn.wait_peer_closed(10)

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            task = asyncio.ensure_future(
                pool.request(upstream_for(server.port), "GET", "/", host(server.port))
            )
            await until(lambda: len(server.received) == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await until(lambda: server.conns[0].closed_by_peer)
            assert pool.idle_count() == 0
            await pool.close()

    run(main(), loop)


# --- fetch ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [True, False])
def test_fetch_reads_bounded_bodies(loop: str, declared: bool) -> None:
    def answer(request: Received) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        body = b"y" * int(request.target.strip("/"))
        return 200, [(b"etag", b'"v1"')], body

    async def script(conn: ServerConn) -> None:
        while (request := await conn.request()) is not None:
            status, headers, body = answer(request)
            if not declared:  # no length up front: the limit is found while reading
                await conn.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                for i in range(0, len(body), 100):
                    part = body[i : i + 100]
                    await conn.write(b"%x\r\n%s\r\n" % (len(part), part))
                await conn.write(b"0\r\n\r\n")
            else:
                await conn.respond(status, [*headers, (b"content-length", b"%d" % len(body))], body)

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            upstream = upstream_for(server.port)
            status, headers, body = await pool.fetch(
                upstream, "/500", host(server.port), timeout=5, max_bytes=500
            )
            assert (status, body) == (200, b"y" * 500)
            assert (b"etag", b'"v1"') in headers or not declared
            assert pool.idle_count() == 1
            with pytest.raises(UpstreamError) as caught:
                await pool.fetch(upstream, "/501", host(server.port), timeout=5, max_bytes=500)
            assert "500" in caught.value.detail
            assert caught.value.code is ErrorCode.UPSTREAM_UNREACHABLE
            # The oversized answer's connection is not kept: the pooled one was used and closed.
            assert pool.idle_count() == 0
            await until(lambda: server.conns[0].closed_by_peer)
            await pool.close()

    run(main(), loop)


def test_fetch_timeout(loop: str) -> None:
    async def script(conn: ServerConn) -> None:
        await conn.request()
        await conn.wait_peer_closed(10)

    async def main() -> None:
        async with ScriptedServer(script) as server:
            pool = UpstreamPool()
            with pytest.raises(UpstreamTimeout):
                await pool.fetch(
                    upstream_for(server.port), "/", host(server.port), timeout=0.2, max_bytes=10
                )
            await pool.close()

    run(main(), loop)
