"""What the hub counts for `/metrics` and `/streams`, and where a stopped channel's counts go.

A channel is `ChannelCounters`: plain attributes of the channel itself, bumped in place where
the thing happens (a poll, a 304, a change fanned out): nothing else on the hot path, no
locks, no label lookups, not even a second object to reach. `/metrics` and `/streams` read
them by name at scrape time. A channel's counters would vanish with it when it stops (its last
subscriber left), and Prometheus counters must never go down: so on stop they are added to
its route's `RouteTotals`, and a route's series is its totals plus its live channels.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from .clock import Clock

# Upstream poll latency buckets, seconds (Prometheus `le` bounds; +Inf is implied).
POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The channel attributes that are counters (monotonic over the channel's life).
COUNTED = (
    "polls",
    "notify_polls",
    "not_modified",
    "errors",
    "published",
    "fanned_out",
    "conflated",
    "closed_slow",
)


def new_buckets() -> list[int]:
    return [0] * (len(POLL_BUCKETS) + 1)


def observe(buckets: list[int], seconds: float) -> None:
    """One poll's latency into a per-channel bucket list (not cumulative; see `cumulative`)."""
    buckets[bisect_left(POLL_BUCKETS, seconds)] += 1


def cumulative(
    buckets: list[int], bounds: tuple[float, ...] = POLL_BUCKETS
) -> list[tuple[str, float]]:
    """Prometheus histogram buckets: (le, count of observations <= le), +Inf last."""
    out: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip((*bounds, float("inf")), buckets, strict=True):
        total += count
        out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
    return out


class ChannelCounters:
    """The counters and last-event times of one channel (wall clock, like every `*_at`)."""

    __slots__ = (
        "_clock",
        "closed_slow",
        "conflated",
        "errors",
        "fanned_out",
        "last_change_at",
        "last_error",
        "last_error_at",
        "last_poll_at",
        "not_modified",
        "poll_buckets",
        "poll_seconds",
        "published",
        "retry_at",
    )

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.not_modified = 0
        self.errors = 0  # poll failures, whichever process polled
        self.published = 0  # events
        self.fanned_out = 0  # event deliveries: events x subscribers
        self.conflated = 0  # subscribers that started lagging (their items then conflated)
        self.closed_slow = 0  # subscribers closed for lagging too long
        self.poll_buckets = new_buckets()
        self.poll_seconds = 0.0
        self.last_poll_at: float | None = None
        self.last_change_at: float | None = None
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.retry_at: float | None = None  # in backoff: when the next poll goes

    def polled(self, seconds: float, status: int, retry_in: float | None) -> None:
        """This process's poller answered (status; 0 for no answer) or failed (status -1: then
        `retry_in` is the delay before its next poll)."""
        if status < 0:
            self.retry_at = self._clock.wall() + (retry_in or 0.0)
            return
        observe(self.poll_buckets, seconds)
        self.poll_seconds += seconds
        self.last_poll_at = self._clock.wall()
        if status == 304:
            self.not_modified += 1

    def failed(self, detail: str) -> None:
        """A poll failed (reported by the broker, whichever process polled)."""
        self.errors += 1
        self.last_error, self.last_error_at = detail or None, self._clock.wall()


class RouteTotals:
    """The summed counters of one route's channels that have stopped."""

    __slots__ = ("buckets", "counts", "poll_seconds")

    def __init__(self) -> None:
        self.counts = dict.fromkeys(COUNTED, 0)
        self.buckets = new_buckets()
        self.poll_seconds = 0.0

    def add(self, channel: Any) -> None:
        # getattr with a default: a channel kind that does not count something (say, one fed
        # by another process's poller) reads as zero rather than failing a scrape.
        for name in COUNTED:
            self.counts[name] += getattr(channel, name, 0)
        for index, count in enumerate(getattr(channel, "poll_buckets", ())):
            self.buckets[index] += count
        self.poll_seconds += getattr(channel, "poll_seconds", 0.0)
