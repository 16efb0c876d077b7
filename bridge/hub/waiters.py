"""The plain GETs parked on one channel (`Hub.latest` with no state yet, `Prefer: wait=N`).

They share one future per channel, resolved whenever the channel publishes, hears of a failed
poll or stops: a waiter then re-checks its own condition. Parked GETs are interest, like
subscribers: the channel does not linger while `count` is above zero.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from .clock import Clock, wait_future


class Waiters:
    __slots__ = ("_change", "_clock", "count")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._change: asyncio.Future[None] | None = None
        self.count = 0

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
