"""A real loopback HTTP/1.1 upstream ("origin") for bridge's tests, on asyncio + h11.

    async with Origin() as origin:
        origin.json("/api/price", {"p": 1})            # JSON with ETag / 304
        origin.route("/slow", handler)                 # any async handler
        origin.url, origin.requests, origin.count("/api")

Handlers receive an `OriginRequest` and return `(status, headers, body)` where body is bytes
or an async iterator of bytes (streamed, chunked). Every request is recorded.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.demo.httpserver import Answer, HttpRequest, HttpServer

Handler = Callable[[HttpRequest], Awaitable[Answer]]


OriginRequest = HttpRequest


def etag_of(body: bytes) -> bytes:
    return b'"' + hashlib.sha256(body).hexdigest()[:16].encode() + b'"'


@dataclass
class Origin:
    host: str = "127.0.0.1"
    port: int = 0
    requests: list[OriginRequest] = field(default_factory=list)
    routes: dict[str, Handler] = field(default_factory=dict)
    _server: HttpServer | None = None

    async def __aenter__(self) -> Origin:
        self._server = HttpServer(self._handle)
        self.port = await self._server.start(self.host, self.port)
        self.route("/echo", self._echo)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connections(self) -> int:
        return self._server.connections if self._server is not None else 0

    async def close(self) -> None:
        if self._server is not None:
            await self._server.stop()

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

    async def _handle(self, request: OriginRequest) -> Answer:
        self.requests.append(request)
        handler = self._find(request.path)
        if handler is None:
            return 404, [], b"not found\n"
        return await handler(request)

    def _find(self, path: str) -> Handler | None:
        if path in self.routes:
            return self.routes[path]
        best = None
        for prefix, handler in self.routes.items():
            if prefix.endswith("*") and path.startswith(prefix[:-1]):
                if best is None or len(prefix) > len(best[0]):
                    best = (prefix, handler)
        return best[1] if best else None


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
