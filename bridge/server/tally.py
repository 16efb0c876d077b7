"""Requests counted as they finish, for `/metrics`: by route, kind and status class, and a
duration histogram of plain requests by route.

One dict increment and one bisection per finished exchange, nothing per byte or per event;
`/metrics` reads the dicts at scrape time. Stream exchanges (hours long) are counted but kept
out of the duration histogram, which would otherwise say nothing about request latency.
"""

from __future__ import annotations

from bisect import bisect_left

# Request duration buckets, seconds (Prometheus `le` bounds; +Inf is implied).
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class RequestTally:
    __slots__ = ("durations", "requests", "seconds")

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str, str], int] = {}  # (route, kind, "2xx" | "101") -> count
        self.durations: dict[str, list[int]] = {}  # route -> per-bucket counts, +Inf last
        self.seconds: dict[str, float] = {}  # route -> sum of durations

    def record(self, route: str | None, kind: str, status: int, duration: float) -> None:
        route = route or ""
        key = (route, kind, _code(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        if kind != "http":
            return
        buckets = self.durations.get(route)
        if buckets is None:
            buckets = self.durations[route] = [0] * (len(DURATION_BUCKETS) + 1)
        buckets[bisect_left(DURATION_BUCKETS, duration)] += 1
        self.seconds[route] = self.seconds.get(route, 0.0) + duration


def _code(status: int) -> str:
    """The `code` label: the status class, except 101, which a WebSocket upgrade ends with: an
    accepted upgrade is not an interim answer, and "1xx" would hide it among them."""
    if status == 101:
        return "101"
    return f"{status // 100}xx" if status >= 100 else "none"
