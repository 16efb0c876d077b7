"""`Leadership`: this process's part in polling one stream key.

A started channel asks the broker for the key's lease and runs a `Poller` while it holds it
(with `LocalBroker`, at once and for good; with Redis, while no other process leads the key).
A new poller continues from the channel's latest state (`Seed`), so ids keep growing and
nothing is published twice. A notify (`bridge.hub.notify`) reaches the poller through `poke`
and `inject` here, and only where this process leads the key. The poller publishes through the broker, which delivers every
record back to each process's channel for the key, this one's included: leadership never
touches the channel's history or subscribers.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from .. import settings
from ..broker import Listener
from .context import HubContext
from .item import Item
from .key import ChannelSpec
from .poller import Poller, Seed


class Led(Listener, Protocol):
    """What leadership needs of its channel (implemented by `Channel`)."""

    spec: ChannelSpec
    latest: Item | None

    def polled(self, seconds: float, status: int, retry_in: float | None) -> None:
        """The poller's figures after each attempt (`ChannelCounters.polled`)."""


class Leadership:
    __slots__ = (
        "_channel",
        "_context",
        "_notify_polls_before",
        "_polls_before",
        "notified_at",
        "poller",
    )

    def __init__(self, channel: Led, context: HubContext) -> None:
        self._channel = channel
        self._context = context
        self.poller: Poller | None = None  # while this process leads the key
        self._polls_before = 0  # polls of earlier pollers of this channel
        self._notify_polls_before = 0
        self.notified_at: float | None = None  # wall clock: the last notify for this channel

    @property
    def polls(self) -> int:
        poller = self.poller
        return self._polls_before + (poller.polls if poller is not None else 0)

    @property
    def notify_polls(self) -> int:
        """Polls a notify brought forward, by this process's pollers of the key."""
        poller = self.poller
        return self._notify_polls_before + (poller.notify_polls if poller is not None else 0)

    def poke(self) -> bool:
        """A notify for this channel: poll soon if this process leads the key (True)."""
        self.notified_at = self._context.clock.wall()
        poller = self.poller
        if poller is None:
            return False  # another process polls (it got the notice too), or none yet
        poller.poke()
        return True

    async def inject(self, body: bytes, content_type: str) -> bool:
        """A notify's `data` as the next state, if this process leads the key."""
        self.notified_at = self._context.clock.wall()
        poller = self.poller
        if poller is None:
            return False
        return await poller.inject(body, content_type)

    async def run(self) -> None:
        """Poll whenever this process holds the key's lease (with one process: always)."""
        channel, context = self._channel, self._context
        while True:
            try:
                lease = await context.broker.lease(channel.spec.key, channel)
                await lease.hold(self._poll)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end the stream's polling for good
                context.log.exception(
                    "stream %s: leadership failed; trying again", channel.spec.name
                )
                await context.clock.sleep(settings.BACKOFF_BASE)

    async def _poll(self) -> None:
        channel = self._channel
        latest = channel.latest
        seed = Seed(latest.id, latest.state) if latest is not None and latest.has_state else None
        poller = Poller(self._context, channel.spec, seed=seed, observe=channel.polled)
        self.poller = poller
        try:
            await poller.run()
        finally:
            self._polls_before += poller.polls
            self._notify_polls_before += poller.notify_polls
            self.poller = None
