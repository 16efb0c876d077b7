"""Reverse proxy: one request passed through to the upstream app, streaming both ways.

An answer's notify header (`notify.header`, `Bridge-Notify` by default) is for bridge, never
the client: it is always stripped, and with `notify:` on its paths' streams poll now
(`bridge.hub.notify.Notifier.header`, given here as `notify`).

Backpressure runs end to end: the request body is read from the client only as fast as the
upstream accepts it, and the response body is read from the upstream only as fast as the
client (or its HTTP/2 window) accepts it. Nothing is buffered whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from .. import settings
from ..errors import ErrorCode, StreamError
from ..events import Headers
from ..routing.model import Upstream
from ..stream.exchange import Exchange
from ..upstream import UpstreamPool
from ..upstream.headers import forward_request_headers, response_headers

_NO_BODY_METHODS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})


class ProxyHandler:
    def __init__(
        self,
        pool: UpstreamPool,
        *,
        max_request_body: int,
        notify_header: str = settings.NOTIFY_HEADER,
        notify: Callable[[bytes], object] | None = None,
    ) -> None:
        self.pool = pool
        self.max_request_body = max_request_body
        self.notify_header = notify_header.lower().encode("ascii")
        self.notify = notify  # called with the header's value; None: notify is off

    async def __call__(
        self,
        exchange: Exchange,
        upstream: Upstream,
        target: str,
        *,
        decorate: Callable[[int, Headers], Awaitable[Headers]] | None = None,
    ) -> None:
        request = exchange.request
        headers = forward_request_headers(
            request.headers,
            client_ip=exchange.client_ip,
            scheme=request.scheme,
            authority=request.authority,
            http_version=request.http_version,
            upstream=upstream,
            request_id=exchange.access.request_id,
        )
        declared = _content_length(request.headers)
        if declared is not None and declared > self.max_request_body:
            raise StreamError(ErrorCode.PAYLOAD_TOO_LARGE)
        body: AsyncIterator[bytes] | None = None
        if not exchange.body_complete or declared:
            if _expects_continue(request.headers):
                # The client waits for this before sending the body (RFC 9110 §10.1.1).
                exchange.send_informational(100, [])
            body = self._request_body(exchange)
        headers = [(n, v) for n, v in headers if n != b"expect"]
        if body is None:
            headers = [(n, v) for n, v in headers if n != b"content-length"]
            if request.method not in _NO_BODY_METHODS:
                headers.append((b"content-length", b"0"))
        response = await self.pool.request(
            upstream, request.method, target, headers, body, content_length=declared
        )
        try:
            exchange.access.upstream_status = response.status
            headers = response_headers(response.headers, http_version=request.http_version)
            headers = self._take_notify(headers)
            if decorate is not None:
                headers = await decorate(response.status, headers)
            if not exchange.congested():
                # Most answers are small and came in one read: head, body and end go out
                # together, in one write. A congested client takes the path that waits.
                whole = response.whole_body()
                if whole is not None:
                    exchange.respond_now(response.status, headers, whole)
                    return
            exchange.start_response(response.status, headers)
            async for piece in response:
                await exchange.send_body(piece)
            await exchange.end()
        finally:
            response.close()

    def _take_notify(self, headers: Headers) -> Headers:
        name = self.notify_header
        if not any(n == name for n, _ in headers):
            return headers  # the common case: one pass, no copy
        notify = self.notify
        if notify is not None:
            for n, value in headers:
                if n == name:
                    notify(value)
        return [(n, v) for n, v in headers if n != name]

    async def _request_body(self, exchange: Exchange) -> AsyncIterator[bytes]:
        received = 0
        while True:
            piece = await exchange.receive()
            if not piece:
                return
            received += len(piece)
            if received > self.max_request_body:
                raise StreamError(ErrorCode.PAYLOAD_TOO_LARGE)
            yield piece


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                raise StreamError(ErrorCode.BAD_REQUEST, "bad Content-Length") from None
    return None


def _expects_continue(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(n == b"expect" and v.lower() == b"100-continue" for n, v in headers)
