"""The admin listener: `/healthz`, `/metrics` (Prometheus text format) and `/streams` (JSON).

It runs the same connection code as the public listeners, with its own tiny handler, and is
meant for loopback or a private network only.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

from ..errors import ErrorCode, StreamError
from ..routing.model import Address
from .connection import ServerConnection
from .context import ServerContext
from .exchange import Exchange

if TYPE_CHECKING:
    from .run import Bridge


class AdminHandler:
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    async def __call__(self, exchange: Exchange) -> None:
        path = exchange.request.target.split("?", 1)[0]
        if exchange.request.method not in ("GET", "HEAD"):
            raise StreamError(ErrorCode.METHOD_NOT_ALLOWED)
        if path == "/healthz":
            body, kind = b"ok\n", b"text/plain; charset=utf-8"
        elif path == "/metrics":
            body, kind = self.metrics().encode(), b"text/plain; version=0.0.4; charset=utf-8"
        elif path == "/streams":
            body = json.dumps(self.bridge.hub.stats(), indent=2).encode() + b"\n"
            kind = b"application/json"
        else:
            raise StreamError(ErrorCode.NOT_FOUND)
        headers = [
            (b"content-type", kind),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await exchange.respond(200, headers, body)

    def metrics(self) -> str:
        ctx = self.bridge.context
        lines = []

        def gauge(name: str, value: float, help_text: str, kind: str = "gauge") -> None:
            lines.append(f"# HELP bridge_{name} {help_text}")
            lines.append(f"# TYPE bridge_{name} {kind}")
            lines.append(f"bridge_{name} {value}")

        if ctx is not None:
            gauge("connections", len(ctx.connections), "Open client connections.")
            gauge("requests_total", ctx.requests_total, "Requests started.", "counter")
            gauge(
                "rejected_connections_total",
                ctx.rejected_connections,
                "Connections refused over max_connections.",
                "counter",
            )
        channels = self.bridge.hub.stats()
        gauge("stream_channels", len(channels), "Active stream channels.")
        subscribers = sum(int(c.get("subscribers", 0)) for c in channels)
        gauge("stream_subscribers", subscribers, "Connected stream subscribers.")
        return "\n".join(lines) + "\n"


async def start_admin(bridge: Bridge, address: Address) -> tuple[asyncio.AbstractServer, int]:
    ctx = ServerContext(limits=bridge.config.limits, handler=AdminHandler(bridge), access_log=None)
    host, port = address
    server = await asyncio.get_running_loop().create_server(
        lambda: ServerConnection(ctx, scheme="http"), host=host or None, port=port
    )
    return server, server.sockets[0].getsockname()[1]
