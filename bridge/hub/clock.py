"""Time for the hub, injectable: the real clock, and a virtual one for tests that never sleep.

Every timer of the hub (poll intervals, backoff, heartbeats, linger, lag close, long-poll
waits) goes through a `Clock`, so unit tests move time explicitly with `VirtualClock.advance`
instead of sleeping.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Any, Protocol


class Clock(Protocol):
    def now(self) -> float: ...  # monotonic seconds: for intervals and deadlines
    def wall(self) -> float: ...  # epoch seconds: for ids and HTTP dates
    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def wait_future(clock: Clock, future: asyncio.Future[Any], timeout: float) -> bool:
    """Wait until `future` is done or `timeout` seconds of `clock` time pass; True if done.

    `future` is shared by many waiters, so it is never cancelled here.
    """
    if future.done():
        return True
    if timeout <= 0:
        return False
    sleeper = asyncio.ensure_future(clock.sleep(timeout))
    try:
        await asyncio.wait((future, sleeper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
    return future.done()


class VirtualClock:
    """Time moves only when a test calls `advance`; sleepers wake in deadline order, and
    everything that can run without time passing runs before the next one wakes."""

    def __init__(self, start: float = 1000.0, wall: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall0 = wall - start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    def wall(self) -> float:
        return self._wall0 + self._now

    def set_wall(self, wall: float) -> None:
        """Step the wall clock (as NTP might) without moving monotonic time."""
        self._wall0 = wall - self._now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + max(0.0, seconds), next(self._order), future))
        await future

    @property
    def sleepers(self) -> int:
        """Sleeps still pending (cancelled ones excluded)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def settle(self, rounds: int = 50) -> None:
        """Let every task that can run without time passing run."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def advance(self, seconds: float) -> None:
        target = self._now + seconds
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not future.done():
                future.set_result(None)
                await self.settle()
        self._now = target
        await self.settle()
