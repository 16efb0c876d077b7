"""Notify: the app says "this changed", and the stream's leader polls now instead of at its
next interval, or takes the app's own value as the next state. Polling stays the safety net.

A notify names a request path (`/prices/ACME`: every live channel that path reaches, all its
`vary` values) or a route template (`/prices/{symbol}`: every live channel of the route). Two
inputs reach the `Notifier`: `POST /notify` on the admin listener (`bridge.ops.notify`, which
may also carry `data`) and a response header on any proxied answer (`header`, from
`bridge.handlers.proxy`). Either way the notifier hands a `Notice` to the broker, which gives
it to every process (this one at once; others through Redis): each process pokes the channels
it has of that route, and a channel's `Leadership` passes the poke on to its poller only where
this process leads the key. So a cluster still polls each stream once, and a follower's
subscribers get the change the usual way, from the leader's publish. What a poke costs the
upstream is bounded in the poller (`Poller.poke`: coalesced, `NOTIFY_MIN_GAP` apart).

The answer's channel count is this process's: with a cluster broker another process may serve
channels this one has none of, so there a path of a stream route is sent on even when none
is live here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from .. import settings
from ..broker import LocalBroker, Notice
from ..routing.model import Route
from ..routing.paths import PathError, normalize_path
from ..routing.table import RouteTable

if TYPE_CHECKING:
    from .channel import Channel
    from .hub import Hub

log = logging.getLogger("bridge.notify")

SOURCES = ("endpoint", "header")
# What became of a notify: the first three are answers of the endpoint (202, 404, 409); the
# header has only the first two (nothing to answer).
OUTCOMES = (
    "accepted",
    "not_found",
    "conflict",
    "unauthorized",
    "bad_request",
    "too_large",
    "dropped",
)

Params = tuple[tuple[str, str], ...]


class NotifyTally:
    """Notifies by (source, outcome), for /metrics; plain ints, kept across reloads."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str], int] = {}

    def count(self, source: str, outcome: str) -> None:
        key = (source, outcome)
        self.counts[key] = self.counts.get(key, 0) + 1


class Notifier:
    """The notify input of one process: built once over the hub, told each new route table."""

    def __init__(self, hub: Hub, table: RouteTable) -> None:
        self.hub = hub
        self.table = table
        self.tally = NotifyTally()
        self._applying: set[asyncio.Task[bool]] = set()  # `data` being made a state here
        hub.context.broker.on_notice(self.received)

    @property
    def clustered(self) -> bool:
        """Whether other processes may serve channels this one has none of."""
        return not isinstance(self.hub.context.broker, LocalBroker)

    # --- what a notify names --------------------------------------------------------------------

    def resolve(self, path: str) -> tuple[Route, dict[str, str]] | None:
        """The stream route a request path reaches, with its parameters; None if none does (a
        query is ignored: routes match on the path)."""
        try:
            matched = self.table.match(normalize_path(path.partition("?")[0]))
        except PathError:
            return None
        if matched is None or matched[0].stream is None:
            return None
        return matched

    def route(self, template: str) -> Route | None:
        """The stream route written as `template`."""
        for route in self.table.routes:
            if route.path == template and route.stream is not None:
                return route
        return None

    def channels(self, route: str, params: dict[str, str] | None) -> Iterator[Channel]:
        """This process's live channels of the route template `route` (with `params`: only
        those of that path, every `vary` value of it)."""
        for channel in list(self.hub.channels.values()):
            if channel.stopped or channel.route.path != route:
                continue
            if params is None or channel.spec.params == params:
                yield channel

    # --- sending --------------------------------------------------------------------------------

    def poll(self, route: Route, params: dict[str, str] | None) -> int:
        """Every channel of `route` (and `params`) polls now, on whichever process leads it;
        the number of such channels here."""
        count = sum(1 for _ in self.channels(route.path, params))
        if count or self.clustered:
            self._send(Notice(route.path, _frozen(params)))
        return count

    def publish(self, route: Route, params: dict[str, str], data: bytes, content_type: str) -> int:
        """`data` becomes the next state of the channel of that path (a route without `vary`:
        one channel), wherever it is led; the number of such channels here."""
        count = sum(1 for _ in self.channels(route.path, params))
        if count or self.clustered:
            self._send(Notice(route.path, _frozen(params), data, content_type))
        return count

    def header(self, value: bytes) -> int:
        """A `Bridge-Notify: /a, /b` response header: each path of a stream route polls now
        (at most `NOTIFY_MAX_PATHS`); the number of channels here."""
        total = 0
        matched = False
        text = value.decode("latin-1")
        for path in [p.strip() for p in text.split(",")][: settings.NOTIFY_MAX_PATHS]:
            found = self.resolve(path) if path.startswith("/") else None
            if found is not None:
                matched = True
                total += self.poll(*found)
        self.tally.count("header", "accepted" if matched else "not_found")
        return total

    def _send(self, notice: Notice) -> None:
        if not self.hub.context.broker.notify(notice):
            log.warning("notify for %s dropped: too many notices in flight", notice.route)

    # --- receiving (every process, the sender's included) ---------------------------------------

    def received(self, notice: Notice) -> None:
        params = dict(notice.params) if notice.params is not None else None
        for channel in self.channels(notice.route, params):
            if notice.data is None:
                channel.leadership.poke()
            elif len(self._applying) < settings.NOTIFY_MAX_PENDING:
                task = asyncio.create_task(
                    self._apply(channel, notice.data, notice.content_type),
                    name=f"notify data {channel.name}",
                )
                self._applying.add(task)
                task.add_done_callback(self._applying.discard)
            else:
                log.warning("notify data for %s dropped: too many in flight", channel.name)

    async def _apply(self, channel: Channel, data: bytes, content_type: str) -> bool:
        try:
            return await asyncio.wait_for(
                channel.leadership.inject(data, content_type), settings.NOTIFY_DATA_WAIT
            )
        except TimeoutError:
            log.warning(
                "notify data for %s not applied within %ss", channel.name, settings.NOTIFY_DATA_WAIT
            )
            return False

    async def close(self) -> None:
        for task in list(self._applying):
            task.cancel()
        if self._applying:
            await asyncio.wait(list(self._applying), timeout=settings.NOTIFY_DATA_WAIT)


def _frozen(params: dict[str, str] | None) -> Params | None:
    return None if params is None else tuple(sorted(params.items()))
