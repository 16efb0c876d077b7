"""The request entry point: normalise the path, pick the route, hand over to a handler.

Order of decisions: clear-text redirect, path normalisation (400 on a path that climbs above
`/`), route match on the path and a route's query template (404), then stream routes go to the
stream handlers and everything else to the page handler (push + early hints) or straight to
the proxy. On a stream route, a query parameter the stream does not understand
(`bridge.routing.query`) sends a plain GET or HEAD through to the stream's upstream unchanged
and refuses a subscription with 400 naming it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ..errorpage import error_headers
from ..errors import ErrorCode, StreamError
from ..routing.model import Config, Route
from ..routing.paths import PathError, normalize_path, split_target
from ..routing.query import stray_query
from ..routing.table import RouteTable
from ..stream.exchange import Exchange
from .proxy import ProxyHandler
from .stream import is_subscription
from .util import is_websocket
from .wsproxy import proxy_websocket

StreamHandler = Callable[[Exchange, Route, dict[str, str], str, str], Awaitable[None]]
PageHandler = Callable[[Exchange, Route, str], Awaitable[None]]
PushedHandler = Callable[[Exchange, Route, str], Awaitable[None]]


class Router:
    def __init__(
        self,
        config: Config,
        table: RouteTable,
        proxy: ProxyHandler,
        *,
        stream: StreamHandler | None = None,
        page: PageHandler | None = None,
        pushed: PushedHandler | None = None,
        https_port: int | None = None,
    ) -> None:
        self.config = config
        self.table = table
        self.proxy = proxy
        self.stream = stream
        self.page = page
        self.pushed = pushed
        self.https_port = https_port
        self.redirect_clear_text = config.listen.http_mode == "redirect" and (
            config.listen.https is not None
        )

    async def __call__(self, exchange: Exchange) -> None:
        request = exchange.request
        if request.scheme == "http" and self.redirect_clear_text:
            await self._redirect(exchange)
            return
        try:
            path, query = split_target(request.target)
            path = normalize_path(path)
        except PathError as exc:
            raise StreamError(ErrorCode.BAD_REQUEST, str(exc)) from None
        found = self.table.match(path, query)
        if found is None:
            raise StreamError(ErrorCode.NOT_FOUND)
        route, params = found
        exchange.access.route = route.path
        if request.pushed:
            # A promised stream is only ever a page asset; where that is not (or not any
            # more) this route's business, a reset tells the client to fetch it itself.
            if self.pushed is None:
                exchange.reset(ErrorCode.CANCELLED)
            else:
                await self.pushed(exchange, route, path + query)
            return
        if route.stream is not None and self.stream is not None:
            stray = stray_query(route, query)
            if stray is not None and is_subscription(exchange, route.stream):
                raise StreamError(
                    ErrorCode.BAD_REQUEST,
                    f'query parameter "{stray}" is not one this stream reads or ignores',
                )
            if stray is not None and request.method in ("GET", "HEAD"):
                # The app answers what bridge would only guess at: as before bridge.
                await self.proxy(exchange, route.stream.upstream, path + query)
                return
            await self.stream(exchange, route, params, path, query)
            return
        if route.upstream is None:
            raise StreamError(ErrorCode.NOT_FOUND)
        if is_websocket(exchange):
            await proxy_websocket(exchange, self.proxy.pool, route.upstream, path + query)
            return
        if request.method == "CONNECT":
            raise StreamError(ErrorCode.METHOD_NOT_ALLOWED, "CONNECT is not proxied")
        if (route.push or route.push_auto) and self.page is not None:
            await self.page(exchange, route, path + query)
            return
        await self.proxy(exchange, route.upstream, path + query)

    async def _redirect(self, exchange: Exchange) -> None:
        request = exchange.request
        host = (
            request.authority.rsplit(":", 1)[0]
            if not request.authority.endswith("]")
            else request.authority
        )
        if not host:
            raise StreamError(ErrorCode.BAD_REQUEST, "no Host header")
        port = self.https_port
        location = f"https://{host}{'' if port in (None, 443) else f':{port}'}{request.target}"
        body = f"moved to {location}\n".encode()
        await exchange.respond(301, [(b"location", location.encode()), *error_headers(body)], body)
