"""Connection timers end to end: keep-alive idle close, and the header-read deadline of a
request that follows a keep-alive one (the timer is re-armed earlier than it was set)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.harness import config_text, run, running_bridge
from tests.support.origin import Origin

ROUTES = """\
limits:
  header_timeout: 600ms
  keepalive_timeout: 1500ms
routes:
  - path: /{rest*}
    upstream: app
"""

# Keep-alive far longer than the header deadline, so which one fired is unmistakable.
LONG_KEEPALIVE = ROUTES.replace("keepalive_timeout: 1500ms", "keepalive_timeout: 60s")

GET = b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


async def _read_response(reader: asyncio.StreamReader) -> bytes:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await asyncio.wait_for(reader.readexactly(length), 10)


def test_idle_keepalive_connection_is_closed_and_busy_one_is_not(certs: Path) -> None:
    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", b.ports["http"])
            try:
                # Requests closer together than the keep-alive timeout, for longer than it:
                # each one moves the deadline, so the connection stays open throughout.
                loop = asyncio.get_running_loop()
                start = loop.time()
                sent = 0
                while loop.time() - start < 3.0 and sent < 40:
                    writer.write(GET)
                    assert (await _read_response(reader)).startswith(b"HTTP/1.1 200")
                    sent += 1
                    await asyncio.sleep(0.3)
                assert sent >= 5
                # Then silence: the server closes the idle connection, without a response.
                rest = await asyncio.wait_for(reader.read(), 10)
                assert rest == b""
                assert loop.time() - start >= 3.0
            finally:
                writer.close()

    run(body())


def test_header_deadline_after_a_keepalive_request(certs: Path) -> None:
    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(
                config_text(LONG_KEEPALIVE, upstream_url=origin.url, certs=certs), certs
            ) as b,
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", b.ports["http"])
            try:
                writer.write(GET)
                assert (await _read_response(reader)).startswith(b"HTTP/1.1 200")
                # Idle past the first header deadline: the connection's timer now waits for
                # the keep-alive one. A second head that never completes must still get 408
                # after header_timeout, long before that.
                await asyncio.sleep(1.0)
                loop = asyncio.get_running_loop()
                started = loop.time()
                writer.write(b"GET /echo HTTP/1.1\r\nHost:")
                rest = await asyncio.wait_for(reader.read(), 40)
                assert rest.startswith(b"HTTP/1.1 408")
                assert loop.time() - started < 30  # the header deadline, not keep-alive's 60 s
            finally:
                writer.close()

    run(body())
