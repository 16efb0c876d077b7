"""A small HTTP/3 client for tests and benchmarks, on aioquic's asyncio client and H3Connection.

    async with h3_connect(port, ca) as client:
        response = await client.get("/path")
        async with client.stream("/feed", headers) as stream:   # read DATA as it comes
            piece = await stream.read()

Per-stream asyncio queues of aioquic's H3 events; pushes are collected per push id. Every
await is under a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import aioquic.h3.events as h3e
from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import QuicEvent, StreamReset

from .subscribers import SseSubscriber, WsSubscriber

TIMEOUT = 10.0


class NoPushH3(H3Connection):
    """An HTTP/3 client that grants no push ids (never sends MAX_PUSH_ID)."""

    def _init_connection(self) -> None:
        self._max_push_id = None
        super()._init_connection()


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    informational: list[list[tuple[bytes, bytes]]] = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class H3Stream:
    """One request stream seen from the client."""

    def __init__(self, client: H3ClientProtocol, stream_id: int) -> None:
        self.client = client
        self.stream_id = stream_id
        self.queue: asyncio.Queue[h3e.H3Event | None] = asyncio.Queue()
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.informational: list[list[tuple[bytes, bytes]]] = []
        self.ended = False
        self.reset: int | None = None

    async def head(self, timeout: float = TIMEOUT) -> int:
        while not self.status:
            event = await asyncio.wait_for(self.queue.get(), timeout)
            if event is None:
                raise ConnectionError(f"stream reset ({self.reset})")
            if isinstance(event, h3e.HeadersReceived):
                headers = event.headers
                status = int(dict(headers)[b":status"])
                if 100 <= status < 200:
                    self.informational.append(headers)
                    continue
                self.status = status
                self.headers = [(k, v) for k, v in headers if not k.startswith(b":")]
                self.ended = event.stream_ended
            else:
                raise AssertionError(f"DATA before HEADERS: {event}")
        return self.status

    async def read(self, timeout: float = TIMEOUT) -> bytes:
        """The next DATA payload, b"" at the end of the stream."""
        await self.head(timeout)
        while not self.ended:
            event = await asyncio.wait_for(self.queue.get(), timeout)
            if event is None:
                raise ConnectionError(f"stream reset ({self.reset})")
            if isinstance(event, h3e.DataReceived):
                self.ended = event.stream_ended
                if self.client.credit is not None:  # a window that follows what was read
                    self.client.credit(self.stream_id, len(event.data) + 16)  # + DATA framing
                    self.client.transmit()
                if event.data:
                    return event.data
            elif isinstance(event, h3e.HeadersReceived):  # trailers
                self.ended = event.stream_ended
        return b""

    async def body(self, timeout: float = TIMEOUT) -> bytes:
        parts = []
        for _ in range(100_000):
            piece = await self.read(timeout)
            if not piece:
                break
            parts.append(piece)
        return b"".join(parts)

    def send(self, data: bytes, end: bool = False) -> None:
        self.client.h3.send_data(self.stream_id, data, end_stream=end)
        self.client.transmit()

    def cancel(self) -> None:
        self.client._quic.reset_stream(self.stream_id, 0x10C)  # H3_REQUEST_CANCELLED
        self.client.transmit()


class H3ClientProtocol(QuicConnectionProtocol):
    push_allowed = False

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.h3: H3Connection = (H3Connection if self.push_allowed else NoPushH3)(self._quic)
        self.streams: dict[int, H3Stream] = {}
        self.promises: dict[int, list[tuple[bytes, bytes]]] = {}
        self.pushed: dict[int, list[h3e.H3Event]] = defaultdict(list)
        self.credit = getattr(self._quic, "consumed", None)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamReset):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.reset = event.error_code
                stream.queue.put_nowait(None)
        for h3_event in self.h3.handle_event(event):
            if isinstance(h3_event, h3e.PushPromiseReceived):
                self.promises[h3_event.push_id] = h3_event.headers
            elif isinstance(h3_event, (h3e.HeadersReceived, h3e.DataReceived)):
                if h3_event.push_id is not None:
                    self.pushed[h3_event.push_id].append(h3_event)
                    continue
                stream = self.streams.get(h3_event.stream_id)
                if stream is not None:
                    stream.queue.put_nowait(h3_event)

    def open(
        self,
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]] | None = None,
        *,
        end: bool = True,
        authority: str = "localhost",
    ) -> H3Stream:
        sid = self._quic.get_next_available_stream_id()
        stream = self.streams[sid] = H3Stream(self, sid)
        head = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", authority.encode()),
            (b":path", path.encode()),
            *(headers or []),
        ]
        self.h3.send_headers(sid, head, end_stream=end)
        self.transmit()
        return stream

    def open_raw(self, frames: bytes, *, end: bool = True) -> H3Stream:
        """A request stream carrying `frames` as they are (crafted HTTP/3 frames)."""
        sid = self._quic.get_next_available_stream_id()
        stream = self.streams[sid] = H3Stream(self, sid)
        self._quic.send_stream_data(sid, frames, end_stream=end)
        self.transmit()
        return stream

    async def request(
        self,
        method: str,
        path: str,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
        timeout: float = TIMEOUT,
    ) -> Response:
        stream = self.open(method, path, headers, end=not body)
        if body:
            stream.send(body, end=True)
        status = await stream.head(timeout)
        data = await stream.body(timeout)
        return Response(status, stream.headers, data, stream.informational)

    async def get(self, path: str, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
        return await self.request("GET", path, headers)


def client_configuration(ca: Path) -> QuicConfiguration:
    config = QuicConfiguration(is_client=True, alpn_protocols=list(H3_ALPN))
    config.load_verify_locations(str(ca))
    config.server_name = "localhost"
    return config


@contextlib.asynccontextmanager
async def h3_connect(
    port: int, ca: Path, *, push: bool = False, host: str = "127.0.0.1", window: int = 0
) -> AsyncIterator[H3ClientProtocol]:
    """`window`: a slow client, whose receive window per stream only moves as the test reads
    (bridge's own consumption-paced `ServerQuic` works on the client side too)."""
    kind = type("H3Client", (H3ClientProtocol,), {"push_allowed": push})
    if window:
        async with _paced_connect(host, port, ca, kind, window) as client:
            yield client
        return
    opening = connect(host, port, configuration=client_configuration(ca), create_protocol=kind)
    client = await asyncio.wait_for(opening.__aenter__(), TIMEOUT)  # the handshake, bounded
    try:
        yield client  # type: ignore[misc]
    finally:
        await asyncio.wait_for(opening.__aexit__(None, None, None), TIMEOUT)


@contextlib.asynccontextmanager
async def h3_sse(
    client: H3ClientProtocol, path: str, headers: list[tuple[bytes, bytes]] | None = None
) -> AsyncIterator[SseSubscriber]:
    """An SSE subscriber on one HTTP/3 stream of `client`."""
    sub = SseSubscriber()
    stream = client.open("GET", path, [(b"accept", b"text/event-stream"), *(headers or [])])
    sub.status = await stream.head()
    sub.http_version = "HTTP/3"
    sub.connected.set()

    async def pump() -> None:
        try:
            for _ in range(1_000_000):
                piece = await stream.read(timeout=3600)
                if not piece:
                    return
                sub.received += len(piece)
                for event in sub.parser.feed(piece):
                    sub.events.put_nowait(event)
        finally:
            sub.closed.set()

    task = asyncio.create_task(pump())
    sub.stream = stream  # type: ignore[attr-defined]
    try:
        yield sub
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        stream.cancel()  # as a browser closing its EventSource


class H3WebSocket:
    """An RFC 9220 WebSocket: an extended CONNECT stream of `client`, wsproto for its frames."""

    def __init__(self, client: H3ClientProtocol, stream: H3Stream) -> None:
        from wsproto.connection import Connection, ConnectionType

        self.client = client
        self.stream = stream
        self.ws = Connection(ConnectionType.CLIENT)
        self.sub = WsSubscriber()
        self.closed: int | None = None
        self.close_received = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def _pump(self) -> None:
        from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage

        for _ in range(1_000_000):
            data = await self.stream.read(timeout=3600)
            if not data:
                return
            self.ws.receive_data(data)
            for event in self.ws.events():
                if isinstance(event, (TextMessage, BytesMessage)):
                    self.sub.deliver(event.data)
                elif isinstance(event, Ping):
                    self.stream.send(self.ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    self.closed = event.code
                    self.close_received.set()

    def send(self, message: str | bytes) -> None:
        from wsproto.events import BytesMessage, TextMessage

        event = (
            TextMessage(data=message) if isinstance(message, str) else BytesMessage(data=message)
        )
        self.stream.send(self.ws.send(event))


@contextlib.asynccontextmanager
async def h3_websocket(
    client: H3ClientProtocol, path: str, headers: list[tuple[bytes, bytes]] | None = None
) -> AsyncIterator[H3WebSocket]:
    # RFC 9220 §3: :protocol only after the server's SETTINGS_ENABLE_CONNECT_PROTOCOL = 1.
    for _ in range(200):
        received = client.h3.received_settings
        if received is not None:
            break
        await asyncio.sleep(0.01)
    assert received is not None and received.get(0x8) == 1, "no ENABLE_CONNECT_PROTOCOL"
    stream = client.open(
        "CONNECT",
        path,
        [(b":protocol", b"websocket"), (b"sec-websocket-version", b"13"), *(headers or [])],
        end=False,
    )
    ws = H3WebSocket(client, stream)
    ws.status = await stream.head()  # type: ignore[attr-defined]
    ws.task = asyncio.create_task(ws._pump())
    try:
        yield ws
    finally:
        ws.task.cancel()
        with contextlib.suppress(BaseException):
            await ws.task


@contextlib.asynccontextmanager
async def _paced_connect(
    host: str, port: int, ca: Path, kind: type, window: int
) -> AsyncIterator[H3ClientProtocol]:
    from bridge.protocol.quic import ServerQuic

    config = client_configuration(ca)
    config.max_stream_data = window
    quic = ServerQuic(stream_window=window, configuration=config)
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: kind(quic), local_addr=("127.0.0.1", 0)
    )
    client: H3ClientProtocol = protocol  # type: ignore[assignment]
    try:
        client.connect((host, port))
        await asyncio.wait_for(client.wait_connected(), TIMEOUT)
        yield client
    finally:
        client.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.wait_closed(), TIMEOUT)
        transport.close()
