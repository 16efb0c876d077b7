"""Retry delays for a failing upstream: exponential with full jitter, and `Retry-After`.

docs/configuration.md "Backoff": from `BACKOFF_BASE` (1 s), doubling, to at most `BACKOFF_MAX` (30 s), with
full jitter — the delay is uniform in [0, ceiling] (the AWS Architecture Blog's "Exponential
Backoff And Jitter"), so channels that failed together do not retry together. A `Retry-After`
(delta-seconds or an HTTP-date, RFC 9110 §10.2.3; capped at `RETRY_AFTER_MAX`) replaces the
next delay. No delay is shorter than `settings.BACKOFF_MIN`: a zero would be a busy loop against a
struggling upstream.
"""

from __future__ import annotations

import datetime
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
        self.failures = 0  # consecutive, since the last success
        self.rng = rng or random.Random()

    def reset(self) -> None:
        self.failures = 0

    def ceiling(self) -> float:
        """The upper bound of the delay after the current failure streak: base * 2^(n-1)."""
        return min(self.cap, self.base * (2 ** min(max(self.failures - 1, 0), 60)))

    def next(self, retry_after: float | None = None) -> float:
        """Count one more failure and return the delay before the next attempt."""
        self.failures += 1
        if retry_after:  # a zero or a date already past is no hint: back off as usual
            return max(settings.BACKOFF_MIN, retry_after)
        return max(settings.BACKOFF_MIN, self.rng.uniform(0, self.ceiling()))


def parse_retry_after(value: bytes | None, now_wall: float) -> float | None:
    """Seconds to wait from a `Retry-After` value, capped; None if absent or unreadable."""
    if not value:
        return None
    text = value.decode("latin-1").strip()
    if text.isascii() and text.isdigit():
        seconds = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # "-0000": RFC 5322 says UTC, without claiming a zone
            when = when.replace(tzinfo=datetime.UTC)
        seconds = when.timestamp() - now_wall
    return min(max(0.0, seconds), settings.RETRY_AFTER_MAX)
