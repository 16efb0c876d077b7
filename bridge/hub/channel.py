"""A `Channel`: one stream key (route, path parameters, `vary` values), one upstream poller, its
bounded history, and its subscribers.

- **Lifetime.** The poller starts with the first subscriber (or a plain GET) and stops
  `settings.STREAM_LINGER` after the last one leaves; interest returning during the linger
  keeps it running. The latest state survives, so a newcomer gets it at once.
- **Polling.** `every`: a conditional GET (`If-None-Match` / `If-Modified-Since` from the last
  answer) at the interval ±10 %. `longpoll`: the cursor from the last body goes back in the
  query, and the next request leaves as soon as an answer arrives; a long-poll that times out
  after the upstream held it is normal, not an error.
- **Change detection.** A 304 or a byte-identical body emits nothing (patch/merge streams also
  ignore a body that parses to the same JSON). Each change becomes one `Item` — the body, or
  an RFC 6902 / RFC 7386 diff computed once — and is fanned out synchronously to every
  subscriber (`Subscription.offer`): no task, no await, no copy per subscriber.
- **Trouble upstream** (exceptions, non-2xx other than 304, a body over `max_snapshot`) is
  retried with backoff (`backoff.py`); subscribers keep their last state and get heartbeats,
  never error events. Failures are logged at most once a minute per channel.
- **Heartbeats.** One per channel when it has sent nothing for `heartbeat` (jittered
  downwards, so thousands of channels drift apart): rendered once, written to everyone.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
import random
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Any, Protocol
from urllib.parse import quote

from .. import settings
from ..errors import ErrorCode, StreamError
from ..events import Headers
from ..routing.model import Route, StreamSpec, Upstream
from ..routing.paths import substitute
from ..settings import Limits
from ..upstream.headers import HOP_BY_HOP
from .backoff import Backoff, parse_retry_after
from .clock import Clock, wait_future
from .counters import new_buckets, observe
from .diff import diff, json_equal, loads
from .item import HEARTBEAT, Format, Item
from .subscription import Sink, Subscription

ACCEPT = b"application/json, */*;q=0.5"

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

SEQ_WIDTH = 6  # ids are "<13-digit epoch ms>-<6-digit seq>" (see item.py)
SEQ_MAX = 10**SEQ_WIDTH - 1
EVERY_JITTER = 0.1  # poll intervals are every * [0.9, 1.1]
HEARTBEAT_JITTER = 0.15  # heartbeats go after heartbeat * [0.85, 1.0] of silence
LAG_CHECK = settings.LAG_CLOSE_AFTER / 4  # the tick loop looks at laggers at least this often
ERROR_LOG_INTERVAL = 60.0  # at most one failure line per channel per interval


class Fetcher(Protocol):
    """Implemented by `bridge.upstream.client.UpstreamPool`."""

    async def fetch(
        self, upstream: Upstream, target: str, headers: Headers, *, timeout: float, max_bytes: int
    ) -> tuple[int, Headers, bytes]: ...


class ChannelState(enum.Enum):
    STARTING = "starting"  # no upstream answer yet
    POLLING = "polling"  # the last request succeeded
    BACKOFF = "backoff"  # the last request failed; waiting to retry
    STOPPED = "stopped"


class _NotJson:
    """A parse result meaning "this body is not JSON"."""


NOT_JSON: Any = _NotJson()
_UNPARSED: Any = object()


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


def _header(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _dotted(doc: Any, path: str) -> Any:
    """The value at a dotted path (`meta.seq`, `items.0.id`), or None."""
    for part in path.split("."):
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc


def _parse(body: bytes) -> Any:
    try:
        return loads(body)
    except (ValueError, RecursionError):
        return NOT_JSON


def _item_id(item: Item) -> str:
    return item.id


class Channel:
    def __init__(
        self,
        *,
        key: tuple[Any, ...],
        route: Route,
        params: dict[str, str],
        vary: Headers,
        fetcher: Fetcher,
        clock: Clock,
        limits: Limits,
        epoch: Callable[[], int],
        log: logging.Logger | None = None,
        on_stop: Callable[[Channel], None] | None = None,
        on_leave: Callable[[], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        spec = route.stream
        if spec is None:
            raise ValueError(f"route {route.path} has no stream")
        if (spec.every is None) == (spec.longpoll is None):
            raise ValueError(f"route {route.path}: exactly one of every and longpoll")
        self.key = key
        self.route = route
        self.spec: StreamSpec = spec
        self.params = params
        self.vary = vary
        self.fetcher = fetcher
        self.clock = clock
        self.limits = limits
        self.log = log or logging.getLogger("bridge.hub")
        self.rng = rng or random.Random()
        self._new_epoch = epoch
        self._on_stop = on_stop
        self._on_leave = on_leave
        self.target = substitute(spec.poll, params)
        self.name = f"{route.path} ({spec.upstream.name} {self.target})"
        self._headers = self._base_headers()

        self.subscribers: dict[Subscription, None] = {}  # insertion-ordered set, O(1) removal
        self.lagging: dict[Subscription, None] = {}
        # Subscribers that came with an id we cannot resolve before any state exists: their
        # first event is the `reset` form of the first state.
        self._resetting: dict[Subscription, None] = {}
        self.waiters = 0  # plain GETs parked in wait_*: interest, like subscribers
        self.history: deque[Item] = deque(maxlen=spec.history)
        self.latest: Item | None = None
        self.epoch = epoch()
        self.seq = 0

        self.state = ChannelState.STARTING
        self.backoff = Backoff(rng=self.rng)
        self.polls = 0
        self.errors = 0
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
        self.last_sent = clock.now()
        self._body: bytes | None = None  # the last body seen (its bytes decide "changed")
        self._doc: Any = _UNPARSED  # ... parsed, for patch/merge streams
        self._validators: Headers = []
        self._cursor: str | None = None
        self._warned_not_json = False
        self._logged_at = -ERROR_LOG_INTERVAL
        self._suppressed = 0
        self._streak_logged = False
        self._change: asyncio.Future[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._linger_until = 0.0
        self._linger_task: asyncio.Task[None] | None = None

    # --- lifetime -------------------------------------------------------------------------------

    @property
    def stopped(self) -> bool:
        return self.state is ChannelState.STOPPED

    def start(self) -> None:
        if self._tasks or self.stopped:
            return
        self._tasks = [
            asyncio.create_task(self._poll_loop(), name=f"poll {self.name}"),
            asyncio.create_task(self._tick_loop(), name=f"tick {self.name}"),
        ]

    def touch(self) -> None:
        """Someone is interested (a subscriber or a plain GET): run, and linger after."""
        self.start()
        if not self.subscribers and not self.waiters:
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
                if not self.subscribers and not self.waiters:
                    self.stop()
                return  # interest came back; whoever leaves last lingers again
        finally:
            self._linger_task = None

    def stop(self) -> None:
        """Stop polling; end any subscriber still here (server shutdown); wake waiters."""
        if self.stopped:
            return
        self.state = ChannelState.STOPPED
        for sub in tuple(self.subscribers):
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
        subscribers, the history and the id sequence. The next answer is published even if
        its body is the last one seen (it is the first state under the new block; patch and
        merge streams start again with a `snapshot`)."""
        spec = route.stream
        if spec is None or self.stopped:
            raise ValueError(f"route {route.path} has no stream")
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        self.route, self.spec = route, spec
        self.target = substitute(spec.poll, self.params)
        self.name = f"{route.path} ({spec.upstream.name} {self.target})"
        self._headers = self._base_headers()
        self.history = deque(self.history, maxlen=spec.history)
        self._body, self._doc, self._validators, self._cursor = None, _UNPARSED, [], None
        self.backoff.reset()
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
        self.subscribers[sub] = None
        self.start()
        self._welcome(sub, last_event_id or None)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub not in self.subscribers:
            return
        del self.subscribers[sub]
        self.lagging.pop(sub, None)
        self._resetting.pop(sub, None)
        if self._on_leave is not None:
            self._on_leave()
        if not self.subscribers and not self.waiters:
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
        for sub in tuple(self.subscribers):
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
            if not self.waiters and not self.subscribers:
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

    # --- polling --------------------------------------------------------------------------------

    def _base_headers(self) -> Headers:
        named = {name for name, _ in self.vary}
        headers: Headers = []
        if b"host" not in named:
            headers.append((b"host", self.spec.upstream.authority.encode("ascii")))
        headers += self.vary  # the route's `vary` headers only: never Cookie/Authorization
        if b"accept" not in named:
            headers.append((b"accept", ACCEPT))
        return headers

    def _request_headers(self) -> Headers:
        if self._validators:
            return self._headers + self._validators
        return self._headers

    def _poll_target(self) -> str:
        longpoll = self.spec.longpoll
        if longpoll is None or self._cursor is None:
            return self.target
        target = self.target
        if "?" not in target:
            target += "?"
        elif not target.endswith(("?", "&")):
            target += "&"
        return f"{target}{_quote(longpoll.param)}={_quote(self._cursor)}"

    async def _poll_loop(self) -> None:
        while True:
            try:
                delay = await self._poll_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not end the stream: log, back off, go on
                delay = self._failed(f"unexpected {exc!r}", None, exc)
            if delay > 0:
                await self.clock.sleep(delay)
            else:
                await asyncio.sleep(0)  # long-poll: at once, but let the loop breathe

    async def _poll_once(self) -> float:
        """One upstream request; returns the delay before the next."""
        spec = self.spec
        longpoll = spec.longpoll
        if longpoll is None:
            timeout = spec.upstream.timeout
        else:
            timeout = longpoll.timeout + settings.LONGPOLL_MARGIN
        started = self.clock.now()
        self.polls += 1
        try:
            status, headers, body = await self.fetcher.fetch(
                spec.upstream,
                self._poll_target(),
                self._request_headers(),
                timeout=timeout,
                max_bytes=self.limits.max_snapshot,
            )
        except StreamError as exc:
            self._polled(started)
            held = self.clock.now() - started
            if (
                longpoll is not None
                and exc.code is ErrorCode.UPSTREAM_TIMEOUT
                and held >= longpoll.timeout
            ):
                self._ok()  # held past its own timeout with nothing new: normal, ask again
                return 0.0
            return self._failed(exc.detail, None)
        self._polled(started)
        if 200 <= status < 300:
            if len(body) > self.limits.max_snapshot:
                return self._failed(f"answer of {len(body)} bytes over max_snapshot", None)
            changed = self._accept(headers, body)
        elif status == 304:
            self.not_modified += 1
            changed = False
        else:
            retry = parse_retry_after(_header(headers, b"retry-after"), self.clock.wall())
            return self._failed(f"upstream answered {status}", retry)
        self._ok()
        if longpoll is None:
            assert spec.every is not None
            return spec.every * self.rng.uniform(1 - EVERY_JITTER, 1 + EVERY_JITTER)
        if changed:
            return 0.0
        # Nothing new, and quickly: the upstream did not hold the request. Don't spin.
        return max(0.0, settings.LONGPOLL_MIN_GAP - (self.clock.now() - started))

    def _polled(self, started: float) -> None:
        seconds = self.clock.now() - started
        observe(self.poll_buckets, seconds)
        self.poll_seconds += seconds
        self.last_poll_at = self.clock.wall()

    def _ok(self) -> None:
        if self.backoff.failures and self._streak_logged:
            self.log.info(
                "stream %s: upstream recovered after %d failure(s)",
                self.name,
                self.backoff.failures,
            )
        self._streak_logged = False
        self.backoff.reset()
        self.state = ChannelState.POLLING

    def _failed(self, why: str, retry_after: float | None, exc: Exception | None = None) -> float:
        self.errors += 1
        self.last_error, self.last_error_at = why, self.clock.wall()
        self.state = ChannelState.BACKOFF
        delay = self.backoff.next(retry_after)
        self.retry_at = self.last_error_at + delay
        now = self.clock.now()
        if now - self._logged_at >= ERROR_LOG_INTERVAL:
            more = f" (+{self._suppressed} more failures not logged)" if self._suppressed else ""
            self.log.warning(
                "stream %s: poll failed: %s; retrying in %.1fs%s",
                self.name,
                why,
                delay,
                more,
                exc_info=exc,
            )
            self._logged_at = now
            self._suppressed = 0
            self._streak_logged = True
        else:
            self._suppressed += 1
        self._notify()  # plain GETs waiting for a first answer learn it failed
        return delay

    # --- change detection -----------------------------------------------------------------------

    def _accept(self, headers: Headers, body: bytes) -> bool:
        """A 2xx answer: remember validators and cursor; publish if it is a change."""
        spec = self.spec
        if spec.every is not None:
            validators: Headers = []
            etag = _header(headers, b"etag")
            if etag is not None:
                validators.append((b"if-none-match", etag))
            modified = _header(headers, b"last-modified")
            if modified is not None:
                validators.append((b"if-modified-since", modified))
            self._validators = validators
        doc: Any = _UNPARSED
        if spec.longpoll is not None:
            doc = _parse(body)
            cursor = None if doc is NOT_JSON else _dotted(doc, spec.longpoll.cursor)
            if cursor is not None:
                self._cursor = cursor if isinstance(cursor, str) else json.dumps(cursor)
        if body == self._body:
            return False
        content_type = _content_type(headers, body)
        if spec.emit == "snapshot":
            self._body = body
            self.publish(Item(self._next_id(), spec.event, body, content_type=content_type))
            return True
        if doc is _UNPARSED:
            doc = _parse(body)
        old = self._doc
        if doc is not NOT_JSON and old is not NOT_JSON and old is not _UNPARSED:
            if json_equal(old, doc):
                self._body = body  # the same JSON, spelled differently: nothing to tell
                return False
            patch = diff(spec.emit, old, doc)
        else:
            patch = None
            if doc is NOT_JSON and not self._warned_not_json:
                self._warned_not_json = True
                self.log.warning(
                    "stream %s: the body is not JSON; sending snapshots instead of %s events",
                    self.name,
                    spec.emit,
                )
        self._body = body
        self._doc = doc
        item_id = self._next_id()
        if patch is None:  # the first state, not JSON, or not expressible as a diff
            item = Item(item_id, "snapshot", body, content_type=content_type)
        else:
            item = Item(item_id, spec.emit, patch, state=body, content_type=content_type)
        self.publish(item)
        return True

    def _next_id(self) -> str:
        if self.seq >= SEQ_MAX:
            self.epoch = self._new_epoch()  # keeps string order == numeric order
            self.seq = 0
        self.seq += 1
        return f"{self.epoch:013d}-{self.seq:0{SEQ_WIDTH}d}"

    # --- admin ----------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        vary = None
        if self.vary:
            # The values may be per-user secrets: a digest tells streams apart without them.
            vary = hashlib.sha256(repr(self.vary).encode()).hexdigest()[:12]
        return {
            "key": f"{self.route.index}:{self.target}" + (f"#{vary}" if vary else ""),
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
        }

    def __repr__(self) -> str:
        return f"<Channel {self.name} {self.state.value} subscribers={len(self.subscribers)}>"


def _quote(text: str) -> str:
    return quote(text, safe="")


def _content_type(headers: Headers, body: bytes) -> str:
    value = _header(headers, b"content-type")
    if value is not None:
        return value.decode("latin-1")
    # No type given: a JSON-looking body is JSON (most stream upstreams are JSON APIs).
    return "application/json" if body.lstrip()[:1] in (b"{", b"[") else "application/octet-stream"
