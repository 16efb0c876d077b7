"""HTTP/3 end to end: aioquic's asyncio client (tests/support/h3client.py) against a bridge
with `listen.http3` on a loopback UDP port, real TLS, a real loopback origin.

Proxy (GET, a streamed 1 MB POST), SSE with resume, WebSocket over RFC 9220, push only to a
client that grants push ids, Alt-Svc on the TCP side, the access log, garbage datagrams next
to an honest client, graceful shutdown, and niquests (qh3) as an outside client.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
from pathlib import Path

import httpx
import pytest

from bridge import settings
from tests.support.h3client import h3_connect, h3_sse, h3_websocket
from tests.support.harness import config_text, run, running_bridge
from tests.support.origin import Origin, OriginRequest, pattern_bytes, streamed

CSS = b"body { color: #321; }\n" * 40

ROUTES = """\
routes:
  - path: /prices/{symbol}
    stream:
      upstream: app
      poll: /api/price?s={symbol}
      every: 200ms
      event: price
      history: 5
      protocols: [sse, websocket]
  - path: /page
    upstream: app
    push: [/static/app.css]
  - path: /{rest*}
    upstream: app
"""


def serve(origin: Origin) -> None:
    origin.json("/api/price", {"v": 0})

    async def page(request: OriginRequest) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return 200, [(b"content-type", b"text/html")], b"<html>page</html>"

    async def css(request: OriginRequest) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return 200, [(b"content-type", b"text/css"), (b"cache-control", b"max-age=60")], CSS

    origin.route("/page", page)
    origin.route("/static/app.css", css)


def h3_bridge(origin: Origin, certs: Path):  # type: ignore[no-untyped-def]
    serve(origin)
    return running_bridge(
        config_text(ROUTES, upstream_url=origin.url, certs=certs, http3=True), certs
    )


def access_lines(b) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    text = (b.directory / "access.log").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_proxy_get_post_and_alt_svc(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin, h3_bridge(origin, certs) as b:
            port = b.ports["http3"]
            async with h3_connect(port, b.ca) as client:
                r = await client.get("/echo?i=1", [(b"user-agent", b"h3-test")])
                assert r.status == 200
                echo = json.loads(r.body)
                assert echo["target"] == "/echo?i=1"
                headers = dict(echo["headers"])
                assert headers["via"] == "3 bridge"  # RFC 9110 §7.6.3: the hop we received
                assert headers["x-forwarded-proto"] == "https"
                # A streamed 1 MB upload: the body leaves in pieces while the window moves.
                payload = pattern_bytes(0, 1024 * 1024 + 7)
                stream = client.open("POST", "/echo", end=False)
                for start in range(0, len(payload), 100_000):
                    stream.send(payload[start : start + 100_000])
                    await asyncio.sleep(0)
                stream.send(b"", end=True)
                assert await stream.head() == 200
                echo = json.loads(await stream.body())
                assert echo["body_length"] == len(payload)
                assert echo["body_sha256"] == hashlib.sha256(payload).hexdigest()
                # Several requests at once on one connection.
                answers = await asyncio.gather(*(client.get(f"/echo?n={n}") for n in range(8)))
                assert [a.status for a in answers] == [200] * 8
            # The TCP side advertises HTTP/3 on its port (RFC 7838, RFC 9114 §3.1.1).
            async with httpx.AsyncClient(verify=b.client_ssl(), http2=True) as c:
                for http2 in (False, True):
                    tcp = await c.get(b.url("https", "/echo"))
                    assert tcp.headers["alt-svc"] == f'h3=":{port}"; ma=86400'
                    del http2
                plain = await c.get(b.url("http", "/echo"))
                assert "alt-svc" not in plain.headers  # cleartext: no h3 for http:// origins
            lines = [line for line in access_lines(b) if line["protocol"] == "HTTP/3"]
            assert {line["target"] for line in lines} >= {"/echo?i=1", "/echo"}
            assert lines[0]["user_agent"] == "h3-test"

    run(body())


def test_sse_changes_and_resume(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin, h3_bridge(origin, certs) as b:
            async with h3_connect(b.ports["http3"], b.ca) as client:
                async with h3_sse(client, "/prices/A") as sub:
                    assert sub.status == 200
                    first = await sub.next_event()
                    assert json.loads(first.data) == {"v": 0}
                    origin.set("/api/price", {"v": 1})
                    assert json.loads((await sub.next_event()).data) == {"v": 1}
                # Away for two changes; Last-Event-ID brings exactly those.
                for v in (2, 3):
                    origin.set("/api/price", {"v": v})
                    await asyncio.sleep(0.6)
                async with h3_sse(
                    client, "/prices/A", [(b"last-event-id", first.id.encode())]
                ) as sub:
                    missed = [await sub.next_event() for _ in range(3)]
                    assert [json.loads(e.data) for e in missed] == [{"v": 1}, {"v": 2}, {"v": 3}]
                    assert await sub.no_event(0.5)
            for _ in range(100):  # the line is written once the server saw the stream end
                stream_lines = [line for line in access_lines(b) if line["kind"] == "stream"]
                if len(stream_lines) == 2:
                    break
                await asyncio.sleep(0.02)
            assert [line["protocol"] for line in stream_lines] == ["HTTP/3", "HTTP/3"]

    run(body())


def test_websocket_over_extended_connect(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin, h3_bridge(origin, certs) as b:
            async with (
                h3_connect(b.ports["http3"], b.ca) as client,
                h3_websocket(client, "/prices/W") as ws,
            ):
                assert ws.status == 200  # type: ignore[attr-defined]  # RFC 9220: 2xx, not 101
                first = await ws.sub.next_event()
                assert json.loads(first.data) == {"v": 0}
                origin.set("/api/price", {"v": 5})
                assert json.loads((await ws.sub.next_event()).data) == {"v": 5}
                # A second WebSocket and a plain request share the connection.
                async with h3_websocket(client, "/prices/V") as other:
                    assert json.loads((await other.sub.next_event()).data) == {"v": 5}
                    assert (await client.get("/echo")).status == 200

    run(body())


def test_push_only_to_a_client_that_grants_push_ids(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin, h3_bridge(origin, certs) as b:
            async with h3_connect(b.ports["http3"], b.ca, push=True) as client:
                r = await client.get("/page")
                assert r.status == 200 and r.body == b"<html>page</html>"
                assert [dict(h)[b":status"] for h in r.informational] == [b"103"]
                for _ in range(200):
                    done = [
                        e
                        for events in client.pushed.values()
                        for e in events
                        if getattr(e, "stream_ended", False)
                    ]
                    if done:
                        break
                    await asyncio.sleep(0.01)
                (promise,) = client.promises.values()
                assert dict(promise)[b":path"] == b"/static/app.css"
                (push_id,) = client.pushed
                pushed = b"".join(getattr(e, "data", b"") for e in client.pushed[push_id])
                assert pushed == CSS
            # No MAX_PUSH_ID: no promise and no error, and Early Hints still arrive.
            async with h3_connect(b.ports["http3"], b.ca, push=False) as client:
                r = await client.get("/page")
                assert r.status == 200 and r.body == b"<html>page</html>"
                assert [dict(h)[b":status"] for h in r.informational] == [b"103"]
                await asyncio.sleep(0.2)
                assert not client.promises and not client.pushed
            assert any(line["pushed"] for line in access_lines(b))

    run(body())


def test_garbage_datagrams_do_not_disturb_an_honest_client(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin, h3_bridge(origin, certs) as b:
            port = b.ports["http3"]
            quic = b.bridge.quic
            assert quic is not None
            noise = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            target = ("127.0.0.1", port)
            initial = first_initial()
            async with h3_connect(port, b.ca) as client:
                cids = list(quic._by_cid)
                for round_ in range(20):
                    for size in (0, 1, 5, 30, 600, 1200, 1400):
                        noise.sendto(os.urandom(size), target)
                    # Short-header packets aimed at the live connection's ids: they fail
                    # decryption and are dropped, the connection lives on.
                    for cid in cids:
                        forged = bytes([0x40 | (os.urandom(1)[0] & 0x3F)]) + cid + os.urandom(40)
                        noise.sendto(forged, target)
                    # A real client's Initial, truncated: no connection may start from it.
                    noise.sendto(initial[: 100 + round_ * 50], target)
                    r = await client.get(f"/echo?round={round_}")
                    assert r.status == 200
                assert quic.dropped_in > 0
                assert len(quic.connections) == 1
            noise.close()

    run(body())


def first_initial() -> bytes:
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    client = QuicConnection(configuration=QuicConfiguration(is_client=True, alpn_protocols=["h3"]))
    client.connect(("127.0.0.1", 9), now=0.0)
    return client.datagrams_to_send(now=0.0)[0][0]


def test_graceful_shutdown_sends_goaway_and_finishes_in_flight(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            serve(origin)

            async def slow(request: OriginRequest) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
                await asyncio.sleep(0.5)
                return 200, [], b"finished"

            origin.route("/slow", slow)
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs, http3=True)
            async with running_bridge(text, certs) as b, h3_connect(b.ports["http3"], b.ca) as c:
                stream = c.open("GET", "/slow")
                await asyncio.sleep(0.1)
                stopping = asyncio.create_task(b.bridge.stop(grace=5.0))
                assert await stream.head() == 200
                assert await stream.body() == b"finished"
                await asyncio.wait_for(stopping, 10)
                assert c._quic._close_event is not None  # the server closed the connection

    run(body())


def test_niquests_finds_http3_through_alt_svc(certs: Path) -> None:
    """An outside client (niquests on qh3): the first answer comes over TCP with Alt-Svc, the
    next ones, a page and an SSE stream, over HTTP/3."""
    import niquests

    def fetch(https: int) -> list[tuple[int, int, bytes]]:
        seen = []
        with niquests.Session() as session:
            for _ in range(2):
                r = session.get(f"https://127.0.0.1:{https}/echo", verify=str(certs / "ca.crt"))
                seen.append((r.status_code, r.http_version, r.content[:1]))
            r = session.get(
                f"https://127.0.0.1:{https}/prices/N",
                headers={"accept": "text/event-stream"},
                verify=str(certs / "ca.crt"),
                stream=True,
                timeout=10,
            )
            events = b""
            for chunk in r.iter_content(None):
                events += chunk
                if b"data:" in events:
                    break
            r.close()
            seen.append((r.status_code, r.http_version, events))
        return seen

    async def body() -> None:
        async with Origin() as origin, h3_bridge(origin, certs) as b:
            seen = await asyncio.wait_for(asyncio.to_thread(fetch, b.ports["https"]), 30)
            (first, second, stream) = seen
            assert first[:2] == (200, 20) and second[:2] == (200, 30)  # HTTP/2, then HTTP/3
            assert stream[:2] == (200, 30)
            assert b'data: {"v": 0}' in stream[2]

    run(body())


def test_handshake_through_retry_under_load(certs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With many handshakes in flight (here: any), a new client must first echo a Retry token
    (RFC 9000 §8.1.2); aioquic's client does, and is served."""
    monkeypatch.setattr(settings, "QUIC_RETRY_ABOVE", 0)

    async def body() -> None:
        async with Origin() as origin, h3_bridge(origin, certs) as b:
            quic = b.bridge.quic
            assert quic is not None and quic.gate.retry_above == 0
            async with h3_connect(b.ports["http3"], b.ca) as client:
                assert (await client.get("/echo")).status == 200
                assert client._quic._retry_source_connection_id is not None  # it was retried

    run(body())


