"""Pass-through WebSocket for ordinary routes: a client's WebSocket relayed to the upstream's.

The client may arrive over HTTP/1.1 Upgrade or an HTTP/2 extended CONNECT (RFC 8441); the
upstream is always asked over HTTP/1.1 Upgrade. RFC 8441 §5 keeps the WebSocket framing
unchanged (clients still mask), so after the two handshakes the frames are relayed as they
are, in both directions, with backpressure — close and ping semantics are the peers' own.
"""

from __future__ import annotations

import asyncio
import base64
import os

from .. import settings
from ..errors import ErrorCode, StreamError
from ..routing.model import Upstream
from ..stream.exchange import Exchange
from ..upstream.headers import forward_request_headers, response_headers
from ..upstream.wsupgrade import connect, handshake
from .util import header
from .wshandshake import accept_key, handshake_problem

# Headers the upstream's handshake answer may carry on to the client.
_ANSWER_HEADERS = frozenset({b"sec-websocket-protocol", b"sec-websocket-extensions", b"set-cookie"})
_PASS_HEADERS = frozenset(
    {b"sec-websocket-protocol", b"sec-websocket-extensions", b"sec-websocket-version"}
)


async def proxy_websocket(exchange: Exchange, upstream: Upstream, target: str) -> None:
    problem = handshake_problem(exchange)
    if problem is not None:
        raise StreamError(problem[0], problem[1], problem[2])
    request = exchange.request
    key = header(request.headers, b"sec-websocket-key")
    if key is None:  # an RFC 8441 client has no key: the upstream handshake needs one
        key = base64.b64encode(os.urandom(16))
    headers = forward_request_headers(
        [(n, v) for n, v in request.headers if n != b"sec-websocket-key"],
        client_ip=exchange.client_ip,
        scheme=request.scheme,
        authority=request.authority,
        http_version=request.http_version,
        upstream=upstream,
        request_id=exchange.access.request_id,
    )
    headers += [
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-key", key),
    ]
    if header(headers, b"sec-websocket-version") is None:
        headers.append((b"sec-websocket-version", b"13"))
    reader, writer = await connect(upstream)
    try:
        status, answer, rest = await asyncio.wait_for(
            handshake(reader, writer, upstream.base_path + target, headers), upstream.timeout
        )
        exchange.access.upstream_status = status
        if status != 101:
            # The app refused the WebSocket (401, 403, 404 ...): that answer is the client's,
            # as for any proxied request; `rest` is its (bounded) body.
            refused = response_headers(answer, http_version="1.1")
            refused = [(n, v) for n, v in refused if n != b"content-length"]
            refused.append((b"content-length", str(len(rest)).encode()))
            exchange.respond_now(status, refused, rest)
            return
        # RFC 6455 §4.1: the answer must prove the upstream read our key.
        if header(answer, b"sec-websocket-accept") != accept_key(key):
            raise StreamError(ErrorCode.UPSTREAM_UNREACHABLE, "bad Sec-WebSocket-Accept upstream")
        kept = [(n, v) for n, v in answer if n in _ANSWER_HEADERS]
        if request.protocol is None:
            kept += [
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
                (b"sec-websocket-accept", accept_key(key)),
            ]
            exchange.start_response(101, kept)
        else:
            exchange.start_response(200, kept)
        exchange.access.kind = "websocket"
        if rest:
            await exchange.send_body(rest)
        await _relay(exchange, reader, writer)
    except TimeoutError:
        raise StreamError(ErrorCode.UPSTREAM_TIMEOUT, "upstream handshake timed out") from None
    finally:
        writer.close()
    if not exchange.aborted:
        await exchange.end()


async def _relay(
    exchange: Exchange, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    async def client_to_upstream() -> None:
        while True:
            data = await exchange.receive(timeout=settings.UPSTREAM_IDLE_TIMEOUT * 10)
            if not data:
                return
            writer.write(data)
            async with asyncio.timeout(settings.SEND_TIMEOUT):  # not wait_for (Exchange.receive)
                await writer.drain()

    async def upstream_to_client() -> None:
        while True:
            data = await reader.read(settings.BODY_CHUNK)
            if not data:
                return
            await exchange.send_body(data)

    tasks = [asyncio.create_task(client_to_upstream()), asyncio.create_task(upstream_to_client())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task.exception() is not None and not isinstance(task.exception(), StreamError):
                raise task.exception()  # type: ignore[misc]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
