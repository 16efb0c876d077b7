"""A `Channel`: one stream key in this process — its subscribers, its bounded history of
`Item`s, fan-out and heartbeats. The upstream side is the `Poller` (poller.py), run by this
channel's `Leadership` (leader.py) while this process leads the key; the two meet only
through the `Broker` (bridge/broker/). Around the channel, each in a module of its own: which
stream it is (`ChannelSpec`, key.py), what it shares with the hub (`HubContext`, context.py),
the plain GETs parked on it (`Waiters`, waiters.py), its counters (`ChannelCounters`,
counters.py), and its two state machines, `Lifetime` and `Health` (state.py).

- **Lifetime.** The channel starts with the first subscriber (or a plain GET) and stops
  `settings.STREAM_LINGER` after the last one leaves; interest returning during the linger
  keeps it running. The latest state survives, so a newcomer gets it at once. While some
  other process still wants the key (a cluster broker), the leader's channel keeps lingering:
  its poller serves them.
- **Records.** Each `Record` the broker delivers becomes one `Item`, fanned out synchronously
  to every subscriber (`Subscription.offer`): no task, no await, no copy per subscriber; it is
  rendered at most once per format, in this process. A record whose id is not newer than the
  latest is a duplicate and dropped; one that does not follow the latest (`prev`) means records
  were missed (a Redis restart, a trimmed stream): history is cleared and everyone gets the new
  state as a `reset` (patch/merge: a `snapshot`), never a patch against a state they lack.
- **Trouble upstream** reaches the channel as a `Status`: subscribers keep their last state and
  get heartbeats, never error events; plain GETs waiting for a first state give up at once.
  Before the first state the channel keeps the latest failure (`failure`), which plain GETs
  and new subscribers are told; a 4xx then is the requester's answer (docs/configuration.md), so a channel
  nobody subscribed to stops at once rather than lingering on it.
- **Heartbeats.** One per channel when it has sent nothing for `heartbeat` (jittered
  downwards, so thousands of channels drift apart): rendered once, written to everyone.
"""

from __future__ import annotations

import asyncio
import hashlib
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Sequence
from itertools import islice
from typing import Any, Protocol

from .. import settings
from ..broker import Record, Status
from ..routing.model import Route
from .context import HubContext
from .counters import ChannelCounters
from .item import HEARTBEAT, Format, Item
from .key import ChannelSpec
from .leader import Leadership
from .poller import Poller
from .state import Health, Lifetime
from .subscription import Sink, Subscription
from .waiters import Held, Waiters, cursor_passed


class ChannelHost(Protocol):
    """What a channel tells whoever keeps it (implemented by `Hub`)."""

    def channel_stopped(self, channel: Channel) -> None: ...

    def subscriber_left(self) -> None: ...


def _item_id(item: Item) -> str:
    return item.id


def _item(record: Record) -> Item:
    return Item(
        record.id,
        record.event,
        record.data,
        state=record.state,
        content_type=record.content_type,
    )


