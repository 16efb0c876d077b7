"""WebSocket pass-through closes, Autobahn style (issue 13 item 6).

A loopback WebSocket upstream fails the connection the ways servers under Autobahn's fuzzing
client do (1002 protocol error, 1007 invalid payload, 1011, 1000, an application code), each in
one of the shapes servers close in: waiting for the client's close reply before dropping TCP,
dropping it at once, resetting it, or half-closing and holding the socket. The client keeps
sending frames after its bad one (as Autobahn does), answers the close, and then bridge must
close the client's TCP connection promptly, every time: each case runs repeatedly, because the
defect was a race (a relay half that missed its cancellation and waited 10 minutes for data).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import websockets
from wsproto import WSConnection
from wsproto.connection import Connection, ConnectionType
from wsproto.events import AcceptConnection, CloseConnection, Request

from tests.support.harness import Running, config_text, run, running_bridge

ROUNDS = 8  # per case: the failure was intermittent
PROMPT = 2.0  # seconds from the client's close reply to bridge's TCP close (a hang guard)
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


async def _upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept any handshake; on the first frame byte, close as the request path says:
    /<code>/<shape>. A path of /echo echoes frames back as they are (for the honest client)."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        target = head.split(b" ", 2)[1].decode()
        key = next(
            line.split(b":", 1)[1].strip()
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"sec-websocket-key:")
        )
        accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        writer.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n"
        )
        if target == "/echo":
            server = Connection(ConnectionType.SERVER)  # frames only: the handshake is done
            for _ in range(1000):  # bounded
                data = await asyncio.wait_for(reader.read(65536), 10)
                if not data:
                    return
                server.receive_data(data)
                for event in server.events():
                    if isinstance(event, CloseConnection):
                        writer.write(server.send(event.response()))
                        writer.close()
                        return
                    writer.write(server.send(event))  # type: ignore[arg-type]
            return
        _, code, shape = target.split("/")
        await asyncio.wait_for(reader.read(1), 5)
        reason = b"bad input"
        writer.write(bytes([0x88, 2 + len(reason)]) + int(code).to_bytes(2, "big") + reason)
        await writer.drain()
        if shape == "reply":  # RFC 6455 §7.1.1: wait for the close reply, then close TCP
            for _ in range(100):
                data = await asyncio.wait_for(reader.read(65536), 5)
                if not data or b"\x88" in data:
                    break
            writer.close()
        elif shape == "read":  # one read of what the client still sends, then close TCP
            await asyncio.wait_for(reader.read(65536), 5)
            writer.close()
        elif shape == "now":  # §7.1.7 "Fail the WebSocket Connection": drop it at once
            writer.close()
        elif shape == "reset":
            writer.transport.abort()
        elif shape == "halfclose":  # FIN, then keep the socket a while
            writer.write_eof()
            await asyncio.sleep(PROMPT * 2)
            writer.close()
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        writer.close()


@asynccontextmanager
async def upstream_ws() -> AsyncIterator[int]:
    server = await asyncio.start_server(_upstream, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def close_sequence(b: Running, path: str) -> tuple[int | None, float]:
    """One Autobahn-style round: handshake, a bad frame and 50 more, the close answered.
    Returns (the close code the client got, seconds from its reply to bridge's TCP close)."""
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            "127.0.0.1",
            b.ports["https"],
            ssl=b.client_ssl(("http/1.1",)),
            server_hostname="localhost",
        ),
        5,
    )
    client = WSConnection(ConnectionType.CLIENT)
    try:
        writer.write(client.send(Request(host="localhost", target=path)))
        accepted = False
        for _ in range(10):
            client.receive_data(await asyncio.wait_for(reader.read(65536), 5))
            if any(isinstance(e, AcceptConnection) for e in client.events()):
                accepted = True
                break
        assert accepted
        # a text frame with invalid UTF-8, then more frames (masking key zero)
        writer.write(bytes([0x81, 0x82, 0, 0, 0, 0, 0xFF, 0xFE]) * 51)
        code: int | None = None
        replied = loop.time()
        for _ in range(1000):  # bounded: one read per iteration
            try:
                data = await asyncio.wait_for(reader.read(65536), PROMPT * 5)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not data:
                break
            client.receive_data(data)
            for event in client.events():
                if isinstance(event, CloseConnection) and code is None:
                    code = event.code
                    replied = loop.time()
                    writer.write(client.send(event.response()))
        return code, loop.time() - replied
    finally:
        writer.close()


@pytest.mark.parametrize(
    "code,shape",
    [
        (1002, "reply"),
        (1007, "reply"),
        (1011, "reply"),
        (1000, "reply"),
        (4000, "reply"),
        (1002, "read"),
        (1007, "read"),
        (1002, "now"),
        (1007, "reset"),
        (1002, "halfclose"),
    ],
)
def test_upstream_close_closes_the_clients_tcp_promptly_every_time(
    certs: Path, code: int, shape: str
) -> None:
    async def body() -> None:
        async with upstream_ws() as port:
            text = config_text(
                "routes:\n  - path: /{rest*}\n    upstream: app\n",
                upstream_url=f"http://127.0.0.1:{port}",
                certs=certs,
            )
            async with running_bridge(text, certs) as b:
                url = f"wss://localhost:{b.ports['https']}/echo"
                async with websockets.connect(url, ssl=b.client_ssl(("http/1.1",))) as honest:
                    for n in range(ROUNDS):
                        got, took = await close_sequence(b, f"/{code}/{shape}")
                        if shape != "reset":  # a reset may destroy the close frame in flight
                            assert got == code, (n, got)
                        assert took < PROMPT, (n, took)
                        # the honest client beside it is still relayed
                        await honest.send(f"ping {n}")
                        assert await asyncio.wait_for(honest.recv(), 5) == f"ping {n}"

    run(body(), timeout=120)
