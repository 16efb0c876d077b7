"""Wires the optional features (streams, push, WebSocket) into a `Bridge` before it starts."""

from __future__ import annotations

from .server.run import Bridge


def install(bridge: Bridge) -> None:
    """Attach every feature handler to the router; the one place that knows them all."""
