"""The admin listener: `/healthz`, `/readyz`, `/metrics` (Prometheus text), `/streams` (JSON)
and `/config` (YAML).

The `Bridge` runs it on the same connection code as the public listeners, with this tiny
handler that the composition root gives it (app.py); it is meant for loopback or a private network only (the loader refuses another address unless
`listen.admin_public: true`): `/streams` names every channel and its route parameters.

- `/healthz`: the process answers (liveness).
- `/readyz`: 200 once every listener is bound and a config is loaded, 503 before that and
  while shutting down (readiness: a load balancer stops sending new clients).
- `/metrics`: see `bridge/ops/metrics.py`.
- `/streams`: one object per live channel: key, route, subscribers by protocol, last poll,
  last change, last error (text and time), last notify (`last_notify_at`), backoff state,
  history size. Times are ISO 8601
  in UTC with the zone (`2026-12-07T21:13:12.000+00:00`); `vary` values never appear
  (per-user secrets), only a digest.
- `POST /notify`: the app's "this changed" (`bridge.ops.notify`), with the notify token.
- `/config`: the configuration in force (the last one loaded or reloaded), as
  `bridge check --print` shows it (`bridge.routing.printer`): defaults filled, secrets masked.
  Served as `application/yaml`, the type RFC 9512 registers for YAML (`text/yaml` never was).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import ErrorCode, StreamError
from ..routing.printer import render as render_config
from ..stream.exchange import Exchange
from .metrics import (
    CONTENT_TYPE,
    ObservedSite,
    registry_for,
    render,
    subscriber_kind,
    subscriber_protocol,
)
from .notify import NotifyEndpoint

if TYPE_CHECKING:
    from ..hub.channel import Channel
    from ..hub.hub import Hub
    from ..server.run import Bridge


class AdminHandler:
    def __init__(self, bridge: Bridge, site: ObservedSite) -> None:
        self.bridge = bridge
        self.site = site
        self.registry = registry_for(bridge, site)
        self.notify = NotifyEndpoint(bridge, site.notifier)

    async def __call__(self, exchange: Exchange) -> None:
        path = exchange.request.target.split("?", 1)[0]
        if path == "/notify":
            await self.notify(exchange)
            return
        if exchange.request.method not in ("GET", "HEAD"):
            raise StreamError(ErrorCode.METHOD_NOT_ALLOWED, headers=[(b"allow", b"GET, HEAD")])
        status = 200
        if path == "/healthz":
            body, kind = b"ok\n", b"text/plain; charset=utf-8"
        elif path == "/readyz":
            ready = self.bridge.ready
            status = 200 if ready else 503
            body, kind = (b"ready\n" if ready else b"not ready\n"), b"text/plain; charset=utf-8"
        elif path == "/metrics":
            body, kind = render(self.registry), CONTENT_TYPE.encode()
        elif path == "/streams":
            view = with_iso_times(streams_view(self.site.hub))
            body = json.dumps(view, indent=2).encode() + b"\n"
            kind = b"application/json"
        elif path == "/config":
            body = render_config(self.bridge.config).encode()
            kind = b"application/yaml; charset=utf-8"
        else:
            raise StreamError(ErrorCode.NOT_FOUND)
        headers = [
            (b"content-type", kind),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        await exchange.respond(status, headers, body)


def with_iso_times(view: Any) -> Any:
    """`view` with every `*_at` time (epoch seconds inside bridge) as ISO 8601 in UTC, to the
    millisecond, with its zone: what an operator reads and what `jq`/`date` parse."""
    if isinstance(view, list):
        return [with_iso_times(item) for item in view]
    if isinstance(view, dict):
        return {
            key: _iso(value) if key.endswith("_at") else with_iso_times(value)
            for key, value in view.items()
        }
    return view


def _iso(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC).isoformat(timespec="milliseconds")
    return value


def streams_view(hub: Hub) -> list[dict[str, Any]]:
    return [channel_view(channel) for channel in list(hub.channels.values())]


def channel_view(channel: Channel) -> dict[str, Any]:
    """The channel's own `stats()` (key, route, params, a digest of `vary`, subscribers, last
    id, history, polls, errors, state, leader), and what an operator asks next: subscribers by
    protocol, last poll, last change, last error (text and time), backoff."""
    view: dict[str, Any] = channel.stats()
    by_protocol: dict[str, int] = {}
    for sub in channel.subscribers:
        name = f"{subscriber_kind(sub)}/{subscriber_protocol(sub)}"
        by_protocol[name] = by_protocol.get(name, 0) + 1
    state = channel.state.value
    poller = channel.poller
    view.update(
        {
            "by_protocol": dict(sorted(by_protocol.items())),
            "not_modified": channel.not_modified,
            "last_poll_at": channel.last_poll_at,
            "last_change_at": channel.last_change_at,
            "last_error": channel.last_error,
            "last_error_at": channel.last_error_at,
            "last_notify_at": channel.leadership.notified_at,
            "backoff": {
                # The poller (this process's, while it leads the key) keeps the failure streak.
                "failures": poller.backoff.failures if poller is not None else 0,
                "retry_at": channel.retry_at if state == "backoff" else None,
            },
        }
    )
    return view
