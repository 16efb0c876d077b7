"""Graceful stop (SIGTERM) under load: SSE subscribers get a jittered `retry:` before their stream
ends, WebSocket subscribers 1001, in-flight requests finish within `limits.shutdown_grace`, and
one that would outlive it is cut. (`bridge serve` logging its final "stopped" line after SIGTERM
is in test_reload.py's subprocess test.)"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
from pathlib import Path

import httpx

from bridge.app import create_bridge
from bridge.routing.config import load_config
from tests.support.harness import config_text, run
from tests.support.origin import Origin
from tests.support.subscribers import ws_http1, ws_http2

ROUTES = """\
limits:
  shutdown_grace: 1500ms
routes:
  - path: /prices/{symbol}
    stream:
      upstream: app
      poll: /api/price?s={symbol}
      every: 100ms
  - path: /{rest*}
    upstream: app
"""
SSE_GET = b"GET /prices/A HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
RETRY = re.compile(rb"retry: (\d+)\n")


async def read_to_end(reader: asyncio.StreamReader) -> bytes:
    got = bytearray()
    while True:
        piece = await asyncio.wait_for(reader.read(65536), 10)
        if not piece:
            return bytes(got)
        got += piece


def test_sigterm_spreads_sse_reconnects_sends_1001_and_finishes_in_flight(certs: Path) -> None:
    async def slow(request):  # type: ignore[no-untyped-def]
        await asyncio.sleep(float(request.query.get("s", "0.5")))
        return 200, [], b"finished"

    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            origin.route("/slow", slow)
            directory = Path(tempfile.mkdtemp(prefix="bridge-test-"))
            try:
                path = directory / "routes.yaml"
                path.write_text(config_text(ROUTES, upstream_url=origin.url, certs=certs))
                bridge = create_bridge(load_config(path))
                await bridge.start()
                http, https = bridge.ports["http"], bridge.ports["https"]
                sse = []
                for _ in range(20):
                    reader, writer = await asyncio.open_connection("127.0.0.1", http)
                    writer.write(SSE_GET)
                    sse.append((reader, writer))
                for reader, _ in sse:
                    await asyncio.wait_for(reader.readuntil(b'data: {"p": 1}'), 10)
                async with (
                    ws_http1(f"ws://127.0.0.1:{http}/prices/A", None) as h1_ws,
                    ws_http2(https, "/prices/A", client_ssl(certs)) as h2_ws,
                    httpx.AsyncClient(timeout=10) as client,
                ):
                    await h1_ws.next_event()
                    await h2_ws.sub.next_event()
                    inflight = asyncio.create_task(client.get(f"http://127.0.0.1:{http}/slow"))
                    too_slow = asyncio.create_task(client.get(f"http://127.0.0.1:{http}/slow?s=20"))
                    await origin_saw(origin, 2)
                    started = time.monotonic()
                    await bridge.stop()  # what SIGTERM runs, with limits.shutdown_grace
                    took = time.monotonic() - started
                    tails = [await read_to_end(reader) for reader, _ in sse]
                    response = await inflight
                    assert response.status_code == 200 and response.text == "finished"
                    failed = await asyncio.gather(too_slow, return_exceptions=True)
                    assert isinstance(failed[0], httpx.HTTPError), failed
                    await asyncio.wait_for(h2_ws.first.close_received.wait(), 5)
                    assert h2_ws.closed == 1001
                    await asyncio.wait_for(h1_ws.ws.wait_closed(), 5)
                    assert h1_ws.ws.close_code == 1001
                for _, writer in sse:
                    writer.close()
            finally:
                shutil.rmtree(directory, ignore_errors=True)
        # Cut at the grace, not at the default 10 s, nor at the slow request's 20 s.
        assert 1.0 < took < 5.0, took
        hints = []
        for tail in tails:
            # after the events read above: one more hint, then the stream's last chunk
            found = RETRY.findall(tail)
            assert len(found) == 1, tail
            assert tail.endswith(b"\r\n0\r\n\r\n"), tail[-40:]
            hints.append(int(found[0]))
        assert len(set(hints)) > 1, hints  # jittered: a restart does not bring them back at once
        assert all(1000 <= h <= 4000 for h in hints), hints

    run(body())


def client_ssl(certs: Path):  # type: ignore[no-untyped-def]
    import ssl

    ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
    ctx.set_alpn_protocols(["h2"])
    return ctx


async def origin_saw(origin: Origin, count: int) -> None:
    for _ in range(200):
        if origin.count("/slow") >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the slow requests never reached the upstream")