def test_large_download_is_paced_by_the_client_and_limits_hold(certs: Path) -> None:
    """A 2 MB response streams through a client that reads slowly (the per-stream send queue
    stays bounded), and an upload over `max_request_body` gets 413 as on TCP."""
    size = 2 * 1024 * 1024

    async def big(request: OriginRequest):  # type: ignore[no-untyped-def]
        return 200, [(b"content-type", b"application/octet-stream")], streamed(size)

    async def body() -> None:
        async with Origin() as origin:
            serve(origin)
            origin.route("/big", big)
            routes = "limits:\n  max_request_body: 64KB\n" + ROUTES
            text = config_text(routes, upstream_url=origin.url, certs=certs, http3=True)
            async with (
                running_bridge(text, certs) as b,
                h3_connect(b.ports["http3"], b.ca, window=64 * 1024) as c,
            ):
                quic = b.bridge.quic
                assert quic is not None
                stream = c.open("GET", "/big")
                assert await stream.head() == 200
                digest = hashlib.sha256()
                got = 0
                queued = 0
                for _ in range(100_000):
                    piece = await stream.read()
                    if not piece:
                        break
                    digest.update(piece)
                    got += len(piece)
                    if got % (256 * 1024) < len(piece):
                        await asyncio.sleep(0.05)  # a slow reader: its window stays shut
                        (conn,) = quic.connections
                        queued = max(queued, conn.adapter.pending(stream.stream_id))
                assert got == size
                assert digest.hexdigest() == hashlib.sha256(pattern_bytes(0, size)).hexdigest()
                # bridge stops reading the upstream while the stream's queue is full
                assert 0 < queued <= 2 * settings.BODY_CHUNK
                r = await c.request("POST", "/echo", body=b"x" * (200 * 1024))
                assert r.status == 413

    run(body())


