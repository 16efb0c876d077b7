"""Stream edges found in the issue 3 audit: exact byte accounting in the access log, HEAD on a
stream path, the jittered `retry:` hint, backoff on 500 / `Retry-After` through the real
upstream client, and `curl -N` over both HTTP versions."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge import settings
from tests.support.harness import config_text, run, running_bridge
from tests.support.origin import Origin
from tests.support.subscribers import H2SseConnection, sse

ROUTES = """\
routes:
  - path: /prices/{symbol}
    stream:
      upstream: app
      poll: /api/price?s={symbol}
      every: 200ms
      event: price
"""

SSE_GET = b"GET /prices/%s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"


@pytest.fixture(autouse=True)
def short_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "STREAM_LINGER", 0.5)


async def stream_log_lines(b: Any, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The access log's stream lines, once there are `count` of them (bounded wait)."""
    path = b.directory / "access.log"
    for _ in range(int(timeout / 0.05)):
        lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        streams = [e for e in lines if e["kind"] in ("sse", "websocket")]
        if len(streams) >= count:
            return streams
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} stream lines in the access log")


async def read_until(reader: asyncio.StreamReader, needle: bytes, got: bytearray) -> None:
    """Read into `got` until it contains `needle` (bounded by a timeout)."""
    while needle not in got:
        piece = await asyncio.wait_for(reader.read(65536), 5)
        if not piece:
            raise AssertionError(f"closed before {needle!r}; got {bytes(got)!r}")
        got += piece


