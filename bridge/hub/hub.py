"""The `Hub`: every live channel of the process, keyed by stream key, and its limits.

A stream key is (route, path parameters, values of the route's `vary` headers): subscribers
with the same key share one channel and so one upstream poller.
"""

from __future__ import annotations

import logging
from typing import Any

from ..errors import ErrorCode, StreamError
from ..events import Headers
from ..routing.model import Route
from ..settings import Limits
from .channel import Channel, Fetcher
from .clock import Clock, RealClock
from .item import Format, Item
from .subscription import Sink, Subscription

log = logging.getLogger("bridge.hub")


class Hub:
    def __init__(self, fetcher: Fetcher, *, limits: Limits, clock: Clock | None = None) -> None:
        self.fetcher = fetcher
        self.limits = limits
        self.clock = clock or RealClock()
        self.channels: dict[tuple[Any, ...], Channel] = {}

    @property
    def subscribers(self) -> int:
        return sum(len(c.subscribers) for c in self.channels.values())

    def channel(self, route: Route, params: dict[str, str], headers: Headers) -> Channel:
        spec = route.stream
        assert spec is not None
        vary: Headers = []
        for name in spec.vary:
            vary += [(n, v) for n, v in headers if n == name.encode()]
        key = (route.index, tuple(sorted(params.items())), tuple(vary))
        channel = self.channels.get(key)
        if channel is None or channel.stopped:
            channel = Channel(
                key=key,
                route=route,
                params=params,
                vary=vary,
                fetcher=self.fetcher,
                clock=self.clock,
                limits=self.limits,
                on_idle=self._forget,
            )
            self.channels[key] = channel
        return channel

    def _forget(self, channel: Channel) -> None:
        if self.channels.get(channel.key) is channel:
            del self.channels[channel.key]

    def subscribe(
        self,
        route: Route,
        params: dict[str, str],
        headers: Headers,
        sink: Sink,
        fmt: Format,
        last_event_id: str | None,
    ) -> Subscription:
        channel = self.channel(route, params, headers)
        limits = self.limits
        if self.subscribers >= limits.max_subscribers or (
            len(channel.subscribers) >= limits.max_subscribers_per_stream
        ):
            if not channel.subscribers:
                channel.touch()  # it was just created: let it linger and go
            raise StreamError(
                ErrorCode.OVERLOADED, "too many subscribers", [(b"retry-after", b"5")]
            )
        return channel.subscribe(sink, fmt, last_event_id)

    async def latest(
        self, route: Route, params: dict[str, str], headers: Headers, *, timeout: float
    ) -> Item | None:
        channel = self.channel(route, params, headers)
        channel.touch()
        if channel.latest is None:
            await channel.wait_change(None, timeout)
        return channel.latest

    async def wait_change(
        self,
        route: Route,
        params: dict[str, str],
        headers: Headers,
        *,
        after: str | None,
        timeout: float,
    ) -> Item | None:
        channel = self.channel(route, params, headers)
        channel.touch()
        return await channel.wait_change(after, timeout)

    def stats(self) -> list[dict[str, Any]]:
        return [c.stats() for c in self.channels.values()]

    async def close(self) -> None:
        for channel in list(self.channels.values()):
            channel.stop()
        self.channels.clear()