def test_websocket_passes_through_to_an_upstream_websocket(certs: Path) -> None:
    """A proxied WebSocket (not a stream route) over RFC 9220 reaches the upstream's own
    WebSocket server as an HTTP/1.1 Upgrade, frames relayed both ways."""
    import websockets

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
                http3=True,
            )
            async with (
                running_bridge(text, certs) as b,
                h3_connect(b.ports["http3"], b.ca) as client,
                h3_websocket(client, "/chat") as ws,
            ):
                assert ws.status == 200  # type: ignore[attr-defined]
                ws.send("over rfc 9220")
                assert await asyncio.wait_for(ws.sub.raw.get(), 5) == "over rfc 9220"
                ws.send(b"\x00\x01")
                assert await asyncio.wait_for(ws.sub.raw.get(), 5) == b"\x00\x01"
        finally:
            server.close()
            await server.wait_closed()

    run(body())


def test_idle_connection_closes_but_a_quiet_stream_is_kept_alive(certs: Path) -> None:
    """QUIC's idle timeout is `limits.keepalive_timeout`, as on TCP; a stream with nothing to
    say for longer (no heartbeat here) is kept open by bridge's PINGs."""

    async def body() -> None:
        async with Origin() as origin:
            serve(origin)
            routes = "limits:\n  keepalive_timeout: 2s\n" + ROUTES.replace(
                "history: 5", "history: 5\n      heartbeat: 1h"
            )
            text = config_text(routes, upstream_url=origin.url, certs=certs, http3=True)
            async with running_bridge(text, certs) as b:
                quic = b.bridge.quic
                assert quic is not None
                async with h3_connect(b.ports["http3"], b.ca) as idle:
                    assert (await idle.get("/echo")).status == 200
                    for _ in range(100):
                        if not quic.connections:
                            break
                        await asyncio.sleep(0.05)
                    assert not quic.connections  # closed after 2 s without a request
                    assert idle._quic._close_event is not None
                async with h3_connect(b.ports["http3"], b.ca) as client:
                    async with h3_sse(client, "/prices/Q") as sub:
                        assert json.loads((await sub.next_event()).data) == {"v": 0}
                        await asyncio.sleep(3.5)  # longer than the idle timeout, in silence
                        origin.set("/api/price", {"v": 9})
                        assert json.loads((await sub.next_event()).data) == {"v": 9}

    run(body())


