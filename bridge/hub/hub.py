"""The `Hub`: every live channel of the process, keyed by stream key, and the subscriber limits.

A stream key is a digest of what the upstream sees (origin, filled-in poll target, values of
the route's `vary` headers; `key.stream_key`): subscribers with the same key share one
channel and so one upstream poller (docs/configuration.md "One upstream poll per stream") — in this
process, and through a cluster broker in every process, which all compute the same key. The
hub is what handlers talk to: `subscribe` for SSE and WebSocket subscribers, `latest` and
`wait_change` for plain GETs on a stream path.

Keys come from the client, so the hub bounds what they can make bridge do upstream: at most
`limits.max_channels_per_route` live channels per route (a new key beyond that is refused
with 503 + Retry-After; existing keys are still served), and a channel that only plain GETs
started stops `settings.GET_LINGER` after the last of them, not `STREAM_LINGER`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

from .. import settings
from ..broker import Broker, LocalBroker
from ..errors import ErrorCode, StreamError
from ..events import Headers
from ..routing.model import Route, StreamSpec
from ..routing.paths import substitute
from ..settings import Limits
from .authorize import Authorizer, Grant
from .channel import Channel
from .clock import Clock, RealClock
from .context import Epochs, Fetcher, HubContext
from .counters import RouteTotals
from .firstpoll import FirstPolls
from .item import Format, Item
from .key import ChannelSpec, stream_key, vary_headers
from .subscription import Sink, Subscription
from .waiters import Held, NoSnapshot


class Hub:
    """Every live channel of the process; the `ChannelHost` of each."""

    def __init__(
        self,
        fetcher: Fetcher,
        *,
        limits: Limits,
        clock: Clock | None = None,
        logger: logging.Logger | None = None,
        rng: random.Random | None = None,
        broker: Broker | None = None,
    ) -> None:
        clock = clock or RealClock()
        self.context = HubContext(
            fetcher=fetcher,
            clock=clock,
            limits=limits,
            broker=broker or LocalBroker(),
            log=logger or logging.getLogger("bridge.hub"),
            rng=rng or random.Random(),
            epoch=Epochs(clock).next,
        )
        self.channels: dict[str, Channel] = {}
        self.subscriber_count = 0  # across all channels, kept up to date in O(1)
        self.held = 0  # long-poll GETs parked on channels; they count against max_subscribers
        # Counters of stopped channels, by route path, so /metrics never goes down (counters.py).
        self.retired: dict[str, RouteTotals] = {}
        self._per_route: dict[int, int] = {}  # live channels per route index
        # Channels only plain GETs have asked for: when the brief linger after the last GET
        # ends (0.0 while one is still waiting), and the task that ends it.
        self._unsubscribed: dict[Channel, float] = {}
        self._brief_tasks: dict[Channel, asyncio.Task[None]] = {}
        # Who may subscribe (`authorize:`), and the gate on new `vary` values.
        self.authorizer = Authorizer(self.context)
        self.first_polls = FirstPolls(self.context)

    # --- channels -------------------------------------------------------------------------------

    @staticmethod
    def key(route: Route, params: dict[str, str], vary: Headers) -> str:
        spec = route.stream
        if spec is None:
            raise ValueError(f"route {route.path} is not a stream")
        return stream_key(spec, substitute(spec.poll, params), vary)

    def channel(self, route: Route, params: dict[str, str], headers: Headers) -> Channel:
        """The live channel for this request's stream key, created if needed (not started)."""
        spec = route.stream
        if spec is None:
            raise ValueError(f"route {route.path} is not a stream")
        return self._channel(route, params, vary_headers(spec, headers))

    def _channel(self, route: Route, params: dict[str, str], vary: Headers) -> Channel:
        key = self.key(route, params, vary)
        channel = self.channels.get(key)
        if channel is None:
            live = self._per_route.get(route.index, 0)
            if live >= self.context.limits.max_channels_per_route:
                raise StreamError(
                    ErrorCode.OVERLOADED, "too many live streams on this route", self._retry()
                )
            self._per_route[route.index] = live + 1
            channel = Channel(ChannelSpec(route, dict(params), vary), self.context, self)
            self.channels[key] = channel
        return channel

    def channel_stopped(self, channel: Channel) -> None:
        if self.channels.get(channel.key) is channel:
            del self.channels[channel.key]
            index = channel.route.index
            self._per_route[index] = self._per_route.get(index, 1) - 1
        self._unsubscribed.pop(channel, None)
        self.retired.setdefault(channel.route.path, RouteTotals()).add(channel)

    def _retry(self) -> list[tuple[bytes, bytes]]:
        retry = self.context.rng.randint(*settings.OVERLOADED_RETRY_AFTER)
        return [(b"retry-after", b"%d" % retry)]

    def subscriber_left(self) -> None:
        self.subscriber_count -= 1

    # --- handlers' interface --------------------------------------------------------------------

    async def admit(self, route: Route, params: dict[str, str], headers: Headers) -> Grant | None:
        """Before a subscriber or a plain GET is taken on: the stream's `authorize` check
        (authorize.py), then, for a `vary` value no live channel has, its first poll
        (firstpoll.py). Raises `authorize.Refused` with the answer for the requester; returns
        the `Grant` to watch for rechecks (None without `authorize`)."""
        grant = await self.authorizer.admit(route, params, headers)
        spec = route.stream
        if spec is not None and spec.vary:
            vary = vary_headers(spec, headers)
            key = self.key(route, params, vary)
            if key not in self.channels:
                # First polls count against the route's channel cap: past it, no request.
                starting = self._per_route.get(route.index, 0)
                starting += self.first_polls.pending(route.index)
                if starting >= self.context.limits.max_channels_per_route:
                    raise StreamError(
                        ErrorCode.OVERLOADED, "too many live streams on this route", self._retry()
                    )
                await self.first_polls.probe(route, params, vary, key, self._retry())
        return grant

    def subscribe(
        self,
        route: Route,
        params: dict[str, str],
        headers: Headers,
        sink: Sink,
        fmt: Format,
        last_event_id: str | None,
    ) -> Subscription:
        """A new subscriber: the current state (or what it missed) is written to `sink` at once.

        Raises `StreamError(OVERLOADED)` with a `Retry-After` past `max_subscribers` or
        `max_subscribers_per_stream`; a refused subscriber starts no poller.
        """
        spec = route.stream
        if spec is None:
            raise ValueError(f"route {route.path} is not a stream")
        limits = self.context.limits
        vary = vary_headers(spec, headers)
        existing = self.channels.get(self.key(route, params, vary))
        if self.subscriber_count + self.held >= limits.max_subscribers or (
            existing is not None and len(existing.subscribers) >= limits.max_subscribers_per_stream
        ):
            raise StreamError(ErrorCode.OVERLOADED, "too many subscribers", self._retry())
        channel = existing or self._channel(route, params, vary)
        self._unsubscribed.pop(channel, None)  # a subscriber: the channel lingers as usual
        subscription = channel.subscribe(sink, fmt, last_event_id)
        self.subscriber_count += 1
        return subscription

    async def latest(
        self, route: Route, params: dict[str, str], headers: Headers, *, timeout: float
    ) -> Item:
        """The current snapshot for a plain GET (`Item.state` is the whole body). With no
        state yet, starts the channel and waits for its first answer (at most `timeout`;
        `NoSnapshot` if it failed or did not come). A channel no subscriber has joined then
        stops `settings.GET_LINGER` after the last such GET; a subscribed one lingers as usual."""
        channel = self._for_get(route, params, headers)
        try:
            item = await channel.wait_ready(timeout)
        finally:
            self._linger_briefly(channel)
        if item is None:
            raise NoSnapshot(channel.failure, timeout)
        return item

    async def first_outcome(
        self, route: Route, params: dict[str, str], headers: Headers, *, timeout: float
    ) -> None:
        """Before a new subscriber of a stream with no state yet: wait (at most `timeout`) for
        the first poll's outcome, and raise `NoSnapshot` if the upstream refused it (a 4xx,
        docs/configuration.md "Upstream trouble"). Any other outcome lets it in."""
        spec = route.stream
        if spec is None:
            raise ValueError(f"route {route.path} is not a stream")
        existing = self.channels.get(self.key(route, params, vary_headers(spec, headers)))
        if existing is not None and existing.latest is not None:
            return  # the usual case, and the cheapest
        channel = self._for_get(route, params, headers)
        try:
            await channel.wait_ready(timeout)
        finally:
            self._linger_briefly(channel)
        failure = channel.failure
        if channel.latest is None and failure is not None and failure.refusal:
            raise NoSnapshot(failure, timeout)

    def hold(
        self,
        route: Route,
        params: dict[str, str],
        headers: Headers,
        since: str,
        answer: Callable[[Item | None], None],
        *,
        timeout: float,
    ) -> Held | None:
        """Park a long-poll GET whose `since` the stream's cursor has not passed (see
        waiters.py); None when it has (answer at once). Held GETs count against
        `max_subscribers`: past it, `StreamError(OVERLOADED)` with a Retry-After."""
        channel = self._for_get(route, params, headers)
        if channel.cursor_passed(since) or channel.stopped:
            self._linger_briefly(channel)
            return None
        if self.subscriber_count + self.held >= self.context.limits.max_subscribers:
            self._linger_briefly(channel)
            raise StreamError(ErrorCode.OVERLOADED, "too many waiting requests", self._retry())

        def over() -> None:
            self.held -= 1
            self._linger_briefly(channel)

        self.held += 1
        return channel.hold(since, timeout, answer, over)

    async def wait_change(
        self,
        route: Route,
        params: dict[str, str],
        headers: Headers,
        *,
        after: str | None,
        timeout: float,
    ) -> Item | None:
        """`Prefer: wait=N`: the snapshot once its id differs from `after`; None on timeout."""
        channel = self._for_get(route, params, headers)
        try:
            return await channel.wait_change(after, timeout)
        finally:
            self._linger_briefly(channel)

    def _for_get(self, route: Route, params: dict[str, str], headers: Headers) -> Channel:
        spec = route.stream
        if spec is None:
            raise ValueError(f"route {route.path} is not a stream")
        vary = vary_headers(spec, headers)
        channel = self.channels.get(self.key(route, params, vary))
        if channel is None:
            channel = self._channel(route, params, vary)
            self._unsubscribed[channel] = 0.0
        elif channel in self._unsubscribed:
            self._unsubscribed[channel] = 0.0  # a GET in progress: no brief stop meanwhile
        channel.touch()
        return channel

    def _linger_briefly(self, channel: Channel) -> None:
        """A plain GET on a channel no subscriber has joined is over: stop it soon."""
        if channel not in self._unsubscribed or channel.stopped:
            return
        self._unsubscribed[channel] = self.context.clock.now() + settings.GET_LINGER
        if channel not in self._brief_tasks:
            self._brief_tasks[channel] = asyncio.create_task(
                self._brief_linger(channel), name=f"brief linger {channel.name}"
            )

    async def _brief_linger(self, channel: Channel) -> None:
        clock = self.context.clock
        try:
            while not channel.stopped:
                deadline = self._unsubscribed.get(channel)
                if not deadline:
                    return  # a subscriber came (normal linger), or a GET is still waiting
                remaining = deadline - clock.now()
                if remaining > 0:
                    await clock.sleep(remaining)
                    continue
                if not channel.subscribers and not channel.waiters.count:
                    channel.stop()
                return
        finally:
            self._brief_tasks.pop(channel, None)

    def stats(self) -> list[dict[str, Any]]:
        """Per channel: key, subscribers, last id, polls, errors, state (admin /streams)."""
        return [channel.stats() for channel in self.channels.values()]

    def reconfigure(self, routes: Sequence[Route], limits: Limits) -> tuple[int, int, int]:
        """A reload's new route table: (channels kept, restarted, ended).

        A live channel whose route (by its path template) is still there with the same
        `stream:` block keeps everything — poller, history, subscribers — and only learns the
        new `Route` (its position may have moved, so it is re-keyed). One whose `stream:`
        changed in how it polls (upstream, `poll`, `every`/`longpoll`, `emit`, `event`,
        `history`, `heartbeat`, `send`, `origins`) keeps its subscribers and restarts its
        poller (`Channel.restart`). Any other (the route is gone, is no longer a stream, or its
        `vary`, `protocols` or `ws_format` changed — what its subscribers are) ends its
        subscribers with a reconnect hint and stops; they come back at once on the new table
        and resume by Last-Event-ID (the history went with the old channel, so they get the
        current state as `reset`). New subscribers get the new limits.
        """
        streams = {route.path: route for route in routes if route.stream is not None}
        keep: dict[str, Channel] = {}
        gone: list[Channel] = []
        restarted = 0
        for channel in self.channels.values():
            new = streams.get(channel.route.path)
            old = channel.route.stream
            if (
                new is None
                or new.stream is None
                or old is None
                or not _same_audience(old, new.stream)
            ):
                gone.append(channel)
                continue
            if dataclasses.replace(new.stream, authorize=old.authorize) == old:
                channel.relocate(new)  # the same stream (who may see it is authorize.py's)
            else:
                channel.restart(new)
                restarted += 1
            # Built afresh: two routes that swapped places would collide re-keyed in place.
            keep[channel.key] = channel
        self.channels.clear()
        self.channels.update(keep)
        # The per-route channel cap counts by route position, which a reload may move.
        self._per_route.clear()
        for channel in keep.values():
            index = channel.route.index
            self._per_route[index] = self._per_route.get(index, 0) + 1
        for channel in gone:
            for subscriber in tuple(channel.subscribers):
                subscriber.end_for_reload()
            channel.stop()  # channel_stopped finds it no longer listed; its counts are folded
        self.context = dataclasses.replace(self.context, limits=limits)
        self.authorizer.reconfigure(routes, self.context)
        self.first_polls.context = self.context
        return len(keep) - restarted, restarted, len(gone)

    async def close(self) -> None:
        """Stop every channel, ending their subscribers (server shutdown)."""
        channels = list(self.channels.values())
        tasks = [task for channel in channels for task in channel.tasks()]
        for task in self._brief_tasks.values():
            task.cancel()
        tasks += self._brief_tasks.values()
        for channel in channels:
            channel.stop()
        self.channels.clear()
        self._per_route.clear()
        self._unsubscribed.clear()
        if tasks:
            await asyncio.wait(tasks, timeout=settings.HUB_CLOSE_WAIT)
        await self.authorizer.close()
        await self.context.broker.close()


def _same_audience(old: StreamSpec, new: StreamSpec) -> bool:
    """Whether a channel's subscribers are still subscribers of the new block: the same
    stream key (`vary`), an accepted protocol, the same WebSocket message format, and, when the new
    block asks who may subscribe, subscribers that were asked (they reconnect to be checked)."""
    if new.authorize is not None and old.authorize is None:
        return False
    return (old.vary, old.protocols, old.ws_format) == (new.vary, new.protocols, new.ws_format)
