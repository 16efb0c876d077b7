"""A `Channel`: one stream key in this process — its subscribers, its bounded history of
`Item`s, fan-out, heartbeats, lagging and the plain GETs waiting on it. The upstream side is
the `Poller` (poller.py); the two meet only through the `Broker` (broker.py).

- **Lifetime.** The channel starts with the first subscriber (or a plain GET) and stops
  `settings.STREAM_LINGER` after the last one leaves; interest returning during the linger
  keeps it running. The latest state survives, so a newcomer gets it at once. While some
  other process still wants the key (a cluster broker), the leader's channel keeps lingering:
  its poller serves them.
- **Leadership.** A started channel asks the broker for the key's lease and runs a `Poller`
  while it holds it (with `LocalBroker`, at once and for good). A new poller continues from the
  channel's latest state (`Seed`), so ids keep growing and nothing is published twice.
- **Records.** Each `Record` the broker delivers becomes one `Item`, fanned out synchronously
  to every subscriber (`Subscription.offer`): no task, no await, no copy per subscriber; it is
  rendered at most once per format, in this process. A record whose id is not newer than the
  latest is a duplicate and dropped; one that does not follow the latest (`prev`) means records
  were missed (a Redis restart, a trimmed stream): history is cleared and everyone gets the new
  state as a `reset` (patch/merge: a `snapshot`), never a patch against a state they lack.
- **Trouble upstream** reaches the channel as a `Status`: subscribers keep their last state and
  get heartbeats, never error events; plain GETs waiting for a first state give up at once.
- **Heartbeats.** One per channel when it has sent nothing for `heartbeat` (jittered
  downwards, so thousands of channels drift apart): rendered once, written to everyone.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import hashlib
import logging
import random
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from .. import settings
from ..broker import Broker, LocalBroker, Record, Status
from ..events import Headers
from ..routing.model import Route, StreamSpec
from ..routing.paths import substitute
from ..settings import Limits
from ..upstream.headers import HOP_BY_HOP
from .clock import Clock, wait_future
from .counters import new_buckets, observe
from .item import HEARTBEAT, Format, Item
from .poller import ACCEPT, Fetcher, Poller, Seed
from .subscription import Sink, Subscription

# Fields a subscriber can never set on the poll, even when `vary` names them: framing and
# hop-by-hop fields would break the GET, and the conditional ones belong to the poller's own
# change detection.
NOT_FORWARDED = HOP_BY_HOP | {
    b"content-length",
    b"expect",
    b"if-match",
    b"if-none-match",
    b"if-modified-since",
    b"if-unmodified-since",
    b"if-range",
    b"range",
}

HEARTBEAT_JITTER = 0.15  # heartbeats go after heartbeat * [0.85, 1.0] of silence
LAG_CHECK = settings.LAG_CLOSE_AFTER / 4  # the tick loop looks at laggers at least this often


class ChannelState(enum.Enum):
    STARTING = "starting"  # no upstream answer yet
    POLLING = "polling"  # the last request succeeded
    BACKOFF = "backoff"  # the last request failed; waiting to retry
    STOPPED = "stopped"


def vary_headers(spec: StreamSpec, headers: Headers) -> Headers:
    """The subscriber's values of the route's `vary` headers, in `vary` order: the only part of
    a subscriber's request that ever reaches the upstream, and part of the stream key."""
    if not spec.vary:
        return []
    chosen: Headers = []
    for name in spec.vary:
        wanted = name.encode("latin-1")
        if wanted not in NOT_FORWARDED:
            chosen += [(n, v) for n, v in headers if n == wanted]
    return chosen


def poll_headers(spec: StreamSpec, vary: Headers) -> Headers:
    """The request headers of every poll: Host, the route's `vary` headers only (never
    Cookie/Authorization), Accept."""
    named = {name for name, _ in vary}
    headers: Headers = []
    if b"host" not in named:
        headers.append((b"host", spec.upstream.authority.encode("ascii")))
    headers += vary
    if b"accept" not in named:
        headers.append((b"accept", ACCEPT))
    return headers


