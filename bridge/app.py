"""Wires the feature handlers (streams, WebSocket, push) into a `Bridge` before it starts.

The one place that knows every feature; `bridge serve`, `bridge demo` and the tests call it.
"""

from __future__ import annotations

from .hub.broker import Broker, LocalBroker
from .routing.model import BrokerConfig
from .server.run import Bridge


def install(bridge: Bridge) -> None:
    bridge.extensions.append(_wire)


def _wire(bridge: Bridge) -> None:
    from .handlers.assets import AssetCache
    from .handlers.page import PageHandler
    from .handlers.stream import StreamHandler
    from .handlers.websocket import WebSocketHandler
    from .hub.hub import Hub

    router = bridge.router
    assert router is not None
    limits = bridge.config.limits
    hub = Hub(bridge.pool, limits=limits, broker=make_broker(bridge.config.broker))
    bridge.hub = hub
    websocket = WebSocketHandler(hub, bridge.pool, max_message=limits.max_ws_message)
    router.stream = StreamHandler(hub, websocket=websocket)
    page = PageHandler(router.proxy, AssetCache(bridge.pool), table=router.table)
    router.page = page
    router.pushed = page.serve_pushed


def make_broker(config: BrokerConfig | None) -> Broker:
    """`broker:` of routes.yaml: the in-process broker, or Redis (started: it logs whether
    Redis answers, and bridge serves either way)."""
    if config is None:
        return LocalBroker()
    from .upstream.redis import RedisBroker

    broker = RedisBroker(config)
    broker.start()
    return broker
