"""Retry delays for a failing upstream: exponential with full jitter, and `Retry-After`.

ROUTES.md "Backoff": from 1 s, doubling, at most 30 s, full jitter (AWS architecture blog's
"full jitter": uniform in [0, cap]); a `Retry-After` (seconds or HTTP date, capped at 10 min)
replaces the next delay.
"""

from __future__ import annotations

import email.utils
import random

from .. import settings


class Backoff:
    def __init__(
        self,
        base: float = settings.BACKOFF_BASE,
        cap: float = settings.BACKOFF_MAX,
        rng: random.Random | None = None,
    ) -> None:
        self.base = base
        self.cap = cap
        self.failures = 0
        self.rng = rng or random.Random()

    def reset(self) -> None:
        self.failures = 0

    def ceiling(self) -> float:
        return min(self.cap, self.base * (2 ** min(max(self.failures - 1, 0), 30)))

    def next(self, retry_after: float | None = None) -> float:
        self.failures += 1
        if retry_after is not None:
            return retry_after
        # Full jitter, but never a busy zero: at least a tenth of the base.
        return max(self.base / 10, self.rng.uniform(0, self.ceiling()))


def parse_retry_after(value: bytes | None, now_wall: float) -> float | None:
    """Seconds to wait from a `Retry-After` value (RFC 9110 §10.2.3), capped; None if absent."""
    if not value:
        return None
    text = value.decode("latin-1").strip()
    if text.isdigit():
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text).timestamp()
        except (TypeError, ValueError):
            return None
        seconds = when - now_wall
    return min(max(0.0, seconds), settings.RETRY_AFTER_MAX)