def test_access_log_bytes_are_exactly_the_body_bytes_sent_http1(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                reader, writer = await asyncio.open_connection("127.0.0.1", b.ports["http"])
                # a browser-like head: the stream keeps only what its log line needs of it
                writer.write(
                    (SSE_GET % b"B").replace(
                        b"\r\n\r\n",
                        b"\r\nUser-Agent: probe/1\r\nReferer: https://x/page\r\n"
                        b"Cookie: session=secret\r\n\r\n",
                    )
                )
                got = bytearray()
                await read_until(reader, b'data: {"p": 1}\n\n\r\n', got)  # head, retry, snapshot
                origin.set("/api/price", {"p": 2})
                await read_until(reader, b'data: {"p": 2}\n\n\r\n', got)
                writer.close()
                [line] = await stream_log_lines(b, 1)
                head, _, wire_body = bytes(got).partition(b"\r\n\r\n")
                assert b"transfer-encoding: chunked" in head.lower()
                # what left on the wire after the head: the chunks, framing included
                assert line["bytes"] == len(wire_body), (line, wire_body)
                assert line["events"] == 2
                assert line["duration_ms"] > 0
                assert line["user_agent"] == "probe/1" and line["referer"] == "https://x/page"

    run(body())


def test_access_log_bytes_are_exactly_the_body_bytes_sent_http2(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                mux = H2SseConnection()
                await mux.open(b.ports["https"], b.client_ssl(("h2",)))
                sub = await mux.subscribe("/prices/B")
                await sub.next_event()
                origin.set("/api/price", {"p": 2})
                await sub.next_event()
                # a newcomer's catch-up event waits for the head, then leaves with it
                late = await mux.subscribe("/prices/B")
                assert json.loads((await late.next_event()).data) == {"p": 2}
                await mux.close()
                lines = await stream_log_lines(b, 2)
                assert {e["protocol"] for e in lines} == {"HTTP/2.0"}
                # DATA payload, nothing counted twice
                assert sorted((e["bytes"], e["events"]) for e in lines) == sorted(
                    [(sub.received, 2), (late.received, 1)]
                )

    run(body())


def test_head_with_accept_event_stream_sends_the_head_only(certs: Path) -> None:
    """HEAD never has a body (RFC 9110 §9.3.2): no event may follow the head, or a keep-alive
    client would read it as the start of its next response."""

    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                reader, writer = await asyncio.open_connection("127.0.0.1", b.ports["http"])
                try:
                    writer.write(
                        b"HEAD /prices/H HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
                        b"GET /prices/H HTTP/1.1\r\nHost: x\r\n\r\n"
                    )
                    got = bytearray()
                    await read_until(reader, b'{"p": 1}', got)
                    first, _, rest = bytes(got).partition(b"\r\n\r\n")
                    assert first.startswith(b"HTTP/1.1 200")
                    assert b"content-type: text/event-stream" in first.lower()
                    # the very next bytes are the pipelined GET's answer, not an SSE event
                    assert rest.startswith(b"HTTP/1.1 200"), rest
                finally:
                    writer.close()

    run(body())


def test_sse_head_fields_and_a_jittered_retry_hint(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                ctx = b.client_ssl(("http/1.1",))
                async with httpx.AsyncClient(verify=ctx, timeout=10) as c:
                    # a client that would take gzip gets the stream uncompressed anyway
                    async with sse(
                        c, b.url("https", "/prices/J"), {"accept-encoding": "gzip"}
                    ) as s:
                        await s.next_event()
                        assert s.headers is not None
                        assert s.headers["content-type"].startswith("text/event-stream")
                        assert s.headers["cache-control"] == "no-cache"
                        assert s.headers["x-accel-buffering"] == "no"
                        assert "content-encoding" not in s.headers
                        assert "content-length" not in s.headers
                mux = H2SseConnection()
                await mux.open(b.ports["https"], b.client_ssl(("h2",)))
                try:
                    subs = [await mux.subscribe("/prices/J") for _ in range(12)]
                    for sub in subs:
                        await sub.next_event()
                    hints = [sub.parser.retry for sub in subs]
                finally:
                    await mux.close()
                base = settings.SSE_RETRY_MS
                assert all(h is not None and 0.75 * base <= h <= 1.5 * base for h in hints)
                # per subscriber, so a crowd that lost its server does not come back together
                assert len(set(hints)) > 1, hints

    run(body())


def test_legacy_get_etag_survives_the_linger_and_prefer_wait_needs_a_condition(
    certs: Path,
) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs)
            async with (
                running_bridge(text, certs) as b,
                httpx.AsyncClient(verify=b.client_ssl(), http2=True, timeout=10) as c,
            ):
                url = b.url("https", "/prices/E")
                r = await c.get(url)
                assert r.status_code == 200 and r.json() == {"p": 1}
                etag = r.headers["etag"]
                head = await c.head(url)
                assert head.status_code == 200 and head.content == b""
                assert head.headers["etag"] == etag
                assert head.headers["content-length"] == str(len(r.content))
                # nothing to wait for without a validator: the snapshot at once, and no
                # claim that the preference was applied
                r = await c.get(url, headers={"prefer": "wait=30"})
                assert r.status_code == 200 and "preference-applied" not in r.headers
                # the channel stops after the linger...
                for _ in range(100):
                    if not b.bridge.site.hub.channels:  # type: ignore[union-attr]
                        break
                    await asyncio.sleep(0.05)
                assert not b.bridge.site.hub.channels  # type: ignore[union-attr]
                # ...and a slow poller's next conditional GET is still a 304
                r = await c.get(url, headers={"if-none-match": etag, "prefer": "wait=1"})
                assert r.status_code == 304
                assert r.headers["preference-applied"] == "wait=1"

    run(body())


def test_a_stuck_subscriber_is_closed_with_a_retry_hint_and_logged(
    certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    monkeypatch.setattr(settings, "LAG_CLOSE_AFTER", 1.0)
    monkeypatch.setattr(settings, "LAG_CHECK", 0.25)
    blob = "x" * 200_000

    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"n": 0, "blob": blob})
            text = config_text(
                "limits:\n  subscriber_buffer: 64KB\n" + ROUTES,
                upstream_url=origin.url,
                certs=certs,
            )
            async with running_bridge(text, certs) as b:
                # A reader that stops reading: a tiny receive buffer, and we don't read.
                sock = socket.socket()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.setblocking(False)
                await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", b.ports["http"]))
                reader, writer = await asyncio.open_connection(sock=sock)
                writer.write(SSE_GET % b"S")
                try:
                    channel = None
                    for n in range(1, 200):  # bounded: changes until it lags and is closed
                        origin.set("/api/price", {"n": n, "blob": blob})
                        await asyncio.sleep(0.25)
                        channels = list(b.bridge.site.hub.channels.values())  # type: ignore[union-attr]
                        channel = channels[0] if channels else None
                        if channel is not None and not channel.subscribers and n > 2:
                            break
                    assert channel is not None and not channel.subscribers, "never closed"
                    # Now read everything: events, then the retry hint, then the end of
                    # the chunked body — a clean end the client resumes from by id.
                    got = bytearray()
                    await read_until(reader, b"\r\n0\r\n\r\n", got)
                    _, _, wire = bytes(got).partition(b"\r\n\r\n")
                    tail = wire[: -len(b"0\r\n\r\n")]
                    assert tail.endswith(b"\r\n") and b"\r\nretry: " in tail[-40:], tail[-60:]
                finally:
                    writer.close()
                [line] = await stream_log_lines(b, 1)
                assert line["lagged"] is True
                assert line["note"] == "closed: subscriber too slow"
                assert line["client"] == "127.0.0.1"

    run(body())
