"""The composition root: the one place that knows every part and wires them together.

`build_app` makes the request side of a bridge from its config — the upstream pool, the hub,
the route table, every handler and the router over them; `AppSite` keeps it across reloads as
the `Site` a `Bridge` serves; and `create_bridge` puts it behind the listeners, with the
operations package (`bridge.ops`: admin, metrics) on the admin listener. `bridge serve`,
`bridge demo`, the tests and the benchmarks all start here, so the server never imports a
handler or the operations code that reads it.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import settings
from .broker import Broker, LocalBroker
from .handlers.assets import AssetCache
from .handlers.page import PageHandler
from .handlers.proxy import ProxyHandler
from .handlers.router import Router
from .handlers.stream import StreamHandler
from .handlers.websocket import WebSocketHandler
from .hub.hub import Hub
from .hub.notify import Notifier
from .ops.admin import AdminHandler
from .routing.model import BrokerConfig, Config
from .routing.table import RouteTable
from .server.run import Bridge
from .stream.host import Handler
from .upstream import UpstreamPool


@dataclass(frozen=True, slots=True)
class App:
    """Everything that answers requests, built for one config."""

    pool: UpstreamPool
    hub: Hub
    router: Router
    page: PageHandler
    notifier: Notifier


def build_app(
    config: Config,
    pool: UpstreamPool | None = None,
    hub: Hub | None = None,
    *,
    https_port: int | None = None,
    notifier: Notifier | None = None,
) -> App:
    """With `pool`, `hub` and `notifier` given (a reload), the new handlers share them: open upstream
    connections and live streams carry over; `Hub.reconfigure` sorts out the streams.
    `https_port`: where the router redirects clear-text requests, once it is bound."""
    pool = pool or UpstreamPool()
    limits = config.limits
    hub = hub or Hub(pool, limits=limits, broker=make_broker(config.broker))
    table = RouteTable(config.routes)
    if notifier is None:
        notifier = Notifier(hub, table)
    notifier.table = table
    notify = config.notify
    proxy = ProxyHandler(
        pool,
        max_request_body=limits.max_request_body,
        notify_header=notify.header if notify is not None else settings.NOTIFY_HEADER,
        notify=notifier.header if notify is not None else None,
    )
    websocket = WebSocketHandler(hub, pool, max_message=limits.max_ws_message)
    page = PageHandler(proxy, AssetCache(pool), table=table)
    router = Router(
        config,
        table,
        proxy,
        stream=StreamHandler(hub, websocket=websocket),
        page=page,
        pushed=page.serve_pushed,
        https_port=https_port,
    )
    return App(pool=pool, hub=hub, router=router, page=page, notifier=notifier)


class AppSite:
    """The `Site` (server/run.py) of one bridge: its current `App`, rebuilt on a reload over
    the same pool and hub, and the push counts of the page handlers a reload retired."""

    def __init__(self, config: Config) -> None:
        self.app = build_app(config)
        self._retired_pushes = (0, 0)  # (promised, declined) of the replaced page handlers

    @property
    def hub(self) -> Hub:
        return self.app.hub

    @property
    def notifier(self) -> Notifier:
        return self.app.notifier

    @property
    def handler(self) -> Handler:
        return self.app.router

    def listening(self, https_port: int | None) -> None:
        # The router was built before the listeners were bound, so before the port was known.
        self.app.router.https_port = https_port

    def reload(
        self, config: Config, https_port: int | None
    ) -> tuple[Handler, tuple[int, int, int]]:
        old = self.app
        new = build_app(
            config, pool=old.pool, hub=old.hub, https_port=https_port, notifier=old.notifier
        )
        # Prometheus counters must not drop when the new page handler starts at zero.
        self._retired_pushes = self.pushes()
        self.app = new
        return new.router, new.hub.reconfigure(config.routes, config.limits)

    def pushes(self) -> tuple[int, int]:
        """(promised, declined) server pushes since start, across reloads."""
        promised, declined = self._retired_pushes
        page = self.app.page
        return promised + page.promised, declined + page.declined

    async def close_streams(self) -> None:
        await self.app.notifier.close()
        await self.app.hub.close()

    async def close(self) -> None:
        await self.app.pool.close()


def create_bridge(config: Config) -> Bridge:
    site = AppSite(config)
    return Bridge(config, site=site, admin=lambda bridge: AdminHandler(bridge, site))


def make_broker(config: BrokerConfig | None) -> Broker:
    """`broker:` of routes.yaml: the in-process broker, or Redis (started: it logs whether
    Redis answers, and bridge serves either way)."""
    if config is None:
        return LocalBroker()
    from .broker.redis import RedisBroker

    broker = RedisBroker(config)
    broker.start()
    return broker
