"""A count of frames per time window with a ceiling: how a flood of frames that cost work but
carry nothing (RFC 9114 §10.5: "an endpoint can [...] treat excessive use as an error") is told
from a client's ordinary use, as HTTP/2's control-frame cap does (`H2_MAX_CONTROL_FRAMES`)."""

from __future__ import annotations

import time
from collections.abc import Callable


class FrameCap:
    """At most `limit` frames per `window` seconds; `over()` counts one and says whether the
    ceiling is passed. A fixed window: a burst of up to twice `limit` across a window's edge
    goes through, which is still bounded work."""

    __slots__ = ("_count", "_ends", "clock", "limit", "window")

    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window = window
        self.clock = clock
        self._count = 0
        self._ends = 0.0

    def over(self) -> bool:
        self._count += 1
        if self._count > self.limit:
            now = self.clock()
            if now < self._ends:
                return True
            self._ends = now + self.window
            self._count = 1
        elif self._count == 1:
            self._ends = self.clock() + self.window
        return False
