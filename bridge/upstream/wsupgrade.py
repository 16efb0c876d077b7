"""The upstream side of a pass-through WebSocket: connect, and the HTTP/1.1 Upgrade handshake.

Outbound I/O lives in `bridge/upstream/` beside the pooled client; the relay of frames after
the handshake is the handler's (`handlers/wsproxy.py`). An upgraded connection is never pooled:
after a 101 it belongs to one WebSocket. Every await is bounded by the caller's upstream timeout.
"""

from __future__ import annotations

import asyncio

from .. import settings
from ..errors import ErrorCode, StreamError
from ..events import Headers
from ..routing.model import Upstream
from . import reader as wire


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
    try:
        writer.write(wire.request_head("GET", target, headers))
    except (ValueError, UnicodeError) as exc:
        raise StreamError(ErrorCode.BAD_REQUEST, f"cannot forward request: {exc}") from None
    await writer.drain()
    answer = wire.ResponseReader()
    answer.begin("GET", upgrade=True)
    status = 0
    fields: Headers = []
    body = b""
    while True:
        try:
            event = answer.next()
            if event is wire.NEED_DATA:
                data = await reader.read(settings.BODY_CHUNK)
                if data:
                    answer.feed(data)
                elif not status:
                    raise StreamError(
                        ErrorCode.UPSTREAM_UNREACHABLE, "upstream closed during handshake"
                    )
                else:
                    answer.feed_eof()  # ends a close-delimited refusal, or finds it cut short
                continue
        except wire.ResponseError:
            raise StreamError(ErrorCode.UPSTREAM_UNREACHABLE, "bad upstream answer") from None
        kind = event[0]
        if kind == wire.HEAD:
            status, fields = event[1], event[3]
            if status == 101:
                return 101, fields, answer.rest
        elif kind == wire.DATA:
            body += event[1]
            if len(body) > settings.BODY_CHUNK:
                raise StreamError(ErrorCode.UPSTREAM_UNREACHABLE, "refusal body too large")
        elif kind == wire.END:
            return status, fields, body