def test_abandoned_handshake_is_dropped_after_the_handshake_timeout(certs: Path) -> None:
    """A client that sends one Initial and vanishes holds state only for
    `limits.tls_handshake_timeout`, as a TCP one does."""

    async def body() -> None:
        async with Origin() as origin:
            serve(origin)
            routes = "limits:\n  tls_handshake_timeout: 1s\n" + ROUTES
            text = config_text(routes, upstream_url=origin.url, certs=certs, http3=True)
            async with running_bridge(text, certs) as b:
                quic = b.bridge.quic
                assert quic is not None
                noise = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                noise.sendto(first_initial(), ("127.0.0.1", b.ports["http3"]))
                for _ in range(100):
                    if quic.connections:
                        break
                    await asyncio.sleep(0.01)
                assert len(quic.connections) == 1 and quic.handshaking == 1
                for _ in range(100):
                    if not quic.connections:
                        break
                    await asyncio.sleep(0.05)
                assert not quic.connections and quic.handshaking == 0
                assert b.bridge.context is not None and not b.bridge.context.connections
                noise.close()

    run(body())


def test_slow_request_head_is_reset_after_header_timeout(certs: Path) -> None:
    """As on TCP (408), a request head that does not complete within `limits.header_timeout`
    ends: the stream is reset with H3_REQUEST_INCOMPLETE; the connection serves on."""
    from tests.support.h3client import H3Stream

    async def body() -> None:
        async with Origin() as origin:
            serve(origin)
            routes = "limits:\n  header_timeout: 1s\n" + ROUTES
            text = config_text(routes, upstream_url=origin.url, certs=certs, http3=True)
            async with running_bridge(text, certs) as b, h3_connect(b.ports["http3"], b.ca) as c:
                sid = c._quic.get_next_available_stream_id()
                stream = c.streams[sid] = H3Stream(c, sid)
                c._quic.send_stream_data(sid, b"\x01\x40\x64" + b"\x00" * 20)  # part of a HEADERS
                c.transmit()
                with pytest.raises(ConnectionError):
                    await stream.head(timeout=5)
                assert stream.reset == 0x10D  # H3_REQUEST_INCOMPLETE
                assert (await c.get("/echo")).status == 200

    run(body())
