"""The upstream side of a pass-through WebSocket: connect, and the HTTP/1.1 Upgrade handshake.

Outbound I/O lives in `bridge/upstream/` beside the pooled client; the relay of frames after
the handshake is the handler's (`handlers/wsproxy.py`). An upgraded connection is never pooled:
after a 101 it belongs to one WebSocket. Every await is bounded by the caller's upstream timeout.
"""

from __future__ import annotations

import asyncio

import h11

from .. import settings
from ..errors import ErrorCode, StreamError
from ..events import Headers
from ..routing.model import Upstream


async def connect(upstream: Upstream) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        return await asyncio.wait_for(
            asyncio.open_connection(upstream.host, upstream.port), upstream.timeout
        )
    except TimeoutError:
        raise StreamError(ErrorCode.UPSTREAM_TIMEOUT, "upstream connect timed out") from None
    except OSError as exc:
        raise StreamError(ErrorCode.UPSTREAM_UNREACHABLE, str(exc)) from None


async def handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str, headers: Headers
) -> tuple[int, Headers, bytes]:
    """Ask for the Upgrade; the status, the answer's headers, and the bytes after its head
    (the first frames after a 101, or the bounded body of a refusal)."""
    client = h11.Connection(h11.CLIENT)
    writer.write(client.send(h11.Request(method="GET", target=target, headers=headers)))
    await writer.drain()
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            data = await reader.read(settings.BODY_CHUNK)
            if not data:
                raise StreamError(
                    ErrorCode.UPSTREAM_UNREACHABLE, "upstream closed during handshake"
                )
            try:
                client.receive_data(data)
            except h11.RemoteProtocolError:
                raise StreamError(ErrorCode.UPSTREAM_UNREACHABLE, "bad upstream answer") from None
            continue
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            rest, _ = client.trailing_data
            return 101, [(bytes(n), bytes(v)) for n, v in event.headers], rest
        if isinstance(event, h11.Response):
            answer = [(bytes(n), bytes(v)) for n, v in event.headers]
            return event.status_code, answer, await _refusal_body(client, reader)
        if isinstance(event, h11.InformationalResponse):
            continue


async def _refusal_body(client: h11.Connection, reader: asyncio.StreamReader) -> bytes:
    """The body of a refused handshake, for the client; an error page, so kept small."""
    body = b""
    while True:
        try:
            event = client.next_event()
            if event is h11.NEED_DATA:
                # b"" at EOF too: h11 ends a close-delimited body, or finds it cut short.
                client.receive_data(await reader.read(settings.BODY_CHUNK))
                continue
        except h11.RemoteProtocolError:
            raise StreamError(ErrorCode.UPSTREAM_UNREACHABLE, "bad upstream answer") from None
        if isinstance(event, h11.Data):
            body += bytes(event.data)
            if len(body) > settings.BODY_CHUNK:
                raise StreamError(ErrorCode.UPSTREAM_UNREACHABLE, "refusal body too large")
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            return body
