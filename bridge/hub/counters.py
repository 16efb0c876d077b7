"""What the hub counts for `/metrics` and `/streams`, and where a stopped channel's counts go.

Channels keep plain int attributes, bumped in place where the thing happens (a poll, a 304, a
change fanned out): nothing else on the hot path, no locks, no label lookups. `/metrics` reads
them at scrape time. A channel's counters would vanish with it when it stops (its last
subscriber left), and Prometheus counters must never go down: so on stop they are added to
its route's `RouteTotals`, and a route's series is its totals plus its live channels.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

# Upstream poll latency buckets, seconds (Prometheus `le` bounds; +Inf is implied).
POLL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The channel attributes that are counters (monotonic over the channel's life).
COUNTED = ("polls", "not_modified", "errors", "published", "fanned_out", "conflated", "closed_slow")


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