@functools.lru_cache(maxsize=1024)
def _settings_text(spec: StreamSpec) -> tuple[str, str]:
    """What `stream_key` digests before and after the target and vary values: the same for
    every subscriber of a route, so formatted once per stream spec, not per subscription.
    Joined, the pieces are exactly the repr of the whole tuple, so the keys stay what every
    process of an older version computes too."""
    upstream = spec.upstream
    longpoll = spec.longpoll
    mode = f"every={spec.every}" if longpoll is None else repr(longpoll)
    before = (upstream.scheme, upstream.host, upstream.port, upstream.base_path)
    after = (spec.emit, spec.event, mode, spec.history, spec.heartbeat)
    return repr(before)[:-1] + ", ", ", " + repr(after)[1:]


def stream_key(spec: StreamSpec, target: str, vary: Headers) -> str:
    """The key every process agrees on: a digest of what the upstream sees (origin, filled-in
    poll target, vary values) and of the rest of the stream's settings (emit, event, poll
    mode, history, heartbeat), so two routes polling the same URL share a channel only if it
    would behave the same for both. Not the route's index: processes may order their routes
    differently during a rolling config change. A digest, because vary values may be per-user
    secrets and the key goes to Redis."""
    before, after = _settings_text(spec)
    what = before + repr(target) + ", " + repr(tuple(vary)) + after
    return hashlib.sha256(what.encode("utf-8", "surrogateescape")).hexdigest()[:32]


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


@dataclass(slots=True)
class ChannelSpec:
    """Everything a channel is made of: which stream, and the process parts it uses."""

    route: Route
    params: dict[str, str]
    vary: Headers
    fetcher: Fetcher
    clock: Clock
    limits: Limits
    epoch: Callable[[], int]
    broker: Broker = field(default_factory=LocalBroker)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("bridge.hub"))
    rng: random.Random = field(default_factory=random.Random)
    on_stop: Callable[[Channel], None] | None = None
    on_leave: Callable[[], None] | None = None

    @property
    def stream(self) -> StreamSpec:
        stream = self.route.stream
        if stream is None:
            raise ValueError(f"route {self.route.path} has no stream")
        return stream

    @property
    def target(self) -> str:
        return substitute(self.stream.poll, self.params)

    @property
    def key(self) -> str:
        return stream_key(self.stream, self.target, self.vary)


