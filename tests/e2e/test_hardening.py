"""Issue 13 end to end: each hardening bound over real sockets and real TLS, with an honest
client beside the attacker that keeps being served. Raw h2 frames (h2's client state machine
or hand-built frames), raw WebSocket frames (wsproto), a real loopback origin.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import socket
import ssl
import sys
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.settings
import httpx
import pytest
from hyperframe.frame import DataFrame, HeadersFrame, PingFrame, PriorityFrame, SettingsFrame

from bridge import settings
from bridge.protocol.http2 import PREFACE
from tests.e2e.test_front_door import (
    ROUTES,
    RawH2,
    parse_frames,
    read_until_closed,
    still_serving,
)
from tests.support.harness import Running, config_text, run, running_bridge
from tests.support.origin import Origin
from tests.support.subscribers import ws_http1, ws_http2

STREAM_ROUTES = """\
routes:
  - path: /prices/{symbol}
    stream:
      upstream: app
      poll: /api/price?s={symbol}
      every: 200ms
      send: /api/orders
  - path: /{rest*}
    upstream: app
"""


def open_connections(b: Running) -> int:
    """Client connections the bridge holds now (TCP and TLS listeners)."""
    context = b.bridge.context
    assert context is not None
    return len(context.connections)


def goaway_codes(data: bytes) -> list[int]:
    """The error code of every GOAWAY frame (type 0x7) in raw HTTP/2 bytes."""
    return [int.from_bytes(p[4:8], "big") for kind, p in parse_frames(data) if kind == 0x7]


# --- item 9: HPACK table-size update beyond the limit ----------------------------------------


def test_hpack_table_size_update_beyond_limit_is_compression_error(certs: Path) -> None:
    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            client = await RawH2.open(b)
            try:
                await client.read_events()  # the server's SETTINGS first
                # RFC 7541 §6.3: a dynamic table size update, 001xxxxx with a 5-bit prefix
                # integer: 31 + 0xE1 0x3F → 31 + 97 + 63*128 = 8192, twice our 4096 default.
                block = b"\x3f\xe1\x3f" + client.conn.encoder.encode(
                    client.request_headers("/echo")
                )
                frame = HeadersFrame(1, data=block, flags=["END_HEADERS", "END_STREAM"])
                await client.write_raw(frame.serialize())
                data = await read_until_closed(client.reader)
            finally:
                client.close()
            codes = goaway_codes(data)
            assert codes, parse_frames(data)
            assert codes[-1] == h2.errors.ErrorCodes.COMPRESSION_ERROR
            await still_serving(b)

    run(body())


# --- item 7: an empty `send:` answer ----------------------------------------------------------


def test_empty_2xx_send_answer_is_an_empty_message_204_is_none(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})

            async def orders(request):  # type: ignore[no-untyped-def]
                if request.body.startswith(b"nothing"):
                    return 204, [], b""
                if request.body.startswith(b"mark"):
                    return 200, [], request.body
                return 200, [], b""  # an echo of an empty message

            origin.route("/api/orders", orders)
            async with running_bridge(
                config_text(STREAM_ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                url = f"wss://localhost:{b.ports['https']}/prices/A"
                async with ws_http1(url, b.client_ssl(("http/1.1",))) as sub:
                    await sub.next_event()
                    await sub.ws.send("")
                    await sub.ws.send(b"")
                    await sub.ws.send("nothing")  # 204: no answer
                    await sub.ws.send("mark")
                    answers = []
                    for _ in range(50):
                        message = await asyncio.wait_for(sub.raw.get(), 5)
                        if message == "mark":
                            break
                        if message in ("", b"") or "nothing" in str(message):
                            answers.append(message)
                    assert answers == ["", b""]

    run(body())


# --- item 1: PING and SETTINGS floods ---------------------------------------------------------


async def tls_socket(
    b: Running, *, rcvbuf: int = 0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A raw h2 TLS connection; `rcvbuf` shrinks the client's kernel receive buffer so that
    what the server queues for a client that does not read stays in the server's memory."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.wait_for(
        asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", b.ports["https"])), 5
    )
    return await asyncio.wait_for(
        asyncio.open_connection(sock=sock, ssl=b.client_ssl(("h2",)), server_hostname="localhost"),
        5,
    )


async def flood(writer: asyncio.StreamWriter, frame: bytes, count: int) -> int:
    """Write `count` copies of `frame` in 64 KiB writes; stop when the server closes or stops
    reading (a drain that does not finish). Returns how many were written."""
    per_write = 65536 // len(frame)
    chunk = frame * per_write
    sent = 0
    while sent < count:
        try:
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), 2)
        except (ConnectionError, ssl.SSLError, TimeoutError):
            break
        sent += per_write
    return sent


@contextlib.asynccontextmanager
async def honest_client(b: Running) -> AsyncIterator[list[int]]:
    """An HTTP/2 client requesting /echo in a loop beside the attacker: its statuses."""
    statuses: list[int] = []

    async def loop() -> None:
        async with httpx.AsyncClient(verify=b.client_ssl(), http2=True, timeout=10) as c:
            for n in range(10_000):  # bounded
                statuses.append((await c.get(b.url("https", f"/echo?n={n}"))).status_code)
                await asyncio.sleep(0.01)

    task = asyncio.create_task(loop())
    try:
        await served_more(statuses, 0)
        yield statuses
        await served_more(statuses, len(statuses))  # and it is still being served
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    assert statuses and set(statuses) == {200}, statuses


async def served_more(statuses: list[int], than: int) -> None:
    async with asyncio.timeout(20):
        while len(statuses) <= than:
            await asyncio.sleep(0.01)


def acks(data: bytes, kind: int) -> int:
    return sum(1 for k, _ in parse_frames(data) if k == kind)


def test_ping_flood_from_a_client_that_never_reads_is_bounded(certs: Path) -> None:
    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            async with honest_client(b):
                reader, writer = await tls_socket(b, rcvbuf=4096)
                writer.write(PREFACE + SettingsFrame(0).serialize())
                ping = PingFrame(0, opaque_data=b"12345678").serialize()
                tracemalloc.start()
                try:
                    await flood(writer, ping, 200_000)
                    _, peak = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
                data = await read_until_closed(reader, timeout=10)
                writer.close()
                await still_serving(b)
            # Bounded: at most the allowance of ACKs was ever queued for this client, the rest
            # of the flood was refused unread (without the bound, 200,000 ACKs, 3.4 MB, queue).
            assert acks(data, 0x6) <= settings.H2_MAX_CONTROL_FRAMES
            assert peak < 2 * 1024 * 1024, peak
            codes = goaway_codes(data)
            assert not codes or codes[-1] == h2.errors.ErrorCodes.ENHANCE_YOUR_CALM

    run(body())


def test_settings_flood_is_cut_off_and_others_keep_being_served(certs: Path) -> None:
    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            async with honest_client(b):
                reader, writer = await tls_socket(b)
                writer.write(PREFACE)
                # 100,000 empty SETTINGS (~1.5 s of h2's work unbounded), in one go: a
                # reading client, so only the work bound can stop it.
                writer.write(SettingsFrame(0).serialize() * 100_000)
                drained = asyncio.ensure_future(writer.drain())
                data = await read_until_closed(reader, timeout=20)
                drained.cancel()
                writer.close()
                await still_serving(b)
            assert acks(data, 0x4) <= settings.H2_MAX_CONTROL_FRAMES + 1  # + our own SETTINGS
            assert goaway_codes(data)[-1:] == [h2.errors.ErrorCodes.ENHANCE_YOUR_CALM]

    run(body())


# --- item 2: WebSocket ping floods and fragment bombs -----------------------------------------


def masked(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """A client frame (RFC 6455 §5.2) with the all-zero masking key: the payload as it is."""
    assert len(payload) < 126
    return bytes([(0x80 if fin else 0) | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


async def ws_over_tls(
    b: Running, path: str, *, rcvbuf: int = 0
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A hand-written HTTP/1.1 WebSocket handshake over real TLS; the 101 is read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.wait_for(
        asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", b.ports["https"])), 5
    )
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            sock=sock, ssl=b.client_ssl(("http/1.1",)), server_hostname="localhost"
        ),
        5,
    )
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of unmasked server frames."""
    out = []
    pos = 0
    while pos + 2 <= len(data):
        opcode, length = data[pos] & 0x0F, data[pos + 1] & 0x7F
        pos += 2
        if length == 126:
            length = int.from_bytes(data[pos : pos + 2], "big")
            pos += 2
        elif length == 127:
            length = int.from_bytes(data[pos : pos + 8], "big")
            pos += 8
        out.append((opcode, data[pos : pos + length]))
        pos += length
    return out


