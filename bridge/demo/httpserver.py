"""A small HTTP/1.1 server on asyncio + h11: the embedded demo app runs on it, and so do the
tests' loopback upstreams. Keep-alive, content-length and chunked bodies, streamed answers.

A handler gets an `HttpRequest` and returns `(status, headers, body)`; body is bytes or an
async iterator of bytes (sent chunked, with backpressure).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import parse_qsl

import h11

Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, Headers, "bytes | AsyncIterator[bytes]"]
MAX_BODY = 16 * 1024 * 1024
IDLE_TIMEOUT = 30.0


@dataclass
class HttpRequest:
    method: str
    target: str
    headers: Headers
    body: bytes
    connection: int

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(self.target.partition("?")[2]))

    def header(self, name: str) -> str | None:
        key = name.lower().encode()
        for n, v in self.headers:
            if n == key:
                return v.decode("latin-1")
        return None


Handler = Callable[[HttpRequest], Awaitable[Answer]]


class HttpServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.port = 0
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._open):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self._open.add(writer)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._read(conn, reader, number)
                if request is None:
                    return
                status, headers, body = await self.handler(request)
                await self._write(conn, writer, request, status, headers, body)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError, TimeoutError):
            return
        finally:
            self._open.discard(writer)
            writer.close()

    async def _read(
        self, conn: h11.Connection, reader: asyncio.StreamReader, number: int
    ) -> HttpRequest | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await asyncio.wait_for(reader.read(65536), IDLE_TIMEOUT))
                continue
            if isinstance(event, h11.ConnectionClosed):
                return None
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    return None
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return HttpRequest(
                    head.method.decode(),
                    head.target.decode("latin-1"),
                    [(bytes(n), bytes(v)) for n, v in head.headers],
                    bytes(body),
                    number,
                )

    async def _write(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        request: HttpRequest,
        status: int,
        headers: Headers,
        body: bytes | AsyncIterator[bytes],
    ) -> None:
        names = {n.lower() for n, _ in headers}
        bodiless = status in (204, 304) or request.method == "HEAD"
        if isinstance(body, bytes) and b"content-length" not in names and status not in (204, 304):
            headers = [*headers, (b"content-length", str(len(body)).encode())]
        writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
        if isinstance(body, bytes):
            if body and not bodiless:
                writer.write(conn.send(h11.Data(data=body)))
        else:
            async for piece in body:
                writer.write(conn.send(h11.Data(data=piece)))
                await asyncio.wait_for(writer.drain(), IDLE_TIMEOUT)
        writer.write(conn.send(h11.EndOfMessage()))
        await asyncio.wait_for(writer.drain(), IDLE_TIMEOUT)