class Channel:
    def __init__(self, spec: ChannelSpec) -> None:
        stream = spec.stream
        if (stream.every is None) == (stream.longpoll is None):
            raise ValueError(f"route {spec.route.path}: exactly one of every and longpoll")
        self.key = spec.key
        self.route = spec.route
        self.spec: StreamSpec = stream
        self.params = spec.params
        self.vary = spec.vary
        self.fetcher = spec.fetcher
        self.clock = spec.clock
        self.limits = spec.limits
        self.log = spec.log
        self.rng = spec.rng
        self.broker = spec.broker
        self._new_epoch = spec.epoch
        self._on_stop = spec.on_stop
        self._on_leave = spec.on_leave
        self.target = spec.target
        self.name = f"{spec.route.path} ({stream.upstream.name} {self.target})"
        self._headers = poll_headers(stream, self.vary)

        self.subscribers: dict[Subscription, None] = {}  # insertion-ordered set, O(1) removal
        self.lagging: dict[Subscription, None] = {}
        # Subscribers that came with an id we cannot resolve before any state exists: their
        # first event is the `reset` form of the first state.
        self._resetting: dict[Subscription, None] = {}
        self.waiters = 0  # plain GETs parked in wait_*: interest, like subscribers
        self.history: deque[Item] = deque(maxlen=stream.history)
        self.latest: Item | None = None

        self.state = ChannelState.STARTING
        self.errors = 0
        self.poller: Poller | None = None  # while this process leads the key
        self._polls_before = 0  # polls of earlier pollers of this channel
        # For /metrics and /streams (counters.py): bumped in place, read at scrape time.
        self.not_modified = 0
        self.published = 0  # events
        self.fanned_out = 0  # event deliveries: events x subscribers
        self.conflated = 0  # subscribers that started lagging (their items then conflated)
        self.closed_slow = 0  # subscribers closed for lagging too long
        self.poll_buckets = new_buckets()
        self.poll_seconds = 0.0
        self.last_poll_at: float | None = None  # wall clock, like every *_at here
        self.last_change_at: float | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.retry_at: float | None = None  # in backoff: when the next poll goes
        self.last_sent = self.clock.now()
        self._change: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._linger_until = 0.0
        self._linger_task: asyncio.Task[None] | None = None
        # Subscribers that came before the broker delivered the history: welcomed by
        # `on_history` (their Last-Event-ID may be in it), until then not fanned out to.
        self._arriving: dict[Subscription, str | None] = {}
        self._ready = False

    # --- lifetime -------------------------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        return self.state is ChannelState.STOPPED

    def start(self) -> None:
        if self._tasks or self.stopped:
            return
        self._tasks = [
            asyncio.create_task(self._lead_loop(), name=f"lead {self.name}"),
            asyncio.create_task(self._tick_loop(), name=f"tick {self.name}"),
        ]
        self.broker.subscribe(self.key, self, self.spec.history)

    def _idle(self) -> bool:
        return not self.subscribers and not self.waiters and not self._arriving

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
        self._linger_until = self.clock.now() + settings.STREAM_LINGER
        if self._linger_task is None:
            self._linger_task = asyncio.create_task(self._linger_loop(), name=f"linger {self.name}")

    async def _linger_loop(self) -> None:
        try:
            while True:
                remaining = self._linger_until - self.clock.now()
                if remaining > 0:
                    await self.clock.sleep(remaining)
                    continue
                if not self._idle():
                    return  # interest came back; whoever leaves last lingers again
                if self.poller is not None and await self.broker.interest_elsewhere(self.key):
                    # Other processes still want this key and this one polls it for them.
                    self._linger_until = self.clock.now() + settings.STREAM_LINGER
                    continue
                self.stop()
                return
        finally:
            self._linger_task = None

    def stop(self) -> None:
        """Stop polling; end any subscriber still here (server shutdown); wake waiters."""
        if self.stopped:
            return
        self.state = ChannelState.STOPPED
        self.broker.unsubscribe(self.key, self)
        for sub in (*self._arriving, *self.subscribers):
            sub.end_for_shutdown()
        for task in self._tasks:
            task.cancel()
        linger = self._linger_task
        if linger is not None and linger is not asyncio.current_task():
            linger.cancel()
        self._notify()
        if self._on_stop is not None:
            self._on_stop(self)

    def restart(self, route: Route) -> None:
        """A reload changed this stream's `stream:` block but not what its subscribers are
        (path, `vary`, protocols, `ws_format`): poll the new way from now on, keeping the
        subscribers and the history. The new poller continues from the latest state (its
        `Seed`), so ids keep growing and an unchanged body publishes nothing."""
        stream = route.stream
        if stream is None or self.stopped:
            raise ValueError(f"route {route.path} has no stream")
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        self.route, self.spec = route, stream
        self.target = substitute(stream.poll, self.params)
        self.name = f"{route.path} ({stream.upstream.name} {self.target})"
        self._headers = poll_headers(stream, self.vary)
        self.history = deque(self.history, maxlen=stream.history)
        key = stream_key(stream, self.target, self.vary)
        if key != self.key:
            # The old key's records and lease are another stream's business from now on.
            self.broker.unsubscribe(self.key, self)
            self.key = key
        self.state = ChannelState.STARTING
        self.start()

    def tasks(self) -> list[asyncio.Task[None]]:
        linger = [self._linger_task] if self._linger_task is not None else []
        return [*self._tasks, *linger]

    # --- subscribers ----------------------------------------------------------------------------

    def subscribe(self, sink: Sink, fmt: Format, last_event_id: str | None) -> Subscription:
        if self.stopped:
            raise RuntimeError("subscribe on a stopped channel")
        sub = Subscription(self, sink, fmt, self.limits.subscriber_buffer)
        self.start()
        if self._ready:
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
        if self._on_leave is not None:
            self._on_leave()
        if self._idle():
            self._linger()

    def _welcome(self, sub: Subscription, last_event_id: str | None) -> None:
        """What a newcomer gets at once (ROUTES.md "Resume")."""
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
        return latest if self.spec.emit == "snapshot" else latest.as_snapshot("snapshot")

    def reset_item(self) -> Item:
        """The current state for a client whose id is gone: `reset` (patch/merge: `snapshot`)."""
        latest = self.latest
        if latest is None:
            raise LookupError("no state yet")
        if self.spec.emit == "snapshot":
            return latest.as_snapshot("reset")
        return self.catch_up()

    def snapshot(self) -> Item | None:
        return self.catch_up() if self.latest is not None else None

    def retry_ms(self) -> int:
        """A jittered SSE reconnection hint, so the clients of a closed crowd come back apart."""
        return int(settings.SSE_RETRY_MS * self.rng.uniform(0.75, 1.5))

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
        self._ready = True
        arriving, self._arriving = self._arriving, {}
        for sub, last_event_id in arriving.items():
            self.subscribers[sub] = None
            self._welcome(sub, last_event_id)

    def on_record(self, record: Record) -> None:
        latest = self.latest
        if latest is not None and record.id <= latest.id:
            return  # already here (a reader re-reading after a reconnect, or a new leader)
        if self.state is ChannelState.STARTING:
            self.state = ChannelState.POLLING
        item = _item(record)
        if latest is not None and record.prev != latest.id:
            # Records were missed: whatever a subscriber holds may not be what the new one
            # follows. Everyone starts over from this state, and history restarts here.
            self.log.info(
                "stream %s: records missed before %s; sending a reset", self.name, item.id
            )
            self.history.clear()
            self._resetting.update(dict.fromkeys(self.subscribers))
        self.publish(item)

    def on_status(self, status: Status) -> None:
        if self.stopped:
            return
        if status.ok:
            self.state = ChannelState.POLLING
            return
        self.errors += 1
        self.last_error, self.last_error_at = status.detail or None, self.clock.wall()
        self.state = ChannelState.BACKOFF
        self._notify()  # plain GETs waiting for a first answer learn it failed

    async def _lead_loop(self) -> None:
        """Poll whenever this process holds the key's lease (with one process: always)."""
        while True:
            try:
                lease = await self.broker.lease(self.key, self)
                await lease.hold(self._poll)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end the stream's polling for good
                self.log.exception("stream %s: leadership failed; trying again", self.name)
                await self.clock.sleep(settings.BACKOFF_BASE)

    async def _poll(self) -> None:
        latest = self.latest
        seed = Seed(latest.id, latest.state) if latest is not None and latest.has_state else None
        poller = Poller(
            spec=self.spec,
            target=self.target,
            headers=self._headers,
            name=self.name,
            fetcher=self.fetcher,
            clock=self.clock,
            limits=self.limits,
            epoch=self._new_epoch,
            publish=self._publish_record,
            report=self._report,
            rng=self.rng,
            log=self.log,
            seed=seed,
            observe=self._polled,
        )
        self.poller = poller
        try:
            await poller.run()
        finally:
            self._polls_before += poller.polls
            self.poller = None

    def _polled(self, seconds: float, status: int, retry_in: float | None) -> None:
        """This process's poller answered (or failed): the counters /metrics reads."""
        if status < 0:
            self.retry_at = self.clock.wall() + (retry_in or 0.0)
            return
        observe(self.poll_buckets, seconds)
        self.poll_seconds += seconds
        self.last_poll_at = self.clock.wall()
        if status == 304:
            self.not_modified += 1

    async def _publish_record(self, record: Record) -> None:
        await self.broker.publish(self.key, record)

    def _report(self, status: Status) -> None:
        self.broker.report(self.key, status)

    @property
    def polls(self) -> int:
        poller = self.poller
        return self._polls_before + (poller.polls if poller is not None else 0)

    # --- fan-out --------------------------------------------------------------------------------

    def publish(self, item: Item) -> None:
        previous = self.latest
        self.history.append(item)
        self.latest = item
        if previous is not None:
            previous.release()
        self.last_sent = self.clock.now()
        self.last_change_at = self.clock.wall()
        self.published += 1
        self.fanned_out += len(self.subscribers)
        if self._resetting:
            self._publish_with_resets(item)
        else:
            for sub in tuple(self.subscribers):
                sub.offer(item)
        self._notify()

    def _publish_with_resets(self, item: Item) -> None:
        resetting, self._resetting = self._resetting, {}
        reset = self.reset_item()
        for sub in tuple(self.subscribers):
            sub.offer(reset if sub in resetting else item)

    def _heartbeat(self) -> None:
        self.last_sent = self.clock.now()
        for sub in (*self._arriving, *self.subscribers):  # those waiting for history too
            sub.offer(HEARTBEAT)

    def _heartbeat_after(self) -> float:
        return self.spec.heartbeat * self.rng.uniform(1 - HEARTBEAT_JITTER, 1.0)

    async def _tick_loop(self) -> None:
        """Heartbeats when idle; laggers that drained unnoticed or stayed stuck too long."""
        beat = self._heartbeat_after()
        while True:
            now = self.clock.now()
            wake = min(self.last_sent + beat, now + LAG_CHECK)
            if wake > now:
                await self.clock.sleep(wake - now)
                now = self.clock.now()
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
            self.log.info(
                "stream %s: closed %d subscriber(s) stuck for %.0fs; they resume by id",
                self.name,
                stuck,
                settings.LAG_CLOSE_AFTER,
            )

    # --- plain GETs -----------------------------------------------------------------------------

    def _notify(self) -> None:
        change, self._change = self._change, None
        if change is not None and not change.done():
            change.set_result(None)

    def _next_change(self) -> asyncio.Future[None]:
        if self._change is None:
            self._change = asyncio.get_running_loop().create_future()
        return self._change

    async def _wait(self, done: Callable[[], bool], timeout: float) -> bool:
        """Wait (bounded) until `done()`, re-checked whenever the channel publishes or fails."""
        self.waiters += 1
        try:
            deadline = self.clock.now() + timeout
            while not done():
                remaining = deadline - self.clock.now()
                if remaining <= 0 or self.stopped:
                    return False
                await wait_future(self.clock, self._next_change(), remaining)
            return True
        finally:
            self.waiters -= 1
            if self._idle():
                self._linger()

    async def wait_ready(self, timeout: float) -> Item | None:
        """The current snapshot; with none yet, wait for the first answer — but not past a failed
        attempt: a client is better told at once that the upstream is down."""
        if self.latest is None:
            await self._wait(lambda: self.latest is not None or self.errors > 0, timeout)
        return self.snapshot()

    async def wait_change(self, after: str | None, timeout: float) -> Item | None:
        """The snapshot once its id differs from `after`; None on timeout."""

        def changed() -> bool:
            return self.latest is not None and self.latest.id != after

        return self.snapshot() if await self._wait(changed, timeout) else None

    # --- admin ----------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        vary = None
        if self.vary:
            # The values may be per-user secrets: a digest tells streams apart without them.
            vary = hashlib.sha256(repr(self.vary).encode()).hexdigest()[:12]
        return {
            "key": self.key,
            "route": self.route.path,
            "params": dict(self.params),
            "vary": vary,
            "upstream": self.spec.upstream.name,
            "target": self.target,
            "subscribers": len(self.subscribers),
            "lagging": len(self.lagging),
            "waiters": self.waiters,
            "last_id": self.latest.id if self.latest else None,
            "history": len(self.history),
            "polls": self.polls,
            "errors": self.errors,
            "state": self.state.value,
            "leader": self.poller is not None,
        }

    def __repr__(self) -> str:
        return f"<Channel {self.name} {self.state.value} subscribers={len(self.subscribers)}>"
