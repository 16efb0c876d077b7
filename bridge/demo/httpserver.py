"""A small HTTP/1.1 server on asyncio + h11, shared by the embedded demo app and the tests'
loopback upstreams, so there is one HTTP server implementation to get right, not two.

    server = HttpServer(handler)          # async def handler(req: ServerRequest) -> ...
    port = await server.start()           # 127.0.0.1, port 0
    ...
    await server.stop()

A handler receives a `ServerRequest` whose body has been read in full (bounded by `MAX_BODY`)
and returns one of:

- `ServerResponse(status, headers, body)`: body is `bytes`, or an async iterator of bytes that
  is streamed with `drain()` backpressure — chunked unless the handler set `content-length`;
- `WebSocketAccept(handler)`: the server completes the RFC 6455 handshake (101) and runs
  `await handler(ws)` with a small `WebSocket` (receive / send / close) over wsproto;
- a `(status, headers, body)` tuple, the older shape some callers still use.

Keep-alive and pipelining come from h11; every await is bounded: the request head must arrive
within `HEADER_TIMEOUT` of its first byte, an idle keep-alive connection is closed after
`IDLE_TIMEOUT`, and each body read, write drain and streamed piece has its own timeout.
A client that disconnects while its handler is still working (say, a held long-poll) cancels
the handler, as nginx treats a client abort.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import http
import json
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import h11
import wsproto
import wsproto.events as ws_events
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.utilities import LocalProtocolError, generate_accept_token

log = logging.getLogger("bridge.demo.httpserver")

Headers = list[tuple[bytes, bytes]]

MAX_BODY = 16 * 1024 * 1024  # a request body above this is refused with 413
MAX_HEAD = 64 * 1024  # request line + headers (h11's max_incomplete_event_size)
MAX_WS_MESSAGE = 16 * 1024 * 1024  # a WebSocket message above this is closed with 1009
READ_CHUNK = 64 * 1024
HEADER_TIMEOUT = 10.0  # the whole request head, from its first byte (then 408)
IDLE_TIMEOUT = 30.0  # a keep-alive connection with no new request is closed after this
BODY_TIMEOUT = 30.0  # between two reads of a request body
SEND_TIMEOUT = 30.0  # a client that accepts no bytes for this long is dropped
PIECE_TIMEOUT = 60.0  # a streamed response body must produce its next piece within this
HANDLER_TIMEOUT = 300.0  # a handler that has not answered by then gets a 500
WS_IDLE_TIMEOUT = 60.0  # WebSocket.receive() default: no frame for this long closes with 1001
WS_CLOSE_TIMEOUT = 5.0  # waiting for the peer's close frame after ours
STOP_TIMEOUT = 2.0  # stop() waits at most this long for cancelled connections to finish


@dataclass(slots=True)
class ServerRequest:
    """One request, head and whole body. Header names are lower-case bytes (h11's form)."""

    method: str
    target: str
    headers: Headers
    body: bytes = b""
    client: tuple[str, int] = ("", 0)
    connection_id: int = 0
    http_version: str = "1.1"
    path: str = field(init=False)
    query: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        # The path stays exactly as sent (still percent-encoded) so tests can see what an
        # upstream really received; `query` keeps the first value of each parameter.
        path, _, query = self.target.partition("?")
        self.path = path
        self.query = {}
        for name, value in parse_qsl(query, keep_blank_values=True):
            self.query.setdefault(name, value)

    @property
    def connection(self) -> int:
        """The older name of `connection_id`."""
        return self.connection_id

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any case), or None."""
        key = name.lower().encode("latin-1")
        for n, v in self.headers:
            if n == key:
                return v.decode("latin-1")
        return None

    def header_values(self, name: str) -> list[str]:
        key = name.lower().encode("latin-1")
        return [v.decode("latin-1") for n, v in self.headers if n == key]

    def json(self) -> Any:
        return json.loads(self.body)


Body = bytes | AsyncIterator[bytes]


@dataclass(slots=True)
class ServerResponse:
    status: int = 200
    headers: Headers = field(default_factory=list)
    body: Body = b""

    @classmethod
    def json(cls, value: Any, status: int = 200, headers: Headers | None = None) -> ServerResponse:
        body = json.dumps(value, separators=(",", ":")).encode()
        return cls(status, [(b"content-type", b"application/json"), *(headers or [])], body)

    @classmethod
    def text(cls, text: str, status: int = 200, headers: Headers | None = None) -> ServerResponse:
        kind = (b"content-type", b"text/plain; charset=utf-8")
        return cls(status, [kind, *(headers or [])], text.encode())


WebSocketHandler = Callable[["WebSocket"], Awaitable[None]]


@dataclass(slots=True)
class WebSocketAccept:
    """Returned by a handler to accept a WebSocket upgrade and run `handler(ws)` on it."""

    handler: WebSocketHandler
    subprotocol: str | None = None
    headers: Headers = field(default_factory=list)


# The older handler shape: (status, headers, body).
Answer = tuple[int, Headers, Body]
HttpRequest = ServerRequest  # the older name
Handler = Callable[[ServerRequest], Awaitable["ServerResponse | WebSocketAccept | Answer"]]


class _Reject(Exception):
    """Ends a connection with a canned error answer (bad head, timeout, too large)."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class HttpServer:
    """Serves `handler` over HTTP/1.1 on one listening socket."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.port = 0
        self.connections = 0  # TCP connections accepted so far; also the last connection_id
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def open_connections(self) -> int:
        return len(self._tasks)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._server = await asyncio.start_server(self._serve, host, port, limit=READ_CHUNK)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), STOP_TIMEOUT)

    async def __aenter__(self) -> HttpServer:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- one connection ---------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        connection_id = self.connections
        peer = writer.get_extra_info("peername")
        client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else ("", 0)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        try:
            while True:  # one request per turn; ends on close, error or timeout
                request = await self._read_request(conn, reader, writer, connection_id, client)
                if request is None:
                    return
                answer = await self._call(request, conn, reader)
                if answer is None:  # the client went away while its handler worked
                    return
                if isinstance(answer, WebSocketAccept):
                    await self._websocket(conn, reader, writer, request, answer)
                    return
                await self._respond(conn, writer, request, answer)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return  # MUST_CLOSE (HTTP/1.0, Connection: close) or a failed switch
                conn.start_next_cycle()
        except _Reject as exc:
            with contextlib.suppress(OSError):
                writer.write(_canned(exc.status))
                await asyncio.wait_for(writer.drain(), SEND_TIMEOUT)
        except (OSError, TimeoutError, h11.ProtocolError, asyncio.CancelledError):
            # A peer that vanished, stalled or spoke badly after its head, or stop(): close.
            pass
        except Exception:  # one connection's failure must never reach the event loop
            log.exception("connection %d failed", connection_id)
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _read_request(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection_id: int,
        client: tuple[str, int],
    ) -> ServerRequest | None:
        head: h11.Request | None = None
        body = bytearray()
        head_deadline: float | None = None
        loop = asyncio.get_running_loop()
        while True:  # bounded: each turn takes one event or makes one bounded read
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise _Reject(exc.error_status_hint) from exc
            if event is h11.NEED_DATA:
                if head is None:
                    # Waiting for a new request is keep-alive idleness; once its first byte
                    # is in, the whole head must follow within HEADER_TIMEOUT.
                    timeout = IDLE_TIMEOUT if head_deadline is None else head_deadline - loop.time()
                else:
                    if conn.they_are_waiting_for_100_continue:
                        writer.write(
                            conn.send(h11.InformationalResponse(status_code=100, headers=[]))
                        )
                    timeout = BODY_TIMEOUT
                try:
                    data = await asyncio.wait_for(reader.read(READ_CHUNK), max(timeout, 0.0))
                except TimeoutError:
                    if head is None and head_deadline is None:
                        return None  # idle keep-alive connection: close quietly
                    raise _Reject(408) from None
                if data and head_deadline is None:
                    head_deadline = loop.time() + HEADER_TIMEOUT
                try:
                    conn.receive_data(data)
                except h11.RemoteProtocolError as exc:
                    raise _Reject(exc.error_status_hint) from exc
            elif isinstance(event, h11.Request):
                head = event
                length = _content_length(event.headers)
                if length is not None and length > MAX_BODY:
                    raise _Reject(413)
            elif isinstance(event, h11.Data):
                if len(body) + len(event.data) > MAX_BODY:
                    raise _Reject(413)
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return ServerRequest(
                    method=head.method.decode("ascii"),
                    target=head.target.decode("latin-1"),
                    headers=[(bytes(n), bytes(v)) for n, v in head.headers],
                    body=bytes(body),
                    client=client,
                    connection_id=connection_id,
                    http_version=head.http_version.decode("ascii"),
                )
            else:  # ConnectionClosed, or PAUSED after a connection we cannot reuse
                return None

    async def _call(
        self, request: ServerRequest, conn: h11.Connection, reader: asyncio.StreamReader
    ) -> ServerResponse | WebSocketAccept | None:
        """Run the handler; None if the client disconnected before it answered."""
        work = asyncio.ensure_future(self._invoke(request))
        if request.header("upgrade") is not None:
            # The bytes after an upgrade request belong to the new protocol: do not read them.
            try:
                return await asyncio.wait_for(work, HANDLER_TIMEOUT)
            except TimeoutError:
                return ServerResponse.text("handler timed out\n", 500)
        watch = asyncio.ensure_future(reader.read(READ_CHUNK))
        try:
            done, _ = await asyncio.wait(
                {work, watch}, timeout=HANDLER_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                return ServerResponse.text("handler timed out\n", 500)
            if watch in done:
                data = watch.result()
                if not data and work not in done:
                    return None  # EOF: nobody is left to answer
                # A pipelined next request (or the EOF after it): h11 keeps it for the next
                # cycle.
                conn.receive_data(data)
            return await asyncio.wait_for(work, HANDLER_TIMEOUT)
        finally:
            for task in (work, watch):
                if not task.done():
                    task.cancel()
            if not work.done():
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await asyncio.wait_for(work, STOP_TIMEOUT)

    async def _invoke(self, request: ServerRequest) -> ServerResponse | WebSocketAccept:
        try:
            answer = await self.handler(request)
        except Exception:
            log.exception("handler failed for %s %s", request.method, request.target)
            return ServerResponse.text("internal error\n", 500)
        if isinstance(answer, ServerResponse | WebSocketAccept):
            return answer
        status, headers, body = answer
        return ServerResponse(status, headers, body)

    async def _respond(
        self,
        conn: h11.Connection,
        writer: asyncio.StreamWriter,
        request: ServerRequest,
        response: ServerResponse,
    ) -> None:
        status, body = response.status, response.body
        headers = [(_bytes(n).lower(), _bytes(v)) for n, v in response.headers]
        names = {n for n, _ in headers}
        # RFC 9110 §6.4.1: no content in answers to HEAD, nor in 1xx, 204 and 304.
        bodiless = request.method == "HEAD" or status in (204, 304) or status < 200
        if (
            isinstance(body, bytes)
            and status not in (204, 304)
            and not names & {b"content-length", b"transfer-encoding"}
        ):
            headers.append((b"content-length", str(len(body)).encode()))
        if b"date" not in names:
            headers.append((b"date", _http_date()))
        try:
            writer.write(
                conn.send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))
            )
            if isinstance(body, bytes):
                if body and not bodiless:
                    writer.write(conn.send(h11.Data(data=body)))
            elif not bodiless:
                await self._stream(conn, writer, body)
            writer.write(conn.send(h11.EndOfMessage()))
        finally:
            if not isinstance(body, bytes):
                await _aclose(body)
        await asyncio.wait_for(writer.drain(), SEND_TIMEOUT)

    async def _stream(
        self, conn: h11.Connection, writer: asyncio.StreamWriter, body: AsyncIterator[bytes]
    ) -> None:
        iterator = aiter(body)
        while True:  # bounded by the body itself; each piece and each drain has a timeout
            try:
                piece = await asyncio.wait_for(anext(iterator), PIECE_TIMEOUT)
            except StopAsyncIteration:
                return
            if piece:
                writer.write(conn.send(h11.Data(data=piece)))
                # drain() returns at once below the transport's high-water mark and waits
                # (backpressure) above it, so a slow reader slows the producer.
                await asyncio.wait_for(writer.drain(), SEND_TIMEOUT)

    # --- WebSocket --------------------------------------------------------------------------

    async def _websocket(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: ServerRequest,
        accept: WebSocketAccept,
    ) -> None:
        key = request.header("sec-websocket-key")
        upgrade = (request.header("upgrade") or "").lower()
        if (
            request.method != "GET"
            or upgrade != "websocket"
            or not key
            or request.header("sec-websocket-version") != "13"
            or conn.their_state is not h11.MIGHT_SWITCH_PROTOCOL
        ):
            # RFC 6455 §4.2.2: a bad handshake is answered with an HTTP error, not a 101.
            refusal = ServerResponse.text("a WebSocket handshake is required\n", 426)
            refusal.headers += [(b"upgrade", b"websocket"), (b"connection", b"close")]
            await self._respond(conn, writer, request, refusal)
            return
        headers: Headers = [
            (b"upgrade", b"websocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-accept", generate_accept_token(key.encode("latin-1"))),
        ]
        if accept.subprotocol:
            headers.append((b"sec-websocket-protocol", accept.subprotocol.encode()))
        headers += accept.headers
        writer.write(conn.send(h11.InformationalResponse(status_code=101, headers=headers)))
        await asyncio.wait_for(writer.drain(), SEND_TIMEOUT)
        ws = WebSocket(reader, writer, request, conn.trailing_data[0])
        try:
            await accept.handler(ws)
        except (OSError, TimeoutError):
            return
        except Exception:
            log.exception("WebSocket handler failed for %s", request.target)
            await ws.close(1011)
            return
        await ws.close(1000)


class WebSocket:
    """The server side of one accepted WebSocket: whole messages in, messages out.

    `receive()` answers pings by itself and returns None once the connection is closed (by
    the peer, by EOF, by a protocol error, or after `timeout` seconds without a frame).
    """

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: ServerRequest,
        pending: bytes = b"",
    ) -> None:
        self.request = request
        self.close_code: int | None = None  # the peer's close code, once it sent one
        self._reader = reader
        self._writer = writer
        self._ws = wsproto.Connection(ConnectionType.SERVER)
        self._inbox: deque[str | bytes] = deque()
        self._parts: list[str | bytes] = []
        self._size = 0
        self._ws.receive_data(pending)

    @property
    def closed(self) -> bool:
        return self._ws.state is not ConnectionState.OPEN

    async def receive(self, timeout: float = WS_IDLE_TIMEOUT) -> str | bytes | None:
        while True:  # bounded: each turn makes one read bounded by `timeout`
            await self._process()
            if self._inbox:
                return self._inbox.popleft()
            if self.closed:
                return None
            try:
                data = await asyncio.wait_for(self._reader.read(READ_CHUNK), timeout)
            except TimeoutError:
                await self.close(1001)
                return None
            self._ws.receive_data(data or None)  # None tells wsproto the TCP stream ended

    async def send(self, message: str | bytes) -> None:
        if self._ws.state is not ConnectionState.OPEN:
            raise ConnectionError("WebSocket is closed")
        event: ws_events.Event = (
            ws_events.TextMessage(data=message)
            if isinstance(message, str)
            else ws_events.BytesMessage(data=bytes(message))
        )
        await self._write(self._ws.send(event))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Send our close frame (if still allowed), wait briefly for the peer's, end TCP."""
        try:
            if self._ws.state in (ConnectionState.OPEN, ConnectionState.REMOTE_CLOSING):
                await self._write(self._ws.send(ws_events.CloseConnection(code, reason)))
            deadline = asyncio.get_running_loop().time() + WS_CLOSE_TIMEOUT
            while self._ws.state is ConnectionState.LOCAL_CLOSING:  # bounded by deadline
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                data = await asyncio.wait_for(self._reader.read(READ_CHUNK), remaining)
                self._ws.receive_data(data or None)
                await self._process()
        except (OSError, TimeoutError, LocalProtocolError):
            pass
        finally:
            self._writer.close()

    def __aiter__(self) -> WebSocket:
        return self

    async def __anext__(self) -> str | bytes:
        message = await self.receive()
        if message is None:
            raise StopAsyncIteration
        return message

    async def _process(self) -> None:
        for event in self._ws.events():
            if isinstance(event, ws_events.Message):
                self._parts.append(event.data)
                self._size += len(event.data)
                if self._size > MAX_WS_MESSAGE:
                    await self.close(1009)
                    return
                if event.message_finished:
                    first = self._parts[0]
                    whole = (
                        "".join(self._parts)  # type: ignore[arg-type]
                        if isinstance(first, str)
                        else b"".join(self._parts)  # type: ignore[arg-type]
                    )
                    self._inbox.append(whole)
                    self._parts, self._size = [], 0
            elif isinstance(event, ws_events.Ping):
                if self._ws.state is ConnectionState.OPEN:
                    await self._write(self._ws.send(event.response()))
            elif isinstance(event, ws_events.CloseConnection):
                self.close_code = event.code
                if self._ws.state is ConnectionState.REMOTE_CLOSING:
                    # RFC 6455 §5.5.1: answer a close with a close, then end the connection.
                    await self._write(self._ws.send(event.response()))
                elif self._ws.state is ConnectionState.OPEN:
                    # wsproto reports a malformed frame as a close it did not receive.
                    await self._write(self._ws.send(ws_events.CloseConnection(event.code)))
                return

    async def _write(self, data: bytes) -> None:
        self._writer.write(data)
        await asyncio.wait_for(self._writer.drain(), SEND_TIMEOUT)


