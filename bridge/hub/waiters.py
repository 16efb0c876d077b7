"""The plain GETs parked on one channel, and what a request waiting for a first state is told.

- **Waiting** (`wait`): `Hub.latest` with no state yet, `Prefer: wait=N`. They share one future
  per channel, resolved whenever the channel publishes, hears of a failed poll or stops: a
  waiter then re-checks its own condition, in its request's task.
- **Held** (`hold`): a long-poll client's GET (`?since=41` on a `longpoll:` stream) whose
  cursor the stream has not passed. It is parked without a task, like a subscriber: a callback
  answers it when the cursor passes, at its deadline (one timer task per channel, for the
  earliest deadline), or when the channel stops (reload, shutdown) — always with the current
  snapshot, as a long-poll upstream would.
- **No snapshot** (`NoSnapshot`): a request that needed the stream's first state and did not
  get it, with the failure (a `Status`) the channel heard, if any.

Parked GETs are interest, like subscribers: the channel does not linger while `count` is above
zero.
"""

from __future__ import annotations

import asyncio
import heapq
import json
from collections.abc import Callable

from ..broker import Status
from .clock import Clock, wait_future
from .poller import NOT_JSON, _dotted, _parse


class NoSnapshot(Exception):
    """A request needed the stream's first state and did not get it: `failure` is the failed
    poll the channel heard (None: no answer within `waited` seconds)."""

    def __init__(self, failure: Status | None, waited: float) -> None:
        super().__init__(failure.detail if failure is not None else f"no answer in {waited:g}s")
        self.failure = failure
        self.waited = waited


class Held:
    """One parked long-poll GET: `answer()` is called exactly once, unless `cancel` (the client
    went away) comes first; `over()` follows either."""

    __slots__ = ("_waiters", "answer", "deadline", "over", "since")

    def __init__(
        self,
        waiters: Waiters,
        since: str,
        deadline: float,
        answer: Callable[[], None],
        over: Callable[[], None],
    ) -> None:
        self._waiters = waiters
        self.since = since
        self.deadline = deadline
        self.answer = answer
        self.over = over

    def __lt__(self, other: Held) -> bool:  # heap order for equal deadlines: any
        return id(self) < id(other)

    def cancel(self) -> None:
        self._waiters.release(self, answer=False)


class Waiters:
    __slots__ = ("_change", "_clock", "_cursor", "_deadlines", "_timer", "count", "held")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._change: asyncio.Future[None] | None = None
        self.count = 0  # waiting and held GETs
        self.held: dict[Held, None] = {}  # insertion-ordered set
        self._deadlines: list[tuple[float, Held]] = []  # a heap; released ones skipped
        self._timer: asyncio.Task[None] | None = None
        self._cursor: tuple[str, str | None] = ("", None)  # (item id, its cursor)

    def notify(self) -> None:
        """Something happened: every waiter looks again."""
        change, self._change = self._change, None
        if change is not None and not change.done():
            change.set_result(None)

    def _next_change(self) -> asyncio.Future[None]:
        if self._change is None:
            self._change = asyncio.get_running_loop().create_future()
        return self._change

    async def wait(
        self, done: Callable[[], bool], timeout: float, stopped: Callable[[], bool]
    ) -> bool:
        """Wait (bounded) until `done()`, re-checked at every `notify`; False on timeout or
        once `stopped()`."""
        self.count += 1
        try:
            deadline = self._clock.now() + timeout
            while not done():
                remaining = deadline - self._clock.now()
                if remaining <= 0 or stopped():
                    return False
                await wait_future(self._clock, self._next_change(), remaining)
            return True
        finally:
            self.count -= 1

    # --- held long-poll GETs --------------------------------------------------------------------

    def hold(
        self, since: str, timeout: float, answer: Callable[[], None], over: Callable[[], None]
    ) -> Held:
        held = Held(self, since, self._clock.now() + timeout, answer, over)
        self.held[held] = None
        self.count += 1
        heapq.heappush(self._deadlines, (held.deadline, held))
        if len(self._deadlines) > 2 * len(self.held) + 64:
            # Clients that left are skipped lazily; don't let a churn of them pile up.
            self._deadlines = [entry for entry in self._deadlines if entry[1] in self.held]
            heapq.heapify(self._deadlines)
        if self._timer is None:
            self._timer = asyncio.create_task(self._expire(), name="held GETs")
        return held

    def release(self, held: Held, *, answer: bool) -> None:
        if held not in self.held:
            return
        del self.held[held]
        self.count -= 1
        try:
            if answer:
                held.answer()
        finally:
            held.over()

    def changed(self, passed: Callable[[str], bool]) -> None:
        """A new state: answer every held GET whose `since` it has passed."""
        if self.held:
            for held in [h for h in self.held if passed(h.since)]:
                self.release(held, answer=True)

    def close(self) -> None:
        """The channel stops: answer every held GET now, and notify the waiting ones."""
        timer, self._timer = self._timer, None
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        for held in list(self.held):
            self.release(held, answer=True)
        self._deadlines.clear()
        self.notify()

    def tasks(self) -> list[asyncio.Task[None]]:
        return [self._timer] if self._timer is not None else []

    async def _expire(self) -> None:
        """Answer held GETs at their deadlines, earliest first; ends when none is held."""
        clock = self._clock
        try:
            while self._deadlines:
                deadline, held = self._deadlines[0]
                if held not in self.held:
                    heapq.heappop(self._deadlines)
                    continue
                remaining = deadline - clock.now()
                if remaining > 0:
                    await clock.sleep(remaining)
                    continue
                heapq.heappop(self._deadlines)
                self.release(held, answer=True)
        finally:
            if self._timer is asyncio.current_task():
                self._timer = None

    def cursor(self, item_id: str, state: bytes, path: str) -> str | None:
        """The long-poll cursor in a state (its `longpoll.cursor` field), read once per item."""
        if self._cursor[0] != item_id:
            self._cursor = (item_id, cursor_of(state, path))
        return self._cursor[1]


def cursor_of(state: bytes, path: str) -> str | None:
    """The value at a dotted path of a JSON body, spelled as the poller sends it back."""
    doc = _parse(state)
    found = None if doc is NOT_JSON else _dotted(doc, path)
    if found is None:
        return None
    return found if isinstance(found, str) else json.dumps(found)


def cursor_passed(cursor: str | None, since: str) -> bool:
    """Whether a client that has seen `since` has something new in a state at `cursor`.
    Numbers compare as numbers (the usual sequence or timestamp); any other cursor is opaque,
    and passed once it differs. No cursor at all: nothing to tell, so hold."""
    if cursor is None:
        return False
    try:
        return float(cursor) > float(since)
    except ValueError:
        return cursor != since
