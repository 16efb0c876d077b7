"""Real stream subscribers for e2e tests: SSE over httpx (HTTP/1.1 or HTTP/2), WebSocket over
`websockets` (HTTP/1.1) and over raw h2 + wsproto (RFC 8441). All expose `next_event()`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx

from .sse import SseEvent, SseParser


class SseSubscriber:
    def __init__(self) -> None:
        self.events: asyncio.Queue[SseEvent] = asyncio.Queue()
        self.parser = SseParser()
        self.status = 0
        self.received = 0  # body bytes (DATA payload on HTTP/2, raw chunks on HTTP/1.1)
        self.headers: httpx.Headers | None = None
        self.http_version = ""
        self.connected = asyncio.Event()
        self.closed = asyncio.Event()

    async def next_event(self, timeout: float = 10.0) -> SseEvent:
        return await asyncio.wait_for(self.events.get(), timeout)

    async def no_event(self, wait: float) -> bool:
        try:
            await asyncio.wait_for(self.events.get(), wait)
        except TimeoutError:
            return True
        return False


@contextlib.asynccontextmanager
async def sse(
    client: httpx.AsyncClient, url: str, headers: dict[str, str] | None = None
) -> AsyncIterator[SseSubscriber]:
    sub = SseSubscriber()

    async def pump() -> None:
        try:
            async with client.stream(
                "GET", url, headers={"accept": "text/event-stream", **(headers or {})}
            ) as response:
                sub.status = response.status_code
                sub.headers = response.headers
                sub.http_version = response.http_version
                sub.connected.set()
                async for piece in response.aiter_raw():
                    for event in sub.parser.feed(piece):
                        sub.events.put_nowait(event)
        finally:
            sub.connected.set()
            sub.closed.set()

    task = asyncio.create_task(pump())
    try:
        await asyncio.wait_for(sub.connected.wait(), 10)
        yield sub
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


class WsSubscriber:
    """Stream events from WebSocket envelopes, shaped like SSE events for shared assertions."""

    def __init__(self) -> None:
        self.events: asyncio.Queue[SseEvent] = asyncio.Queue()
        self.raw: asyncio.Queue[Any] = asyncio.Queue()

    def deliver(self, message: str | bytes) -> None:
        self.raw.put_nowait(message)
        try:
            envelope = json.loads(message)
            data = envelope["data"]
            text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
            self.events.put_nowait(SseEvent(envelope["id"], envelope["event"], text))
        except (ValueError, KeyError, TypeError):
            pass

    async def next_event(self, timeout: float = 10.0) -> SseEvent:
        return await asyncio.wait_for(self.events.get(), timeout)


@contextlib.asynccontextmanager
async def ws_http1(url: str, ctx: ssl.SSLContext | None, **kwargs: Any) -> AsyncIterator[Any]:
    import websockets

    sub = WsSubscriber()
    async with websockets.connect(url, ssl=ctx, open_timeout=10, **kwargs) as ws:

        async def pump() -> None:
            with contextlib.suppress(Exception):
                async for message in ws:
                    sub.deliver(message)

        task = asyncio.create_task(pump())
        sub.ws = ws  # type: ignore[attr-defined]
        try:
            yield sub
        finally:
            task.cancel()


class H2WsStream:
    """One RFC 8441 WebSocket: an extended CONNECT stream, with wsproto for its frames."""

    def __init__(self, owner: H2WebSocket, stream_id: int) -> None:
        from wsproto.connection import Connection, ConnectionType

        self.owner = owner
        self.stream_id = stream_id
        self.ws = Connection(ConnectionType.CLIENT)
        self.sub = WsSubscriber()
        self.status: int | None = None
        self.headers: dict[bytes, bytes] = {}
        self.body = b""  # of a refused handshake
        self.response = asyncio.Event()
        self.closed: int | None = None  # the server's close code
        self.close_received = asyncio.Event()
        self.stream_ended = asyncio.Event()
        self.pings: list[bytes] = []
        self.pongs: asyncio.Queue[bytes] = asyncio.Queue()
        self.answer_pings = True

    def on_data(self, data: bytes) -> None:
        from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

        if self.status != 200:
            self.body += data
            return
        self.ws.receive_data(data)
        for ws_event in self.ws.events():
            if isinstance(ws_event, (TextMessage, BytesMessage)):
                self.sub.deliver(ws_event.data)
            elif isinstance(ws_event, Ping):
                self.pings.append(bytes(ws_event.payload))
                if self.answer_pings:
                    self.send_raw(self.ws.send(ws_event.response()))
            elif isinstance(ws_event, Pong):
                self.pongs.put_nowait(bytes(ws_event.payload))
            elif isinstance(ws_event, CloseConnection):
                self.closed = ws_event.code
                self.close_received.set()

    def send_raw(self, data: bytes) -> None:
        h2conn = self.owner.h2
        h2conn.send_data(self.stream_id, data)
        self.owner.writer.write(h2conn.data_to_send())

    def send(self, message: str | bytes) -> None:
        from wsproto.events import BytesMessage, TextMessage

        event = (
            TextMessage(data=message) if isinstance(message, str) else BytesMessage(data=message)
        )
        self.send_raw(self.ws.send(event))


class H2WebSocket:
    """A minimal RFC 8441 client: h2 for the connection, wsproto for each stream's frames.

    `open` makes the connection and its first WebSocket (`status`, `sub`, `send` ... are that
    one's); `open_stream` adds more on the same connection."""

    def __init__(self) -> None:
        import h2.config
        import h2.connection

        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.streams: dict[int, H2WsStream] = {}
        self.connection_closed = asyncio.Event()

    async def open(
        self,
        port: int,
        path: str,
        ctx: ssl.SSLContext,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.port = port
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
        )
        self.h2.initiate_connection()
        self.writer.write(self.h2.data_to_send())
        self.task = asyncio.create_task(self._pump())
        # RFC 8441 §3: a client uses :protocol only after the server's
        # SETTINGS_ENABLE_CONNECT_PROTOCOL = 1; bridge must advertise it.
        for _ in range(200):
            if self.h2.remote_settings.get(0x8):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("no SETTINGS_ENABLE_CONNECT_PROTOCOL from the server")
        self.first = await self.open_stream(path, headers)

    async def open_stream(
        self, path: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> H2WsStream:
        sid = self.h2.get_next_available_stream_id()
        stream = self.streams[sid] = H2WsStream(self, sid)
        self.h2.send_headers(
            sid,
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"websocket"),
                (b":scheme", b"https"),
                (b":path", path.encode()),
                (b":authority", f"localhost:{self.port}".encode()),
                (b"sec-websocket-version", b"13"),
                *(headers or []),
            ],
        )
        self.writer.write(self.h2.data_to_send())
        await asyncio.wait_for(stream.response.wait(), 10)
        return stream

    async def _pump(self) -> None:
        import h2.events

        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    return
                for event in self.h2.receive_data(data):
                    stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
                    if stream is None:
                        continue
                    if isinstance(event, h2.events.ResponseReceived):
                        fields = dict(event.headers)
                        stream.status = int(fields[b":status"])
                        stream.headers = fields
                        stream.response.set()
                    elif isinstance(event, h2.events.DataReceived):
                        self.h2.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                        stream.on_data(event.data)
                    elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                        stream.stream_ended.set()
                out = self.h2.data_to_send()
                if out:
                    self.writer.write(out)
        finally:
            self.connection_closed.set()
            for stream in self.streams.values():
                stream.stream_ended.set()

    # The first stream's view, for tests that use one WebSocket per connection.
    @property
    def status(self) -> int | None:
        return self.first.status

    @property
    def sub(self) -> WsSubscriber:
        return self.first.sub

    @property
    def closed(self) -> int | None:
        return self.first.closed

    @property
    def stream_ended(self) -> asyncio.Event:
        return self.first.stream_ended

    def send_raw(self, data: bytes) -> None:
        self.first.send_raw(data)

    def send(self, message: str | bytes) -> None:
        self.first.send(message)

    async def close(self) -> None:
        self.task.cancel()
        self.writer.close()


