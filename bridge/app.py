"""The composition root: the one place that knows every part and wires them together.

`build_app` makes the request side of a bridge from its config — the upstream pool, the hub,
the route table, every handler and the router over them — and `create_bridge` puts it behind
the listeners. `bridge serve`, `bridge demo`, the tests and the benchmarks all start here, so
no part is patched into another after construction.
"""

from __future__ import annotations

from dataclasses import dataclass

from .broker import Broker, LocalBroker
from .handlers.assets import AssetCache
from .handlers.page import PageHandler
from .handlers.proxy import ProxyHandler
from .handlers.router import Router
from .handlers.stream import StreamHandler
from .handlers.websocket import WebSocketHandler
from .hub.hub import Hub
from .routing.model import BrokerConfig, Config
from .routing.table import RouteTable
from .server.run import Bridge
from .upstream.client import UpstreamPool


@dataclass(frozen=True, slots=True)
class App:
    """Everything that answers requests, built for one config."""

    pool: UpstreamPool
    hub: Hub
    router: Router


def build_app(config: Config, pool: UpstreamPool | None = None, hub: Hub | None = None) -> App:
    """With `pool` and `hub` given (a reload), the new handlers share them: open upstream
    connections and live streams carry over; `Hub.reconfigure` sorts out the streams."""
    pool = pool or UpstreamPool()
    limits = config.limits
    hub = hub or Hub(pool, limits=limits, broker=make_broker(config.broker))
    table = RouteTable(config.routes)
    proxy = ProxyHandler(pool, max_request_body=limits.max_request_body)
    websocket = WebSocketHandler(hub, pool, max_message=limits.max_ws_message)
    page = PageHandler(proxy, AssetCache(pool), table=table)
    router = Router(
        config,
        table,
        proxy,
        stream=StreamHandler(hub, websocket=websocket),
        page=page,
        pushed=page.serve_pushed,
    )
    return App(pool=pool, hub=hub, router=router)


def create_bridge(config: Config) -> Bridge:
    app = build_app(config)

    def rebuild(new: Config) -> Router:
        return build_app(new, pool=app.pool, hub=app.hub).router

    return Bridge(config, pool=app.pool, hub=app.hub, handler=app.router, rebuild=rebuild)


def make_broker(config: BrokerConfig | None) -> Broker:
    """`broker:` of routes.yaml: the in-process broker, or Redis (started: it logs whether
    Redis answers, and bridge serves either way)."""
    if config is None:
        return LocalBroker()
    from .broker.redis import RedisBroker

    broker = RedisBroker(config)
    broker.start()
    return broker
