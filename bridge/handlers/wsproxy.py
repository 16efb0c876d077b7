"""Pass-through WebSocket for ordinary routes: a client's WebSocket relayed to the upstream's.

The client may arrive over HTTP/1.1 Upgrade or an HTTP/2 extended CONNECT (RFC 8441); the
upstream is always asked over HTTP/1.1 Upgrade. RFC 8441 §5 keeps the WebSocket framing
unchanged (clients still mask), so after the two handshakes the frames are relayed as they
are, in both directions, with backpressure — close and ping semantics are the peers' own.
The upstream side is the upstream client's (`UpstreamPool.upgrade`): this handler owns no
socket, only the `Tunnel` a 101 leaves it.
"""

from __future__ import annotations

import asyncio
import base64
import os

from .. import settings
from ..errors import ErrorCode, StreamError
from ..routing.model import Upstream
from ..stream.exchange import Exchange
from ..upstream import Tunnel, UpstreamPool
from ..upstream.headers import forward_request_headers, response_headers
from .util import header
from .wshandshake import accept_key, handshake_problem

# Headers the upstream's handshake answer may carry on to the client.
_ANSWER_HEADERS = frozenset({b"sec-websocket-protocol", b"sec-websocket-extensions", b"set-cookie"})
_PASS_HEADERS = frozenset(
    {b"sec-websocket-protocol", b"sec-websocket-extensions", b"sec-websocket-version"}
)


async def proxy_websocket(
    exchange: Exchange, pool: UpstreamPool, upstream: Upstream, target: str
) -> None:
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
    answer = await pool.upgrade(upstream, target, headers)
    exchange.access.upstream_status = answer.status
    tunnel = answer.tunnel
    if tunnel is None:
        # The app refused the WebSocket (401, 403, 404 ...): that answer is the client's,
        # as for any proxied request, with its (bounded) body.
        refused = response_headers(answer.headers, http_version="1.1")
        refused = [(n, v) for n, v in refused if n != b"content-length"]
        refused.append((b"content-length", str(len(answer.body)).encode()))
        exchange.respond_now(answer.status, refused, answer.body)
        return
    try:
        # RFC 6455 §4.1: the answer must prove the upstream read our key.
        if header(answer.headers, b"sec-websocket-accept") != accept_key(key):
            raise StreamError(ErrorCode.UPSTREAM_UNREACHABLE, "bad Sec-WebSocket-Accept upstream")
        kept = [(n, v) for n, v in answer.headers if n in _ANSWER_HEADERS]
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
        await _relay(exchange, tunnel)
    except TimeoutError:
        raise StreamError(ErrorCode.UPSTREAM_TIMEOUT, "upstream took no bytes in time") from None
    finally:
        tunnel.close()
    if not exchange.aborted:
        await exchange.end()


async def _relay(exchange: Exchange, tunnel: Tunnel) -> None:
    async def client_to_upstream() -> None:
        while True:
            data = await exchange.receive(timeout=settings.WS_PROXY_IDLE_TIMEOUT)
            if not data:
                return
            await tunnel.write(data, settings.SEND_TIMEOUT)

    async def upstream_to_client() -> None:
        # The bytes that came with the 101's head are the tunnel's first read.
        while True:
            data = await tunnel.read()
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
