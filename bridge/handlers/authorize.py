"""The handlers' side of who may subscribe (the decisions are `bridge.hub.authorize`'s).

`admit` asks the hub before a subscriber or a plain GET is taken on, and answers a refused one
itself: the app's status with its `WWW-Authenticate`, or 502/504 when the check could not be
made. An admitted subscriber is `watch`ed: when a recheck refuses it, its `deny` ends it, SSE
with an event named `denied` and no `retry:` hint (a browser that reconnects anyway is refused
with the app's status, which ends an EventSource), WebSocket with close code 1008.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from ..hub.authorize import Grant, Refused
from ..hub.hub import Hub
from ..hub.render import sse_frame
from ..hub.subscription import Subscription
from ..routing.model import Route
from ..stream.exchange import Exchange
from .sink import ExchangeSink, finish_subscription

Deny = Callable[[Refused], None]


def _unwatched() -> None:
    """The stop call of a subscriber no recheck watches."""


class Admission:
    """An admitted request: its grant (None on a stream without `authorize`)."""

    __slots__ = ("grant", "hub")

    def __init__(self, hub: Hub, grant: Grant | None) -> None:
        self.hub = hub
        self.grant = grant

    def watch(self, deny: Deny) -> Callable[[], None]:
        """Recheck this subscriber; returns the call that stops it (when it leaves)."""
        if self.grant is None:
            return _unwatched
        return self.hub.authorizer.watch(self.grant, deny)


async def admit(
    hub: Hub, exchange: Exchange, route: Route, params: dict[str, str]
) -> Admission | None:
    """The admission of this request, or None when it was refused (and answered)."""
    try:
        grant = await hub.admit(route, params, exchange.request.headers)
    except Refused as refused:
        exchange.access.note = refused.reason
        await exchange.respond(refused.status, refused.headers, refused.body)
        return None
    return Admission(hub, grant)


def sse_deny(exchange: Exchange, subscription: Subscription, sink: ExchangeSink) -> Deny:
    """How a refused SSE subscriber ends: `event: denied`, then the end of the stream."""

    def deny(refused: Refused) -> None:
        if subscription.closed:
            return
        exchange.access.note = "closed: authorization refused"
        subscription.cancel()
        data = json.dumps({"status": refused.status}).encode()
        sink.close(sse_frame(None, "denied", data))

    return deny


def finish_watched(
    exchange: Exchange, subscription: Subscription, unwatch: Callable[[], None]
) -> None:
    """A watched SSE stream ended: stop its rechecks, then the usual finish."""
    unwatch()
    finish_subscription(exchange, subscription)