@contextlib.asynccontextmanager
async def price_site(certs: Path) -> AsyncIterator[tuple[Origin, Running]]:
    """An origin answering /api/price, and a bridge with STREAM_ROUTES in front of it."""
    async with Origin() as origin:
        origin.json("/api/price", {"p": 1})
        async with running_bridge(
            config_text(STREAM_ROUTES, upstream_url=origin.url, certs=certs), certs
        ) as b:
            yield origin, b


@contextlib.asynccontextmanager
async def honest_subscriber(b: Running, origin: Origin, path: str) -> AsyncIterator[None]:
    """A WebSocket subscriber beside the attacker: it must get a change made after the attack."""
    url = f"wss://localhost:{b.ports['https']}{path}"
    async with ws_http1(url, b.client_ssl(("http/1.1",))) as sub:
        await sub.next_event()
        yield
        origin.set("/api/price", {"p": 2})
        for _ in range(50):
            if json.loads((await sub.next_event()).data) == {"p": 2}:
                break
        else:
            raise AssertionError("the honest subscriber got no new event")


def close_code(frames: list[tuple[int, bytes]]) -> int | None:
    closes = [p for op, p in frames if op == 0x8]
    return int.from_bytes(closes[0][:2], "big") if closes else None


@pytest.mark.parametrize("bytewise", [False, True], ids=["burst", "octet-wise"])
def test_every_ping_of_a_sane_burst_gets_its_own_pong(certs: Path, bytewise: bool) -> None:
    """Autobahn 2.10 / 2.11: ten pings with payloads, in one write or one octet per write,
    get ten pongs echoing each payload, in order (coalescing is for floods only)."""

    async def body() -> None:
        async with price_site(certs) as (_, b):
            reader, writer = await ws_over_tls(b, "/prices/A")
            pings = [masked(0x9, f"ping {i}".encode()) for i in range(10)]
            data = b"".join(pings)
            for piece in [data[i : i + 1] for i in range(len(data))] if bytewise else [data]:
                writer.write(piece)
                await writer.drain()
            received = b""
            pongs: list[bytes] = []
            for _ in range(100):  # bounded: frames arrive within a few reads
                received += await asyncio.wait_for(reader.read(65536), 10)
                pongs = [p for op, p in server_frames(received) if op == 0xA]
                if len(pongs) >= 10:
                    break
            assert pongs == [f"ping {i}".encode() for i in range(10)]
            writer.close()

    run(body())