# --- small helpers ------------------------------------------------------------------------------


def etag_of(body: bytes) -> bytes:
    """A strong entity tag derived from the content, so equal bodies get equal tags."""
    return b'"' + hashlib.sha256(body).hexdigest()[:20].encode() + b'"'


def etag_matches(if_none_match: str | None, tag: bytes) -> bool:
    """RFC 9110 §13.1.2: If-None-Match compares weakly, against a list or `*`."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    ours = tag.decode("latin-1").removeprefix("W/")
    return any(c.strip().removeprefix("W/") == ours for c in if_none_match.split(","))


def not_modified_since(if_modified_since: str | None, last_modified: float) -> bool:
    """RFC 9110 §13.1.3: true when the resource has not changed since the given date."""
    if not if_modified_since:
        return False
    try:
        since = email.utils.parsedate_to_datetime(if_modified_since).timestamp()
    except (TypeError, ValueError):
        return False  # an invalid date is ignored (§13.1.3)
    return int(last_modified) <= since


def is_not_modified(
    request: ServerRequest, etag: bytes | None, last_modified: float | None = None
) -> bool:
    """Whether a GET/HEAD should be answered 304. RFC 9110 §13.2.2: If-None-Match, when
    present, decides alone; If-Modified-Since is looked at only without it."""
    if request.method not in ("GET", "HEAD"):
        return False
    inm = request.header("if-none-match")
    if inm is not None:
        return etag is not None and etag_matches(inm, etag)
    if last_modified is None:
        return False
    return not_modified_since(request.header("if-modified-since"), last_modified)


def http_date(timestamp: float) -> bytes:
    return email.utils.formatdate(int(timestamp), usegmt=True).encode()


def _content_length(headers: Any) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            with contextlib.suppress(ValueError):
                return int(value)
    return None


def _bytes(value: bytes | str) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else bytes(value)


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


_date_cache: tuple[int, bytes] = (0, b"")


def _http_date() -> bytes:
    """The `Date` header value, formatted once per second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True).encode())
    return _date_cache[1]


def _canned(status: int) -> bytes:
    reason = _reason(status)
    text = reason or b"error"
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n"
        b"connection: close\r\n\r\n%s\n" % (status, reason, len(text) + 1, text)
    )


async def _aclose(body: AsyncIterator[bytes]) -> None:
    close = getattr(body, "aclose", None)
    if close is not None:
        with contextlib.suppress(Exception):
            await close()
