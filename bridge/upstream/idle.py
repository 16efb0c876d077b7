"""The idle half of the upstream keep-alive pool: per origin, a bounded LIFO of idle connections.

Checkout takes the most recently used connection (LIFO): it is the one least likely to have
been closed by the upstream's own keep-alive timer, and it leaves the older ones at the other
end to age out. Idle connections are closed after `max_idle` seconds, on checkout and by one
sweep timer per pool, so a quiet proxy does not hold sockets open forever. When an origin's
list is full the *oldest* connection makes room, for the same reason.

It only keeps connections: whether one may be kept after an answer (request sent whole,
keep-alive, no stray bytes) is `UpstreamPool.release`'s decision, and whether a kept one is
still usable (socket open, nothing unread) the connection's own `reusable` property.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

from .. import settings


class Poolable(Protocol):
    idle_since: float

    @property
    def reusable(self) -> bool: ...

    def close(self) -> None: ...


C = TypeVar("C", bound=Poolable)


class IdlePool(Generic[C]):
    def __init__(
        self,
        *,
        max_per_origin: int,
        max_idle: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_per_origin = max_per_origin
        self.max_idle = max_idle
        self._clock = clock
        # Each deque runs oldest (left) to newest (right).
        self._idle: dict[Hashable, deque[C]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def __len__(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    def count(self, origin: Hashable) -> int:
        idle = self._idle.get(origin)
        return len(idle) if idle else 0

    def checkout(self, origin: Hashable) -> C | None:
        """The newest reusable idle connection for `origin`, or None; dead ones are closed."""
        idle = self._idle.get(origin)
        if not idle:
            return None
        oldest_allowed = self._clock() - self.max_idle
        while idle:
            conn = idle.pop()
            if conn.reusable and conn.idle_since > oldest_allowed:
                return conn
            conn.close()
        return None

    def checkin(self, origin: Hashable, conn: C) -> None:
        """Keep `conn` (which the caller found reusable) for the next request to `origin`."""
        if self._closed or self.max_per_origin <= 0:
            conn.close()
            return
        idle = self._idle.get(origin)
        if idle is None:
            idle = self._idle[origin] = deque()
        elif len(idle) >= self.max_per_origin:
            idle.popleft().close()
        conn.idle_since = self._clock()
        idle.append(conn)
        if self._timer is None:
            self._arm(self.max_idle)

    def close(self) -> None:
        """Close every idle connection; later checkins close theirs at once."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()

    def sweep(self) -> None:
        """Close expired or dead idle connections; re-arm the timer for the next expiry."""
        self._timer = None
        now = self._clock()
        oldest_allowed = now - self.max_idle
        next_expiry: float | None = None
        for origin in list(self._idle):
            idle = self._idle[origin]
            while idle and idle[0].idle_since <= oldest_allowed:
                idle.popleft().close()
            # Dead ones (closed by the upstream meanwhile) go too, wherever they sit.
            if any(not conn.reusable for conn in idle):
                for conn in [c for c in idle if not c.reusable]:
                    idle.remove(conn)
                    conn.close()
            if not idle:
                del self._idle[origin]
                continue
            expiry = idle[0].idle_since + self.max_idle
            if next_expiry is None or expiry < next_expiry:
                next_expiry = expiry
        if next_expiry is not None:
            self._arm(max(0.0, next_expiry - now))

    def _arm(self, delay: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): checkout still expires lazily
            return
        # A little slack so one timer usually expires a whole batch of connections.
        self._timer = loop.call_later(
            delay + settings.UPSTREAM_POOL_SWEEP_SLACK * self.max_idle, self.sweep
        )