def test_websocket_ping_flood_from_a_client_that_never_reads_is_cut_off(certs: Path) -> None:
    async def body() -> None:
        async with (
            price_site(certs) as (origin, b),
            honest_subscriber(b, origin, "/prices/A"),
        ):
            reader, writer = await ws_over_tls(b, "/prices/A", rcvbuf=4096)
            # 20,000 pings of 125 bytes: unbounded, as many 127-byte pongs queue (2.5 MB)
            tracemalloc.start()
            try:
                await flood(writer, masked(0x9, b"p" * 125), 20_000)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            data = await read_until_closed(reader, timeout=10)
            writer.close()
            frames = server_frames(data)
            pongs = sum(1 for op, _ in frames if op == 0xA)
            assert pongs < 200, pongs  # one per read of pings at most
            assert close_code(frames) == 1008
            assert peak < 1024 * 1024, peak

    run(body())


@pytest.mark.parametrize("piece", [b"", b"x"], ids=["empty", "1-byte"])
def test_websocket_fragment_bomb_is_closed_1009(certs: Path, piece: bytes) -> None:
    async def body() -> None:
        async with (
            price_site(certs) as (origin, b),
            honest_subscriber(b, origin, "/prices/A"),
        ):
            reader, writer = await ws_over_tls(b, "/prices/A")
            # a text message begun, then 300,000 continuation frames that never end it
            writer.write(masked(0x1, b"a", fin=False))
            sent = asyncio.ensure_future(flood(writer, masked(0x0, piece, fin=False), 300_000))
            data = await read_until_closed(reader, timeout=10)
            await asyncio.wait_for(sent, 10)
            writer.close()
            assert close_code(server_frames(data)) == 1009

    run(body())


# --- item 3: zero-window HTTP/2 streams --------------------------------------------------------


