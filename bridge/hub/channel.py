"""A `Channel`: one stream key (route, path parameters, `vary` values), one upstream poller,
its bounded history, and its subscribers.

The poller runs while anyone listens and lingers briefly after the last one leaves. It asks
the upstream conditionally (`every`) or holds a long-poll with the cursor (`longpoll`), turns
each change into one `Item` (a snapshot, or a JSON Patch / Merge Patch computed once), and
fans it out synchronously. Upstream trouble is retried with backoff; subscribers keep their
last state and receive heartbeats, never error events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections import deque
from typing import Any, Protocol
from urllib.parse import quote

from .. import settings
from ..errors import StreamError
from ..events import Headers
from ..routing.model import Route, StreamSpec, Upstream
from ..routing.paths import substitute
from ..settings import Limits
from .backoff import Backoff, parse_retry_after
from .clock import Clock
from .diff import apply_merge_patch, dumps, json_patch, merge_patch
from .item import HEARTBEAT, Format, Item
from .subscription import Sink, Subscription

log = logging.getLogger("bridge.hub")

LONGPOLL_MARGIN = 5.0  # our request timeout beyond the upstream's own long-poll timeout


class Fetcher(Protocol):
    async def fetch(
        self, upstream: Upstream, target: str, headers: Headers, *, timeout: float, max_bytes: int
    ) -> tuple[int, Headers, bytes]: ...


def _header(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _dotted(doc: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            return None
    return doc


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
        on_idle: Any = None,
    ) -> None:
        spec = route.stream
        assert spec is not None
        self.key = key
        self.route = route
        self.spec: StreamSpec = spec
        self.params = params
        self.vary = vary
        self.fetcher = fetcher
        self.clock = clock
        self.limits = limits
        self.on_idle = on_idle
        self.target = substitute(spec.poll, params)
        self.subscribers: dict[Subscription, None] = {}
        self.lagging: set[Subscription] = set()
        self.history: deque[Item] = deque(maxlen=max(1, spec.history))
        self.latest: Item | None = None
        self.epoch = int(clock.wall() * 1000)
        self.seq = 0
        self.backoff = Backoff()
        self.polls = 0
        self.errors = 0
        self.state = "starting"
        self.last_sent = clock.now()
        self._body: bytes | None = None
        self._doc: Any = None
        self._validators: Headers = []
        self._cursor: str | None = None
        self._fallback_warned = False
        self._error_logged = 0.0
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._linger: asyncio.Task[None] | None = None
        self.waiters = 0  # plain GETs parked in wait_change: interest, like subscribers
        self.stopped = False

    # --- lifetime -------------------------------------------------------------------------------

    def start(self) -> None:
        if not self._tasks and not self.stopped:
            self._tasks = [
                asyncio.create_task(self._poll_loop(), name=f"poll {self.route.path}"),
                asyncio.create_task(self._tick_loop(), name=f"tick {self.route.path}"),
            ]

    def touch(self) -> None:
        """Someone is interested (a subscriber or a plain GET): run, and linger after."""
        self.start()
        if not self.subscribers:
            self._schedule_linger()

    def _schedule_linger(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
        self._linger = asyncio.create_task(self._linger_then_stop())

    async def _linger_then_stop(self) -> None:
        await self.clock.sleep(settings.STREAM_LINGER)
        if not self.subscribers and not self.waiters:
            self.stop()

    def stop(self) -> None:
        for sub in tuple(self.subscribers):
            sub.end_for_shutdown()
        self.stopped = True
        self.state = "stopped"
        for task in self._tasks:
            task.cancel()
        if self._linger is not None and self._linger is not asyncio.current_task():
            self._linger.cancel()
        if self.on_idle is not None:
            self.on_idle(self)

    # --- subscribers ----------------------------------------------------------------------------

    def subscribe(self, sink: Sink, fmt: Format, last_event_id: str | None) -> Subscription:
        sub = Subscription(self, sink, fmt, self.limits.subscriber_buffer)
        self.subscribers[sub] = None
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        self.start()
        for item in self._catch_up_items(last_event_id):
            sub.offer(item)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscribers.pop(sub, None)
        self.lagging.discard(sub)
        if not self.subscribers and not self.stopped:
            self._schedule_linger()

    def _catch_up_items(self, last_event_id: str | None) -> list[Item]:
        latest = self.latest
        if latest is None:
            return []  # nothing yet: the first poll will reach this subscriber
        if last_event_id is None:
            return [self.catch_up(latest)]
        missed = self._since(last_event_id)
        if missed is not None:
            return missed
        # Outside history (or another epoch): the whole current state, named `reset`
        # (patch/merge streams: a fresh `snapshot`, which their clients already handle).
        if self.spec.emit == "snapshot":
            return [latest.renamed("reset")]
        return [latest.as_snapshot("snapshot")]

    def _since(self, last_event_id: str) -> list[Item] | None:
        epoch, _, seq_text = last_event_id.partition("-")
        if epoch != str(self.epoch) or not seq_text.isdigit() or not self.history:
            return None
        seq = int(seq_text)
        first = self.seq - len(self.history) + 1
        if seq < first - 1 or seq > self.seq:
            return None
        return list(self.history)[seq - first + 1 :]

    def catch_up(self, item: Item) -> Item:
        """The item a newcomer or a drained lagger gets for the state `item` carries."""
        return item if self.spec.emit == "snapshot" else item.as_snapshot("snapshot")

    def retry_ms(self) -> int:
        return int(settings.SSE_RETRY_MS * random.uniform(0.75, 1.5))

    # --- fan-out --------------------------------------------------------------------------------

    def publish(self, item: Item) -> None:
        self.history.append(item)
        self.latest = item
        self.last_sent = self.clock.now()
        for sub in tuple(self.subscribers):
            sub.offer(item)
        self._changed.set()
        self._changed = asyncio.Event()

    def _heartbeat(self) -> None:
        self.last_sent = self.clock.now()
        for sub in tuple(self.subscribers):
            sub.offer(HEARTBEAT)

    async def _tick_loop(self) -> None:
        """Heartbeats when idle, and closing subscribers that stay stuck."""
        interval = min(self.spec.heartbeat, settings.LAG_CLOSE_AFTER) / 2
        while True:
            await self.clock.sleep(interval * random.uniform(0.8, 1.2))
            now = self.clock.now()
            for sub in [s for s in self.lagging if now - s.lag_since > settings.LAG_CLOSE_AFTER]:
                log.info(
                    "closing a subscriber of %s stuck for %.0fs",
                    self.route.path,
                    now - sub.lag_since,
                )
                sub.close_lagging()
            if now - self.last_sent >= self.spec.heartbeat:
                self._heartbeat()

    async def wait_change(self, after: str | None, timeout: float) -> Item | None:
        self.waiters += 1
        try:
            return await self._wait_change(after, timeout)
        finally:
            self.waiters -= 1
            if not self.waiters and not self.subscribers and not self.stopped:
                self._schedule_linger()

    async def _wait_change(self, after: str | None, timeout: float) -> Item | None:
        deadline = self.clock.now() + timeout
        while self.latest is None or self.latest.id == after:
            remaining = deadline - self.clock.now()
            if remaining <= 0:
                return None
            changed = self._changed
            waiter = asyncio.ensure_future(changed.wait())
            sleeper = asyncio.ensure_future(self.clock.sleep(remaining))
            try:
                await asyncio.wait({waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                sleeper.cancel()
        return self.latest

    # --- polling --------------------------------------------------------------------------------

    def _request_headers(self) -> Headers:
        headers: Headers = [(b"host", self.spec.upstream.authority.encode())]
        headers += self.vary  # only the route's `vary` headers: never Cookie/Authorization
        headers.append((b"accept", b"application/json, */*;q=0.5"))
        if self.spec.every is not None:
            headers += self._validators
        return headers

    def _poll_target(self) -> str:
        longpoll = self.spec.longpoll
        if longpoll is None or self._cursor is None:
            return self.target
        sep = "&" if "?" in self.target else "?"
        return f"{self.target}{sep}{quote(longpoll.param, safe='')}={quote(self._cursor, safe='')}"

    async def _poll_loop(self) -> None:
        spec = self.spec
        while True:
            delay = await self._poll_once()
            if delay is None:
                assert spec.every is not None
                delay = spec.every * random.uniform(0.9, 1.1)
            if delay > 0:
                await self.clock.sleep(delay)

    async def _poll_once(self) -> float | None:
        """One upstream request; returns the delay before the next (None: the normal interval)."""
        spec = self.spec
        timeout = spec.upstream.timeout
        if spec.longpoll is not None:
            timeout = spec.longpoll.timeout + LONGPOLL_MARGIN
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
            if spec.longpoll is not None and exc.code.name == "UPSTREAM_TIMEOUT":
                return 0.0  # the upstream held the long-poll past our patience: ask again
            return self._failed(f"{exc.detail}", None)
        if status == 304:
            self._ok()
            return None if spec.longpoll is None else 0.0
        if not 200 <= status < 300:
            retry = parse_retry_after(_header(headers, b"retry-after"), self.clock.wall())
            return self._failed(f"upstream answered {status}", retry)
        self._ok()
        self._accept(headers, body)
        return None if spec.longpoll is None else 0.0

    def _ok(self) -> None:
        if self.backoff.failures:
            log.info("stream %s recovered", self.target)
        self.backoff.reset()
        self.state = "polling"

    def _failed(self, why: str, retry_after: float | None) -> float:
        self.errors += 1
        self.state = "backoff"
        delay = self.backoff.next(retry_after)
        now = self.clock.now()
        # One line per failure streak step, not per poll forever.
        if self.backoff.failures in (1, 2, 4, 8) or now - self._error_logged > 60:
            self._error_logged = now
            log.warning("poll %s failed (%s); retrying in %.1fs", self.target, why, delay)
        return delay

    def _accept(self, headers: Headers, body: bytes) -> None:
        validators: Headers = []
        etag = _header(headers, b"etag")
        modified = _header(headers, b"last-modified")
        if etag is not None:
            validators.append((b"if-none-match", etag))
        if modified is not None:
            validators.append((b"if-modified-since", modified))
        self._validators = validators
        doc: Any = None
        parsed = False
        if self.spec.longpoll is not None or self.spec.emit != "snapshot":
            try:
                doc = json.loads(body)
                parsed = True
            except ValueError:
                pass
        if self.spec.longpoll is not None and parsed:
            cursor = _dotted(doc, self.spec.longpoll.cursor)
            if cursor is not None:
                self._cursor = cursor if isinstance(cursor, str) else json.dumps(cursor)
        if body == self._body:
            return  # unchanged: no event
        content_type = (_header(headers, b"content-type") or b"application/json").decode("latin-1")
        item = self._item(body, doc, parsed, content_type)
        self._body = body
        self._doc = doc if parsed else None
        self.publish(item)

    def _item(self, body: bytes, doc: Any, parsed: bool, content_type: str) -> Item:
        self.seq += 1
        item_id = f"{self.epoch}-{self.seq}"
        emit = self.spec.emit
        if emit == "snapshot":
            return Item(item_id, self.spec.event, body, content_type=content_type)
        if not parsed:
            if not self._fallback_warned:
                self._fallback_warned = True
                log.warning(
                    "stream %s: body is not JSON; sending snapshots instead of %s",
                    self.target,
                    emit,
                )
            return Item(item_id, "snapshot", body, content_type=content_type)
        old = self._doc
        if old is None:
            return Item(item_id, "snapshot", body, content_type=content_type)
        if emit == "patch":
            diff = dumps(json_patch(old, doc))
            return Item(item_id, "patch", diff, state=body, content_type=content_type)
        patch = merge_patch(old, doc)
        if apply_merge_patch(old, patch) != doc:
            # A null member value cannot travel in a merge patch: send the whole state.
            return Item(item_id, "snapshot", body, content_type=content_type)
        return Item(item_id, "merge", dumps(patch), state=body, content_type=content_type)

    def stats(self) -> dict[str, Any]:
        return {
            "route": self.route.path,
            "params": self.params,
            "upstream": f"{self.spec.upstream.name} {self.target}",
            "subscribers": len(self.subscribers),
            "lagging": len(self.lagging),
            "last_id": self.latest.id if self.latest else None,
            "polls": self.polls,
            "errors": self.errors,
            "state": self.state,
        }
