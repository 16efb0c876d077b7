"""`AccessRecord`: what one exchange's access-log line says beyond its request and response.

Handlers fill it as they learn things (the route matched, the upstream's status, a stream's
event count); the host reads it once, when the exchange is over, for the access log and the
request tally. Kept apart from the `Exchange` so the stream's own state is not mixed with
bookkeeping, and slotted: one lives for each of 10,000 idle stream subscribers.
"""

from __future__ import annotations


class AccessRecord:
    __slots__ = (
        "events",
        "kind",
        "lagged",
        "logged",
        "note",
        "request_id",
        "route",
        "started",
        "upstream_status",
        "ws_close",
    )

    def __init__(self, started: float) -> None:
        self.started = started  # epoch seconds, when the request head arrived
        self.request_id = ""  # requestid.py; also sent upstream as X-Request-Id
        self.route: str | None = None  # the route template that matched
        self.kind = "http"  # "http" | "sse" | "websocket" (one line per stream for the last two)
        self.upstream_status: int | None = None
        self.events: int | None = None  # stream events delivered
        self.lagged = False  # the stream subscriber lagged at least once
        self.note: str | None = None  # why it ended, when that is not plain
        self.ws_close: int | None = None  # WebSocket close code, whoever sent the close first
        self.logged = False