def test_zero_window_streams_hold_one_piece_each_and_release_it_on_close(certs: Path) -> None:
    streams_per_conn, conns = 100, 3
    piece = b"z" * 65536  # one object, served again and again: the origin allocates nothing

    async def big(request):  # type: ignore[no-untyped-def]
        async def body() -> AsyncIterator[bytes]:
            for _ in range(320):
                yield piece

        return 200, [(b"content-length", str(320 * len(piece)).encode())], body()

    async def stalled_client(b: Running) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await tls_socket(b)
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        # RFC 9113 §6.9.2: an initial window of zero, never opened.
        conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0}
        )
        conn.initiate_connection()
        for i in range(streams_per_conn):
            headers = RawH2.request_headers(None, "/big")  # type: ignore[arg-type]
            conn.send_headers(1 + 2 * i, headers, end_stream=True)
        writer.write(conn.data_to_send())
        return reader, writer

    async def body() -> None:
        async with Origin() as origin:
            origin.route("/big", big)
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                gc.collect()
                gc.disable()  # what is released must be released without a collection
                tracemalloc.start()
                try:
                    base, _ = tracemalloc.get_traced_memory()
                    clients = [await stalled_client(b) for _ in range(conns)]
                    async with asyncio.timeout(20):
                        while origin.count("/big") < conns * streams_per_conn:
                            await asyncio.sleep(0.05)
                    await asyncio.sleep(1.0)  # every upstream sends until it is held back
                    stalled, _ = tracemalloc.get_traced_memory()
                    await still_serving(b)
                    for _, writer in clients:
                        writer.close()
                    async with asyncio.timeout(10):
                        while open_connections(b):
                            await asyncio.sleep(0.05)
                    await asyncio.sleep(1.0)
                    after, _ = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
                    gc.enable()
            per_stream = (stalled - base) / (conns * streams_per_conn)
            # One piece in flight (BODY_CHUNK, the handler's own object, not a copy) plus what
            # the upstream connection reads ahead (READ_HIGH_WATER and one read of READ_CHUNK),
            # plus the stream's own objects; without the bound a second and third piece, and
            # reads of whatever the loop got (256 KiB on uvloop).
            bound = settings.BODY_CHUNK + settings.READ_HIGH_WATER + settings.READ_CHUNK
            bound += 48 * 1024
            assert per_stream < bound, per_stream
            # Released when the connections close, with no collection (gc is off): what is
            # left is the test's own (the origin's logged errors, httpx) and a few buffers.
            assert after - base < (stalled - base) / 5, (after - base, stalled - base)

    run(body())


# --- item 4: upstream amplification through `vary` --------------------------------------------

VARY_ROUTES = """\
limits:
  max_channels_per_route: 50
routes:
  - path: /prices/{symbol}
    stream:
      upstream: app
      poll: /api/price?s={symbol}
      every: 200ms
      vary: [x-user]
  - path: /{rest*}
    upstream: app
"""


