"""Issue 20 end to end: the HTTP/3 door's hardening bounds over a real UDP socket and real TLS.
The attacker is aioquic's client on loopback crafting frames (tests/support/h3client.py);
beside it an honest HTTP/3 client and an honest HTTP/1.1 client keep being served.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import tracemalloc
import weakref
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aioquic.buffer import Buffer, encode_uint_var
from aioquic.h3.connection import FrameType, encode_frame
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicPacketType, pull_quic_header

from bridge import settings
from bridge.server.datagram import QuicEndpoint
from tests.support.h3client import h3_connect
from tests.support.harness import Running, config_text, run, running_bridge
from tests.support.origin import Origin

ROUTES = """\
routes:
  - path: /{rest*}
    upstream: app
"""


@contextlib.asynccontextmanager
async def h3_site(certs: Path, routes: str = ROUTES) -> AsyncIterator[Running]:
    async with Origin() as origin:
        text = config_text(routes, upstream_url=origin.url, certs=certs, http3=True)
        async with running_bridge(text, certs) as b:
            yield b


@contextlib.asynccontextmanager
async def honest_clients(b: Running) -> AsyncIterator[dict[str, list[int]]]:
    """An HTTP/3 and an HTTP/1.1 client requesting /echo in a loop beside the attacker: each
    must be served before, during and after the attack (generous bounds: a loaded machine)."""
    statuses: dict[str, list[int]] = {"h3": [], "h1": []}

    async def over_h3() -> None:
        async with h3_connect(b.ports["http3"], b.ca) as client:
            for n in range(10_000):  # bounded
                response = await client.request("GET", f"/echo?h3={n}", timeout=20)
                statuses["h3"].append(response.status)
                await asyncio.sleep(0.01)

    async def over_h1() -> None:
        async with httpx.AsyncClient(verify=b.client_ssl(("http/1.1",)), timeout=20) as c:
            for n in range(10_000):  # bounded
                statuses["h1"].append((await c.get(b.url("https", f"/echo?h1={n}"))).status_code)
                await asyncio.sleep(0.01)

    tasks = [asyncio.create_task(over_h3()), asyncio.create_task(over_h1())]
    try:
        await served_more(statuses, tasks)
        yield statuses
        await served_more(statuses, tasks)  # and both are still being served
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
    for kind, seen in statuses.items():
        assert seen and set(seen) == {200}, (kind, seen)


async def served_more(statuses: dict[str, list[int]], tasks: list[asyncio.Task[None]]) -> None:
    counts = {kind: len(seen) for kind, seen in statuses.items()}
    async with asyncio.timeout(30):
        while any(len(statuses[kind]) <= counts[kind] for kind in counts):
            for task in tasks:
                if task.done():
                    task.result()  # an honest client failed: say why
                    raise AssertionError("an honest client stopped")
            await asyncio.sleep(0.01)


def prefix_int(value: int, prefix: int, first: int = 0) -> bytes:
    """RFC 7541 §5.1 integer with a `prefix`-bit prefix, `first` the bits above it."""
    mask = (1 << prefix) - 1
    if value < mask:
        return bytes([first | value])
    out = bytearray([first | mask])
    value -= mask
    while value >= 128:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


# --- item 1: QPACK bomb ----------------------------------------------------------------------


def test_qpack_bomb_is_refused_before_it_is_expanded(certs: Path) -> None:
    entry = 4000
    refs = 20_000  # 20 KB on the wire, 80 MB decoded

    async def body() -> None:
        async with h3_site(certs) as b, honest_clients(b):
            async with h3_connect(b.ports["http3"], b.ca) as attacker:
                for _ in range(200):
                    if attacker.h3.received_settings is not None:
                        break
                    await asyncio.sleep(0.01)
                received = attacker.h3.received_settings
                assert received is not None
                assert received.get(0x6) == settings.MAX_HEADER_BYTES  # MAX_FIELD_SECTION_SIZE
                capacity = received[0x1]  # QPACK_MAX_TABLE_CAPACITY
                assert capacity >= entry + 32
                # Required Insert Count 1 (encoded as 2), Base 1; then one indexed field line
                # naming the newest dynamic entry, over and over.
                block = b"\x02\x00" + b"\x80" * refs
                frame = encode_frame(FrameType.HEADERS, block)
                quic = attacker._quic
                tracemalloc.start()
                try:
                    # The first bomb arrives before the entry it names: it waits (blocked),
                    # and is judged when the insert comes in.
                    blocked = attacker.open_raw(frame)
                    await asyncio.sleep(0.3)
                    insert = prefix_int(capacity, 5, 0x20)  # Set Dynamic Table Capacity
                    insert += prefix_int(1, 5, 0x40) + b"x" + prefix_int(entry, 7)  # literal
                    insert += b"v" * entry
                    encoder = attacker.h3._local_encoder_stream_id
                    assert encoder is not None
                    quic.send_stream_data(encoder, insert)
                    attacker.transmit()
                    direct = attacker.open_raw(frame)
                    for stream in (blocked, direct):
                        assert await stream.head(timeout=30) == 431
                    _, peak = tracemalloc.get_traced_memory()
                finally:
                    tracemalloc.stop()
                # Without the guard, each bomb was decoded in full first: 80 MB of fields.
                assert peak < 8 * 1024 * 1024, peak
                # The connection serves on.
                assert (await attacker.get("/echo?after")).status == 200

    run(body())


# --- item 2: handshake floods ------------------------------------------------------------------


class RawUdp(asyncio.DatagramProtocol):
    """A UDP socket on loopback whose datagrams arrive on a queue."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.received.put_nowait(data)

    @classmethod
    async def open(cls, port: int) -> RawUdp:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(cls, remote_addr=("127.0.0.1", port))
        return protocol

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def garbage_initial(dcid: bytes, scid: bytes, token: bytes = b"") -> bytes:
    """A full-size QUIC v1 Initial (RFC 9000 §17.2.2) whose header is right and whose payload
    is random bytes: nothing in it decrypts."""
    head = b"\xc3" + (1).to_bytes(4, "big") + bytes([len(dcid)]) + dcid
    head += bytes([len(scid)]) + scid + encode_uint_var(len(token)) + token
    length = 1200 - len(head) - 2
    return head + (0x4000 | length).to_bytes(2, "big") + os.urandom(length)