class Channel(ChannelCounters):
    """A broker `Listener`, a `Subscription`'s `Owner`, and its `Leadership`'s `Led`."""

    __slots__ = (
        "_arriving",
        "_host",
        "_linger_task",
        "_linger_until",
        "_resetting",
        "_tasks",
        "context",
        "failure",
        "health",
        "history",
        "lagging",
        "last_sent",
        "latest",
        "leadership",
        "life",
        "spec",
        "subscribers",
        "waiters",
    )

    def __init__(self, spec: ChannelSpec, context: HubContext, host: ChannelHost) -> None:
        super().__init__(context.clock)
        self.spec = spec
        self.context = context
        self._host = host
        self.life = Lifetime.NEW
        self.health = Health.STARTING
        self.failure: Status | None = None  # the latest failed poll while there is no state
        self.subscribers: dict[Subscription, None] = {}  # insertion-ordered set, O(1) removal
        self.lagging: dict[Subscription, None] = {}
        # Subscribers that came with an id we cannot resolve before any state exists: their
        # first event is the `reset` form of the first state.
        self._resetting: dict[Subscription, None] = {}
        # Subscribers that came while JOINING: welcomed by `on_history` (their Last-Event-ID
        # may be in it), until then not fanned out to.
        self._arriving: dict[Subscription, str | None] = {}
        self.history: deque[Item] = deque(maxlen=spec.stream.history)
        self.latest: Item | None = None
        self.leadership = Leadership(self, context)
        self.waiters = Waiters(context.clock)
        self.last_sent = context.clock.now()
        self._tasks: list[asyncio.Task[None]] = []
        self._linger_until = 0.0
        self._linger_task: asyncio.Task[None] | None = None

    # --- identity, as the hub, /metrics, /streams and log lines read it ------------------------

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def route(self) -> Route:
        return self.spec.route

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def state(self) -> Health | Lifetime:
        """One word for /streams: the upstream's health, or `stopped`."""
        return self.life if self.life is Lifetime.STOPPED else self.health

    @property
    def stopped(self) -> bool:
        return self.life is Lifetime.STOPPED

    @property
    def poller(self) -> Poller | None:
        return self.leadership.poller

    @property
    def polls(self) -> int:
        return self.leadership.polls

    @property
    def notify_polls(self) -> int:
        return self.leadership.notify_polls

    # --- lifetime -------------------------------------------------------------------------------

    def start(self) -> None:
        life = self.life.started()
        if life is not self.life:
            self.life = life
            self._launch()

    def _launch(self) -> None:
        name = self.name
        self._tasks = [
            asyncio.create_task(self.leadership.run(), name=f"lead {name}"),
            asyncio.create_task(self._tick_loop(), name=f"tick {name}"),
        ]
        # A LocalBroker delivers the (empty) history at once: the channel is LIVE on return.
        self.context.broker.subscribe(self.key, self, self.spec.stream.history)

    def _idle(self) -> bool:
        return not self.subscribers and not self.waiters.count and not self._arriving

    def touch(self) -> None:
        """Someone is interested (a subscriber or a plain GET): run, and linger after."""
        self.start()
        if self._idle():
            self._linger()

    def _linger(self) -> None:
        """Interest ended: stop after STREAM_LINGER unless it comes back. Deadlines only move
        later, so one task per channel re-sleeps instead of a task per departure."""
        if self.stopped:
            return
        self._linger_until = self.context.clock.now() + settings.STREAM_LINGER
        if self._linger_task is None:
            self._linger_task = asyncio.create_task(self._linger_loop(), name=f"linger {self.name}")

    async def _linger_loop(self) -> None:
        clock = self.context.clock
        try:
            while True:
                remaining = self._linger_until - clock.now()
                if remaining > 0:
                    await clock.sleep(remaining)
                    continue
                if not self._idle():
                    return  # interest came back; whoever leaves last lingers again
                if self.poller is not None and await self.context.broker.interest_elsewhere(
                    self.key
                ):
                    # Other processes still want this key and this one polls it for them.
                    self._linger_until = clock.now() + settings.STREAM_LINGER
                    continue
                self.stop()
                return
        finally:
            self._linger_task = None

    def stop(self) -> None:
        """Stop polling; end any subscriber still here (server shutdown); wake waiters."""
        if self.stopped:
            return
        self.life = self.life.stopped()
        self.context.broker.unsubscribe(self.key, self)
        for sub in (*self._arriving, *self.subscribers):
            sub.end_for_shutdown()
        for task in self._tasks:
            task.cancel()
        linger = self._linger_task
        if linger is not None and linger is not asyncio.current_task():
            linger.cancel()
        self.waiters.close()  # held GETs get the current snapshot, waiting ones wake
        self._host.channel_stopped(self)

    def relocate(self, route: Route) -> None:
        """A reload kept this stream's `stream:` block as it was, under a route that may have
        moved in the table: everything else goes on as before."""
        self.spec = ChannelSpec(route, self.spec.params, self.spec.vary)

    def restart(self, route: Route) -> None:
        """A reload changed this stream's `stream:` block but not what its subscribers are
        (path, `vary`, protocols, `ws_format`): poll the new way from now on, keeping the
        subscribers and the history. The new poller continues from the latest state (its
        `Seed`), so ids keep growing and an unchanged body publishes nothing."""
        if route.stream is None or self.stopped:
            raise ValueError(f"route {route.path} has no stream")
        spec = ChannelSpec(route, self.spec.params, self.spec.vary)
        for task in self._tasks:
            task.cancel()
        self.history = deque(self.history, maxlen=spec.stream.history)
        if spec.key != self.key:
            # The old key's records and lease are another stream's business from now on.
            self.context.broker.unsubscribe(self.key, self)
        self.spec = spec
        self.health = self.health.restarted()
        self._launch()

    def tasks(self) -> list[asyncio.Task[None]]:
        linger = [self._linger_task] if self._linger_task is not None else []
        return [*self._tasks, *linger, *self.waiters.tasks()]

    # --- subscribers ----------------------------------------------------------------------------

    def subscribe(self, sink: Sink, fmt: Format, last_event_id: str | None) -> Subscription:
        if self.stopped:
            raise RuntimeError("subscribe on a stopped channel")
        sub = Subscription(self, sink, fmt, self.context.limits.subscriber_buffer)
        self.start()
        if self.life is Lifetime.LIVE:
            self.subscribers[sub] = None
            self._welcome(sub, last_event_id or None)
        else:
            self._arriving[sub] = last_event_id or None
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self.subscribers:
            del self.subscribers[sub]
        elif sub in self._arriving:
            del self._arriving[sub]
        else:
            return
        self.lagging.pop(sub, None)
        self._resetting.pop(sub, None)
        self._host.subscriber_left()
        if self._idle():
            self._linger()

    def start_lagging(self, sub: Subscription) -> float:
        self.lagging[sub] = None
        self.conflated += 1
        return self.context.clock.now()

    def stop_lagging(self, sub: Subscription) -> None:
        self.lagging.pop(sub, None)

    def sink_failed(self, sub: Subscription) -> None:
        self.context.log.exception("stream %s: dropping a subscriber whose sink failed", self.name)

    def _welcome(self, sub: Subscription, last_event_id: str | None) -> None:
        """What a newcomer gets at once (docs/configuration.md "Resume")."""
        latest = self.latest
        if latest is None:
            # Nothing yet: the first poll reaches it. An id it brings cannot be in a history
            # that does not exist (a restart): that first state comes as a reset.
            if last_event_id is not None:
                self._resetting[sub] = None
            return
        if last_event_id is None:
            sub.offer(self.catch_up())
            return
        missed = self._since(last_event_id)
        if missed is None:
            sub.offer(self.reset_item())
            return
        for item in missed:
            sub.offer(item)
            if sub.lagging:
                # The rest would be conflated anyway; it catches up with the newest state
                # when it drains (never a replayed patch after that snapshot).
                if item is not latest:
                    sub.pending = latest
                return

    def _since(self, last_event_id: str) -> list[Item] | None:
        """The items after `last_event_id`, or None if it is not in history (ids sort as
        strings, see item.py, so the lookup is a bisection)."""
        latest = self.latest
        if latest is not None and last_event_id == latest.id:
            return []
        history = self.history
        pos = bisect_left(history, last_event_id, key=_item_id)
        if pos < len(history) and history[pos].id == last_event_id:
            return list(islice(history, pos + 1, None))
        return None

    def catch_up(self) -> Item:
        """The current state as one event: for newcomers, drained laggers and plain GETs.
        Snapshot streams: the latest item itself; patch/merge: a `snapshot` of the state."""
        latest = self.latest
        if latest is None:
            raise LookupError("no state yet")
        return latest if self.spec.stream.emit == "snapshot" else latest.as_snapshot("snapshot")

    def reset_item(self) -> Item:
        """The current state for a client whose id is gone: `reset` (patch/merge: `snapshot`)."""
        latest = self.latest
        if latest is None:
            raise LookupError("no state yet")
        if self.spec.stream.emit == "snapshot":
            return latest.as_snapshot("reset")
        return self.catch_up()

    def snapshot(self) -> Item | None:
        return self.catch_up() if self.latest is not None else None

    def retry_ms(self) -> int:
        """A jittered SSE reconnection hint, so the clients of a closed crowd come back apart."""
        return int(settings.SSE_RETRY_MS * self.context.rng.uniform(*settings.SSE_RETRY_JITTER))

    # --- from the broker ------------------------------------------------------------------------

    def on_history(self, records: Sequence[Record]) -> None:
        for record in records:
            latest = self.latest
            if latest is not None and record.id <= latest.id:
                continue
            item = _item(record)
            if latest is not None and record.prev != latest.id:
                self.history.clear()  # a hole: never replay across it
            self.history.append(item)
            self.latest = item
            if latest is not None:
                latest.release()
        self.life = self.life.joined()
        arriving, self._arriving = self._arriving, {}
        for sub, last_event_id in arriving.items():
            self.subscribers[sub] = None
            self._welcome(sub, last_event_id)

    def on_record(self, record: Record) -> None:
        latest = self.latest
        if latest is not None and record.id <= latest.id:
            return  # already here (a reader re-reading after a reconnect, or a new leader)
        self.health = self.health.on_record()
        item = _item(record)
        if latest is not None and record.prev != latest.id:
            # Records were missed: whatever a subscriber holds may not be what the new one
            # follows. Everyone starts over from this state, and history restarts here.
            self.context.log.info(
                "stream %s: records missed before %s; sending a reset", self.name, item.id
            )
            self.history.clear()
            self._resetting.update(dict.fromkeys(self.subscribers))
        self.publish(item)

    def on_status(self, status: Status) -> None:
        if self.stopped:
            return
        self.health = self.health.on_status(status.ok)
        if status.ok:
            return
        self.failed(status.detail)
        if self.latest is None:
            self.failure = status
            if status.refusal and not self.subscribers and not self._arriving:
                # The upstream refused the request itself (401, 404, ...): that is the answer
                # for whoever asked, not trouble to wait out. Stopping wakes the waiters.
                self.stop()
                return
        self.waiters.notify()  # plain GETs waiting for a first answer learn it failed

    # --- fan-out --------------------------------------------------------------------------------

    def publish(self, item: Item) -> None:
        previous = self.latest
        self.history.append(item)
        self.latest = item
        if previous is not None:
            previous.release()
        clock = self.context.clock
        self.last_sent = clock.now()
        self.last_change_at = clock.wall()
        self.published += 1
        self.fanned_out += len(self.subscribers)
        if self._resetting:
            self._publish_with_resets(item)
        else:
            for sub in tuple(self.subscribers):
                sub.offer(item)
        waiters = self.waiters
        waiters.notify()
        if waiters.held:
            waiters.changed(self.cursor_passed)

    def _publish_with_resets(self, item: Item) -> None:
        resetting, self._resetting = self._resetting, {}
        reset = self.reset_item()
        for sub in tuple(self.subscribers):
            sub.offer(reset if sub in resetting else item)

    def _heartbeat(self) -> None:
        self.last_sent = self.context.clock.now()
        for sub in (*self._arriving, *self.subscribers):  # those waiting for history too
            sub.offer(HEARTBEAT)

    def _heartbeat_after(self) -> float:
        jitter = settings.HEARTBEAT_JITTER
        return self.spec.stream.heartbeat * self.context.rng.uniform(1 - jitter, 1.0)

    async def _tick_loop(self) -> None:
        """Heartbeats when idle; laggers that drained unnoticed or stayed stuck too long."""
        clock = self.context.clock
        beat = self._heartbeat_after()
        while True:
            now = clock.now()
            wake = min(self.last_sent + beat, now + settings.LAG_CHECK)
            if wake > now:
                await clock.sleep(wake - now)
                now = clock.now()
            if self.lagging:
                self._check_laggers(now)
            # Compare against the same sum `wake` used: `now - last_sent >= beat` can be
            # false by one rounding step at the very instant we woke, and spin.
            if now >= self.last_sent + beat:
                self._heartbeat()
                beat = self._heartbeat_after()

    def _check_laggers(self, now: float) -> None:
        stuck = 0
        for sub in tuple(self.lagging):
            if sub.sink.buffered() <= sub.limit // 2:
                sub.on_drain()  # drained, and nobody told us
            elif now - sub.lag_since >= settings.LAG_CLOSE_AFTER:
                stuck += 1
                sub.close_lagging()
        if stuck:
            self.closed_slow += stuck
            self.context.log.info(
                "stream %s: closed %d subscriber(s) stuck for %.0fs; they resume by id",
                self.name,
                stuck,
                settings.LAG_CLOSE_AFTER,
            )

    # --- plain GETs -----------------------------------------------------------------------------

    async def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait (bounded) until `done()`, re-checked whenever the channel publishes or fails."""
        try:
            return await self.waiters.wait(done, timeout, lambda: self.stopped)
        finally:
            if self._idle():
                self._linger()

    async def wait_ready(self, timeout: float) -> Item | None:
        """The current snapshot; with none yet, wait for the first answer — but not past a failed
        attempt (then `failure` says how): a client is better told at once that the upstream is
        down."""
        if self.latest is None and self.failure is None:
            await self._wait(lambda: self.latest is not None or self.failure is not None, timeout)
        return self.snapshot()

    async def wait_change(self, after: str | None, timeout: float) -> Item | None:
        """The snapshot once its id differs from `after`; None on timeout."""

        def changed() -> bool:
            return self.latest is not None and self.latest.id != after

        return self.snapshot() if await self._wait(changed, timeout) else None

    def cursor_passed(self, since: str) -> bool:
        """Whether the latest state's long-poll cursor has passed a client's `since`."""
        latest, longpoll = self.latest, self.spec.stream.longpoll
        if latest is None or longpoll is None:
            return False
        return cursor_passed(self.waiters.cursor(latest.id, latest.state, longpoll.cursor), since)

    def hold(
        self,
        since: str,
        timeout: float,
        answer: Callable[[Item | None], None],
        over: Callable[[], None],
    ) -> Held:
        """Park a long-poll GET until the cursor passes `since` or `timeout` (see waiters.py),
        on a running channel whose cursor has not passed it yet. `over` runs when it is
        answered or its client left."""

        def reply() -> None:
            answer(self.snapshot())

        def ended() -> None:
            over()
            if self._idle():
                self._linger()

        return self.waiters.hold(since, timeout, reply, ended)

    # --- admin ----------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        spec = self.spec
        vary = None
        if spec.vary:
            # The values may be per-user secrets: a digest tells streams apart without them.
            vary = hashlib.sha256(repr(spec.vary).encode()).hexdigest()[:12]
        return {
            "key": spec.key,
            "route": spec.route.path,
            "params": dict(spec.params),
            "vary": vary,
            "upstream": spec.stream.upstream.name,
            "target": spec.target,
            "subscribers": len(self.subscribers),
            "lagging": len(self.lagging),
            "waiters": self.waiters.count,
            "last_id": self.latest.id if self.latest else None,
            "history": len(self.history),
            "polls": self.polls,
            "errors": self.errors,
            "state": self.state.value,
            "leader": self.poller is not None,
        }

    def __repr__(self) -> str:
        return f"<Channel {self.name} {self.state.value} subscribers={len(self.subscribers)}>"