def test_vary_values_cannot_multiply_upstream_polls(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            async with running_bridge(
                config_text(VARY_ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                url = f"wss://localhost:{b.ports['https']}/prices/A"
                honest = {"x-user": "honest"}
                ctx = b.client_ssl(("http/1.1",))
                async with (
                    ws_http1(url, ctx, additional_headers=honest) as sub,
                    httpx.AsyncClient(verify=b.client_ssl(), http2=True, timeout=10) as c,
                ):
                    await sub.next_event()
                    hub = b.bridge.site.hub
                    most = 0

                    async def watch() -> None:
                        nonlocal most
                        for _ in range(100_000):  # bounded; cancelled after the burst
                            most = max(most, len(hub.channels))
                            await asyncio.sleep(0)

                    watcher = asyncio.create_task(watch())
                    # 300 plain GETs, each with its own X-User: 300 stream keys
                    answers = await asyncio.gather(
                        *(
                            c.get(b.url("https", "/prices/A"), headers={"x-user": f"u{n}"})
                            for n in range(300)
                        )
                    )
                    watcher.cancel()
                    statuses = [r.status_code for r in answers]
                    served = statuses.count(200)
                    # never more than the cap alive at once, the honest subscriber's included
                    assert most <= 50, most
                    # (more than 49 only if the burst outlasted GET_LINGER on a loaded machine)
                    assert 49 <= served < 150, statuses
                    refused = [r for r in answers if r.status_code == 503]
                    assert len(refused) == 300 - served
                    assert all(1 <= int(r.headers["retry-after"]) <= 600 for r in refused)
                    # GET-only channels stop after GET_LINGER, not STREAM_LINGER (5 s)
                    await asyncio.sleep(settings.GET_LINGER + 1.0)
                    polls = origin.count("/api/price")
                    await asyncio.sleep(1.0)
                    quiet = origin.count("/api/price") - polls
                    # only the honest subscriber's channel still polls (every 200 ms)
                    assert quiet <= 8, quiet
                    # each GET's channel: a first poll + ~GET_LINGER / 200 ms; + the honest one
                    assert polls < served * (settings.GET_LINGER / 0.2 + 3) + 30, polls
                    origin.set("/api/price", {"p": 2})
                    for _ in range(50):
                        if json.loads((await sub.next_event()).data) == {"p": 2}:
                            break
                    else:
                        raise AssertionError("the subscriber got no new event")
                    # once the GET-only channels are gone, new keys are welcome again
                    fresh = await c.get(b.url("https", "/prices/A"), headers={"x-user": "late"})
                    assert fresh.status_code == 200

    run(body())


# --- item 5: garbage after connection churn ---------------------------------------------------


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_reset_connections_leave_no_cyclic_garbage(
    certs: Path, loop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both loops: their TLS transports differ in what a lost connection still answers.
    monkeypatch.setenv("BRIDGE_TEST_LOOP", loop)
    count = 500  # 100 of each kind: HTTP/1.1 and HTTP/2 GETs, SSE over both, WebSocket
    root = Path(__file__).resolve().parents[2]

    async def churn(b: Running, n: int) -> None:
        env = {**os.environ, "PYTHONPATH": str(root)}
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.support.churn", str(b.ports["https"]), str(b.ca), str(n),
            cwd=root, env=env,
        )  # fmt: skip
        assert await asyncio.wait_for(process.wait(), 60) == 0
        async with asyncio.timeout(10):
            while open_connections(b):
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # the loop lets go of closed transports on its next turns

    async def body() -> None:
        async with price_site(certs) as (_origin, b):
            await churn(b, 10)  # warm up: the channel, the pool, first-use caches
            gc.collect()
            gc.disable()  # `bridge serve` collects rarely (GC_THRESHOLDS); here, never
            tracemalloc.start()
            try:
                base, _ = tracemalloc.get_traced_memory()
                await churn(b, count)
                held, _ = tracemalloc.get_traced_memory()
                gc.set_debug(gc.DEBUG_SAVEALL)
                gc.collect()
                ours = [
                    type(o).__qualname__
                    for o in gc.garbage
                    if type(o).__module__.startswith("bridge.")
                    and not type(o).__module__.startswith("bridge.demo")  # the origin
                ]
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
                tracemalloc.stop()
                gc.enable()
            # Each reset connection used to leave its ServerConnection, dispatcher, adapter,
            # exchange and (on uvloop) ~260 KiB of TLS buffers in reference cycles.
            assert len(ours) <= count // 50, sorted(set(ours))
            assert (held - base) / count < 16 * 1024, (held - base) / count

    run(body())


def test_a_closed_connection_its_client_never_drains_is_aborted(
    certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that stops reading with bytes of ours queued: when bridge closes the
    connection (here its idle timer, after the stalled stream was given up), the transport
    would wait for ever to write them; it is aborted after SEND_TIMEOUT instead."""
    monkeypatch.setattr(settings, "SEND_TIMEOUT", 0.5)
    piece = b"q" * 65536

    async def big(request):  # type: ignore[no-untyped-def]
        async def body() -> AsyncIterator[bytes]:
            for _ in range(64):
                yield piece

        return 200, [(b"content-length", str(64 * len(piece)).encode())], body()

    async def body() -> None:
        async with Origin() as origin:
            origin.route("/big", big)
            routes = "limits:\n  keepalive_timeout: 500ms\n" + ROUTES
            async with running_bridge(
                config_text(routes, upstream_url=origin.url, certs=certs), certs
            ) as b:
                _reader, writer = await tls_socket(b, rcvbuf=4096)
                conn = h2.connection.H2Connection(
                    h2.config.H2Configuration(client_side=True, header_encoding=None)
                )
                # every window wide open: bridge writes until its transport buffer is full
                conn.local_settings = h2.settings.Settings(
                    client=True,
                    initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1},
                )
                conn.initiate_connection()
                conn.increment_flow_control_window(2**30)
                headers = RawH2.request_headers(None, "/big")  # type: ignore[arg-type]
                conn.send_headers(1, headers, end_stream=True)
                writer.write(conn.data_to_send())
                async with asyncio.timeout(10):
                    while open_connections(b):  # never reading a byte
                        await asyncio.sleep(0.05)
                writer.close()
                await still_serving(b)

    run(body())


@pytest.mark.parametrize("kind", ["priority", "empty-data"])
def test_priority_and_empty_data_floods_get_enhance_your_calm(certs: Path, kind: str) -> None:
    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
            honest_client(b),
        ):
            client = await RawH2.open(b)
            try:
                if kind == "priority":  # CVE-2019-9513: PRIORITY frames for idle streams
                    frame = PriorityFrame(3, depends_on=1, stream_weight=16).serialize()
                else:  # CVE-2019-9518: empty DATA frames on an open request body
                    post = [(b":method", b"POST"), *client.request_headers("/echo")[1:]]
                    client.conn.send_headers(1, post)  # the body never ends
                    await client.flush()
                    frame = DataFrame(1, data=b"").serialize()
                client.writer.write(frame * 20_000)
                data = await read_until_closed(client.reader, timeout=10)
            finally:
                client.close()
            assert goaway_codes(data)[-1:] == [h2.errors.ErrorCodes.ENHANCE_YOUR_CALM]

    run(body())


def test_websocket_fragment_bomb_over_http2_closes_that_stream_only(certs: Path) -> None:
    async def body() -> None:
        async with (
            price_site(certs) as (origin, b),
            ws_http2(b.ports["https"], "/prices/A", b.client_ssl(("h2",))) as h2ws,
        ):
            bomber = h2ws.first
            honest = await h2ws.open_stream("/prices/A")  # same connection, RFC 8441
            await bomber.sub.next_event()
            await honest.sub.next_event()
            bomber.send_raw(masked(0x1, b"a", fin=False))
            for _ in range(5):  # 5,000 empty fragments, 30 KB: within the stream's window
                bomber.send_raw(masked(0x0, fin=False) * 1000)
            await asyncio.wait_for(bomber.close_received.wait(), 10)
            assert bomber.closed == 1009
            origin.set("/api/price", {"p": 2})
            for _ in range(50):
                if json.loads((await honest.sub.next_event()).data) == {"p": 2}:
                    break
            else:
                raise AssertionError("the other stream got no new event")

    run(body())


def test_pipelined_requests_from_a_client_that_never_reads_wait_for_it(certs: Path) -> None:
    """Small answers are written whole, without waiting for the client (issue 10's fast path):
    one that pipelines requests and reads nothing must still stall its own requests once our
    write buffer is full, not have every answer queued in bridge's memory. When it reads, each
    answer is there, whole and in order."""
    body = bytes(range(256)) * 128  # 32 KiB

    async def main() -> None:
        async with Origin() as origin:
            origin.route("/blob", lambda request: _answer(body))
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.setblocking(False)
                loop = asyncio.get_running_loop()
                await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", b.ports["http"])), 5)
                reader, writer = await asyncio.open_connection(sock=sock)
                # What may be buffered on the way: the kernel's send buffer (at most
                # tcp_wmem's maximum), bridge's write buffer up to its high watermark, and
                # an answer or two in flight. Three times that many answers are asked for.
                bound = (_send_buffer_max() + settings.WRITE_HIGH_WATER) // len(body) + 20
                count = 3 * bound
                request = b"GET /blob HTTP/1.1\r\nHost: a\r\n\r\n"
                writer.write(request * count)
                await asyncio.sleep(1.0)
                reached = origin.count("/blob")
                assert 0 < reached < bound, (reached, bound)  # stalled by the client, not queued
                await still_serving(b)
                for _ in range(count):
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                    assert head.startswith(b"HTTP/1.1 200 ")
                    assert await asyncio.wait_for(reader.readexactly(len(body)), 10) == body
                assert origin.count("/blob") == count
                writer.close()

    run(main())


def _send_buffer_max() -> int:
    """The most a TCP socket's send buffer autotunes to here (Linux: tcp_wmem's third value)."""
    try:
        return int(Path("/proc/sys/net/ipv4/tcp_wmem").read_text().split()[2])
    except (OSError, IndexError, ValueError):
        return 4 * 1024 * 1024  # Linux's default


async def _answer(body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return 200, [(b"content-type", b"application/octet-stream")], body
