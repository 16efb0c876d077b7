"""A scriptable loopback HTTP/1.1 server for the upstream client's tests.

Each accepted connection runs a script coroutine with a `ServerConn`: it can read requests
through h11 (`await conn.request()`), answer through h11 (`await conn.respond(...)`) or write
raw bytes (garbage, early closes, half answers) - whatever the test needs the upstream to do
wrong. The server counts connections and records every request, so tests can see reuse.

    async with ScriptedServer(script) as server:
        upstream = upstream_for(server.port)
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import h11

from bridge.routing.model import Upstream

Headers = list[tuple[bytes, bytes]]
Script = Callable[["ServerConn"], Awaitable[None]]
STEP = 5.0  # every single server-side wait is bounded by this


def run(coro: Coroutine[Any, Any, Any], loop: str, timeout: float = 30.0) -> Any:
    """Run one test body under a timeout, on asyncio's loop or uvloop (bridge's production)."""
    guarded = asyncio.wait_for(coro, timeout)
    if loop == "uvloop":
        import uvloop

        return uvloop.run(guarded)
    return asyncio.run(guarded)


def upstream_for(
    port: int, *, base_path: str = "", timeout: float = 5.0, host_mode: str = "client"
) -> Upstream:
    return Upstream(
        name="app",
        url=f"http://127.0.0.1:{port}{base_path}",
        scheme="http",
        host="127.0.0.1",
        port=port,
        base_path=base_path,
        timeout=timeout,
        host_mode=host_mode,  # type: ignore[arg-type]
    )


def host(port: int) -> Headers:
    return [(b"host", f"127.0.0.1:{port}".encode())]


@dataclass
class Received:
    connection: int  # 0-based index of the connection it came on
    method: str
    target: str
    headers: Headers
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        for n, v in self.headers:
            if n == name:
                return v
        return None


class ServerConn:
    def __init__(
        self,
        server: ScriptedServer,
        index: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.server = server
        self.index = index
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER)
        self.closed_by_peer = False
        self._raw = False  # the current answer was written as raw bytes, not through h11

    async def request(self, *, read_body: bool = True, timeout: float = 30.0) -> Received | None:
        """The next request through h11 (None when the client closed an idle connection)."""
        h = self.h11
        if h.our_state is h11.DONE and h.their_state is h11.DONE:
            h.start_next_cycle()
        elif self._raw and h.their_state is h11.DONE:
            # The last answer went out as raw bytes: start over with what the client sent since.
            data, closed = h.trailing_data
            h = self.h11 = h11.Connection(h11.SERVER)
            if data:
                h.receive_data(data)
            if closed:
                h.receive_data(b"")
        self._raw = False
        head: h11.Request | None = None
        chunks: list[bytes] = []
        while True:
            event = h.next_event()
            if event is h11.NEED_DATA:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
                if not data:
                    self.closed_by_peer = True
                h.receive_data(data)
                continue
            assert event is not h11.PAUSED, "the script must answer before reading on"
            if isinstance(event, h11.ConnectionClosed):
                self.closed_by_peer = True
                return None
            if isinstance(event, h11.Request):
                head = event
                if not read_body:
                    break
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
        assert head is not None
        received = Received(
            self.index,
            head.method.decode(),
            head.target.decode(),
            list(head.headers),
            b"".join(chunks),
        )
        self.server.received.append(received)
        return received

    async def respond(self, status: int, headers: Headers, body: bytes = b"") -> None:
        h = self.h11
        data = h.send(h11.Response(status_code=status, headers=headers)) or b""
        if body:
            data += h.send(h11.Data(data=body)) or b""
        data += h.send(h11.EndOfMessage()) or b""
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), STEP)

    async def write(self, data: bytes) -> None:
        self._raw = True
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), STEP)

    async def read_raw_head(self) -> bytes:
        """Read a request head without h11 (the body stays unread in the socket)."""
        return await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), STEP)

    async def wait_peer_closed(self, timeout: float = STEP) -> bool:
        """True once the client closed the connection (EOF or reset), draining what it sends."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except ConnectionError:
            pass
        self.closed_by_peer = True
        return True

    def close(self) -> None:
        self.writer.close()


@dataclass
class ScriptedServer:
    script: Script
    port: int = 0
    connections: int = 0
    received: list[Received] = field(default_factory=list)
    conns: list[ServerConn] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    _server: asyncio.AbstractServer | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for conn in self.conns:
            conn.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=STEP)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), STEP)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ServerConn(self, self.connections, reader, writer)
        self.connections += 1
        self.conns.append(conn)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            await self.script(conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            conn.closed_by_peer = True  # reset, or EOF in the middle of something
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # surfaced by tests that check `errors`
            self.errors.append(exc)
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()


def keep_alive(
    answer: Callable[[Received], tuple[int, Headers, bytes]] | None = None,
) -> Script:
    """A well-behaved keep-alive upstream: answers each request with `answer(request)`
    (default: 200 with the target as body) until the client closes."""

    async def script(conn: ServerConn) -> None:
        while True:
            request = await conn.request()
            if request is None:
                return
            if answer is None:
                body = request.target.encode()
                await conn.respond(200, [(b"content-length", b"%d" % len(body))], body)
            else:
                status, headers, body = answer(request)
                await conn.respond(status, headers, body)

    return script