async def watch(endpoint: QuicEndpoint, most: dict[str, int], seen: list[object]) -> None:
    """Track the most connections and handshakes the endpoint held at once, and keep weak
    references to every connection it made."""
    for _ in range(1_000_000):  # bounded; cancelled by the test
        most["handshaking"] = max(most["handshaking"], endpoint.handshaking)
        most["connections"] = max(most["connections"], len(endpoint.connections))
        for conn in endpoint.connections:
            seen.append(weakref.ref(conn))
        await asyncio.sleep(0.002)


def test_initials_with_a_valid_retry_token_and_garbage_payload_do_not_pile_up(
    certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(settings, "QUIC_RETRY_ABOVE", 0)  # every new client is retried
    rounds = 300

    async def body() -> None:
        async with h3_site(certs) as b, honest_clients(b):
            endpoint = b.bridge.quic
            assert endpoint is not None
            most = {"handshaking": 0, "connections": 0}
            seen: list[object] = []
            watcher = asyncio.create_task(watch(endpoint, most, seen))
            attacker = await RawUdp.open(b.ports["http3"])
            before = len(endpoint.connections)
            try:
                for _ in range(rounds):
                    scid = os.urandom(8)
                    attacker.send(garbage_initial(os.urandom(8), scid))
                    retry = await asyncio.wait_for(attacker.received.get(), 10)
                    header = pull_quic_header(Buffer(data=retry), host_cid_length=8)
                    assert header.packet_type == QuicPacketType.RETRY
                    # The token is valid: the address is proved, the payload is garbage.
                    attacker.send(garbage_initial(header.source_cid, scid, header.token))
                    await asyncio.sleep(0.001)
                await asyncio.sleep(0.2)
            finally:
                watcher.cancel()
                attacker.close()
            # Each was dropped at once (without it: 300 handshakes pending for
            # tls_handshake_timeout, ~76 KiB each).
            assert most["connections"] <= before + 5, most
            assert len(endpoint.connections) == before

    run(body())


def test_pending_handshakes_are_bounded_and_their_memory_returned(
    certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clients that send a real first Initial and never continue: at most QUIC_MAX_HANDSHAKES
    are held, and when the handshake timeout ends them they are freed without a collection."""
    monkeypatch.setattr(settings, "QUIC_MAX_HANDSHAKES", 16)
    clients = 80
    routes = "limits:\n  tls_handshake_timeout: 1s\n" + ROUTES

    async def body() -> None:
        async with h3_site(certs, routes) as b, honest_clients(b):
            endpoint = b.bridge.quic
            assert endpoint is not None
            most = {"handshaking": 0, "connections": 0}
            seen: list[object] = []
            gc.collect()
            gc.disable()  # what is released must be released without a collection
            try:
                watcher = asyncio.create_task(watch(endpoint, most, seen))
                sockets = [await RawUdp.open(b.ports["http3"]) for _ in range(clients)]
                try:
                    for sock in sockets:
                        config = QuicConfiguration(is_client=True, alpn_protocols=["h3"])
                        client = QuicConnection(configuration=config)
                        client.connect(("127.0.0.1", b.ports["http3"]), now=0.0)
                        for data, _ in client.datagrams_to_send(now=0.0):
                            sock.send(data)
                        await asyncio.sleep(0.005)
                    await asyncio.sleep(0.3)
                    assert 0 < endpoint.handshaking <= 16, endpoint.handshaking
                    async with asyncio.timeout(10):
                        while endpoint.handshaking:  # the 1 s handshake timeout ends them
                            await asyncio.sleep(0.05)
                    await asyncio.sleep(0.3)
                finally:
                    watcher.cancel()
                    for sock in sockets:
                        sock.close()
                assert most["handshaking"] <= 16, most
                alive = {id(o) for ref in seen if (o := ref()) is not None}  # type: ignore[operator]
                honest = {id(conn) for conn in endpoint.connections}
                assert not alive - honest, len(alive - honest)
            finally:
                gc.enable()

    run(body())


# --- item 3: closed connections with blocked QPACK header blocks ------------------------------


def test_closed_connections_with_blocked_header_blocks_are_freed_without_a_collection(
    certs: Path,
) -> None:
    conns, per_conn = 8, settings.H3_QPACK_BLOCKED_STREAMS
    # A block that names an entry never inserted: it waits in the QPACK decoder (blocked),
    # 60 KB each, just under the limit, until the connection closes.
    frame = encode_frame(FrameType.HEADERS, b"\x02\x00" + b"\x80" * 60_000)

    async def body() -> None:
        async with h3_site(certs) as b, honest_clients(b):
            endpoint = b.bridge.quic
            assert endpoint is not None
            honest = set(endpoint.connections)
            gc.collect()
            gc.disable()  # what is released must be released without a collection
            try:
                refs: list[weakref.ref[object]] = []
                for _ in range(2):  # rounds
                    async with contextlib.AsyncExitStack() as stack:
                        for _ in range(conns):
                            client = await stack.enter_async_context(
                                h3_connect(b.ports["http3"], b.ca)
                            )
                            for _ in range(per_conn):
                                client.open_raw(frame, end=False)
                        async with asyncio.timeout(20):
                            while True:
                                mine = [c for c in endpoint.connections if c not in honest]
                                blocked = sum(c.adapter._h3.streams_blocked() for c in mine)
                                if len(mine) == conns and blocked == conns * per_conn:
                                    break
                                await asyncio.sleep(0.05)
                        for conn in mine:
                            refs += [weakref.ref(conn), weakref.ref(conn.adapter._h3._decoder)]
                        del mine, conn
                    async with asyncio.timeout(10):
                        while len(endpoint.connections) > len(honest):
                            await asyncio.sleep(0.05)
                await asyncio.sleep(0.3)
                alive = [type(o).__name__ for ref in refs if (o := ref()) is not None]
                # Without breaking the cycles every one of them (and the decoder's blocked
                # blocks, ~1 MB per connection) waited for a full collection.
                assert not alive, alive
            finally:
                gc.enable()

    run(body())


# --- item 4: control-stream, grease and PING floods --------------------------------------------

H3_EXCESSIVE_LOAD = 0x107


@pytest.mark.parametrize("kind", ["control", "grease", "ping"])
def test_floods_of_frames_that_carry_nothing_are_closed_excessive_load(
    certs: Path, kind: str
) -> None:
    # A reserved frame type (RFC 9114 §7.2.8: 0x1f * N + 0x21), empty: 2 bytes, ignored.
    reserved = b"\x21\x00"

    async def body() -> None:
        async with h3_site(certs) as b, honest_clients(b):
            async with h3_connect(b.ports["http3"], b.ca) as attacker:
                quic = attacker._quic
                if kind == "control":
                    target = attacker.h3._local_control_stream_id
                    assert target is not None
                elif kind == "grease":  # unknown frames may come before a request's HEADERS
                    target = quic.get_next_available_stream_id()
                for n in range(2000):  # bounded: up to 200,000 frames or 2,000 PINGs
                    if quic._close_event is not None:
                        break
                    if kind == "ping":
                        quic.send_ping(n)
                    else:
                        quic.send_stream_data(target, reserved * 100)
                    attacker.transmit()
                    await asyncio.sleep(0.001 if kind != "ping" else 0.002)
                async with asyncio.timeout(20):
                    while quic._close_event is None:
                        await asyncio.sleep(0.05)
                assert quic._close_event.error_code == H3_EXCESSIVE_LOAD, quic._close_event

    run(body())