@contextlib.asynccontextmanager
async def ws_http2(
    port: int, path: str, ctx: ssl.SSLContext, headers: list[tuple[bytes, bytes]] | None = None
) -> AsyncIterator[H2WebSocket]:
    client = H2WebSocket()
    await client.open(port, path, ctx, headers)
    try:
        yield client
    finally:
        await client.close()


class H2SseConnection:
    """Many SSE streams multiplexed on one raw HTTP/2 connection (h2 client library)."""

    def __init__(self) -> None:
        import h2.config
        import h2.connection

        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.streams: dict[int, SseSubscriber] = {}

    async def open(self, port: int, ctx: ssl.SSLContext) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
        )
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(1 << 24)
        self.writer.write(self.h2.data_to_send())
        self.task = asyncio.create_task(self._pump())

    async def subscribe(self, path: str, headers: dict[str, str] | None = None) -> SseSubscriber:
        sid = self.h2.get_next_available_stream_id()
        sub = SseSubscriber()
        self.streams[sid] = sub
        extra = [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
        self.h2.send_headers(
            sid,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":path", path.encode()),
                (b":authority", b"localhost"),
                (b"accept", b"text/event-stream"),
                *extra,
            ],
            end_stream=True,
        )
        self.writer.write(self.h2.data_to_send())
        await asyncio.wait_for(sub.connected.wait(), 10)
        return sub

    async def _pump(self) -> None:
        import h2.events

        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    return
                for event in self.h2.receive_data(data):
                    sub = self.streams.get(getattr(event, "stream_id", 0) or 0)
                    if isinstance(event, h2.events.ResponseReceived) and sub is not None:
                        sub.status = int(dict(event.headers)[b":status"])
                        sub.headers = httpx.Headers(
                            [(k, v) for k, v in event.headers if not k.startswith(b":")]
                        )
                        sub.http_version = "HTTP/2"
                        sub.connected.set()
                    elif isinstance(event, h2.events.DataReceived):
                        self.h2.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                        if sub is not None:
                            sub.received += len(event.data)
                            for parsed in sub.parser.feed(event.data):
                                sub.events.put_nowait(parsed)
                    elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)) and sub:
                        sub.closed.set()
                out = self.h2.data_to_send()
                if out:
                    self.writer.write(out)
        finally:
            for sub in self.streams.values():
                sub.closed.set()

    async def close(self) -> None:
        self.task.cancel()
        self.writer.close()
