"""A real loopback HTTP/1.1 upstream ("origin") for bridge's tests, on asyncio + h11.

    async with Origin() as origin:
        origin.json("/api/price", {"p": 1})            # JSON with ETag / 304
        origin.route("/slow", handler)                 # any async handler
        origin.url, origin.requests, origin.count("/api")

Handlers receive an `OriginRequest` and return `(status, headers, body)` where body is bytes
or an async iterator of bytes (streamed, chunked). Every request is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import h11

Body = bytes | AsyncIterator[bytes]
Answer = tuple[int, list[tuple[bytes, bytes]], Body]
Handler = Callable[["OriginRequest"], Awaitable[Answer]]


@dataclass
class OriginRequest:
    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    body: bytes
    connection: int

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.target.partition("?")[2]))

    def header(self, name: str) -> str | None:
        key = name.lower().encode()
        for n, v in self.headers:
            if n == key:
                return v.decode("latin-1")
        return None

    def headers_named(self, name: str) -> list[str]:
        key = name.lower().encode()
        return [v.decode("latin-1") for n, v in self.headers if n == key]


def etag_of(body: bytes) -> bytes:
    return b'"' + hashlib.sha256(body).hexdigest()[:16].encode() + b'"'


@dataclass
class Origin:
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[OriginRequest] = field(default_factory=list)
    connections: int = 0
    routes: dict[str, Handler] = field(default_factory=dict)
    _server: asyncio.AbstractServer | None = None
    _open: set[asyncio.StreamWriter] = field(default_factory=set)

    async def __aenter__(self) -> Origin:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        self.route("/echo", self._echo)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._open):
                writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def count(self, prefix: str) -> int:
        return sum(1 for r in self.requests if r.path.startswith(prefix))

    # --- registering behaviour ------------------------------------------------------------------

    def route(self, path: str, handler: Handler) -> None:
        self.routes[path] = handler

    def json(
        self, path: str, value: Any, *, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        """Serve `value` as JSON with a strong ETag, answering If-None-Match with 304."""
        extra = headers or []

        async def handler(request: OriginRequest) -> Answer:
            body = json.dumps(self.values[path]).encode()
            tag = etag_of(body)
            if request.header("if-none-match") == tag.decode():
                return 304, [(b"etag", tag)], b""
            return 200, [(b"content-type", b"application/json"), (b"etag", tag), *extra], body

        self.values[path] = value
        self.route(path, handler)

    def set(self, path: str, value: Any) -> None:
        self.values[path] = value

    @property
    def values(self) -> dict[str, Any]:
        if not hasattr(self, "_values"):
            self._values: dict[str, Any] = {}
        return self._values

    def status(
        self,
        path: str,
        status: int,
        headers: list[tuple[bytes, bytes]] | None = None,
        body: bytes = b"",
    ) -> None:
        async def handler(request: OriginRequest) -> Answer:
            return status, list(headers or []), body

        self.route(path, handler)

    async def _echo(self, request: OriginRequest) -> Answer:
        body = json.dumps(
            {
                "method": request.method,
                "target": request.target,
                "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in request.headers],
                "body_length": len(request.body),
                "body_sha256": hashlib.sha256(request.body).hexdigest(),
            }
        ).encode()
        return 200, [(b"content-type", b"application/json")], body

    # --- serving --------------------------------------------------------------------------------

    def _find(self, path: str) -> Handler | None:
        if path in self.routes:
            return self.routes[path]
        best = None
        for prefix, handler in self.routes.items():
            if prefix.endswith("*") and path.startswith(prefix[:-1]):
                if best is None or len(prefix) > len(best[0]):
                    best = (prefix, handler)
        return best[1] if best else None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self._open.add(writer)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await self._read_request(conn, reader, number)
                if request is None:
                    return
                self.requests.append(request)
                handler = self._find(request.path)
                if handler is None:
                    status, headers, body = 404, [], b"not found\n"
                else:
                    status, headers, body = await handler(request)
                await self._write(conn, writer, request, status, headers, body)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, asyncio.IncompleteReadError, TimeoutError):
            return
        finally:
            self._open.discard(writer)
            writer.close()

    async def _read_request(
        self, conn: h11.Connection, reader: asyncio.StreamReader, number: int
    ) -> OriginRequest | None:
        head: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(reader.read(65536), 30)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed):
                return None
            if isinstance(event, h11.Request):
                head = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return OriginRequest(
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
        request: OriginRequest,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: Body,
    ) -> None:
        names = {n.lower() for n, _ in headers}
        if isinstance(body, bytes) and b"content-length" not in names and status not in (204, 304):
            headers = [*headers, (b"content-length", str(len(body)).encode())]
        writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
        if isinstance(body, bytes):
            if body and request.method != "HEAD" and status not in (204, 304):
                writer.write(conn.send(h11.Data(data=body)))
        else:
            async for piece in body:
                writer.write(conn.send(h11.Data(data=piece)))
                await writer.drain()
        writer.write(conn.send(h11.EndOfMessage()))
        await writer.drain()


def pattern_bytes(offset: int, size: int) -> bytes:
    """Deterministic content whose every byte depends on its offset, to check big bodies."""
    block = bytes(range(256)) * 256  # 64 KiB
    start = offset % 256
    data = (block[start:] + block[:start]) * (size // len(block) + 1)
    return data[:size]


async def streamed(total: int, piece: int = 65536) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        size = min(piece, total - sent)
        yield pattern_bytes(sent, size)
        sent += size
