"""`/metrics`: bridge's own counters as Prometheus series, read at scrape time.

A `prometheus_client` custom collector: nothing is registered or incremented on the hot path.
The connection layer, the hub's channels (`hub/counters.py`), the request tally
(`server/tally.py`) and the page handler keep plain ints where things happen; `collect()` walks
them when Prometheus asks, through the `Bridge`'s public attributes and the composition root's
`ObservedSite` (the hub, the push counts) (cost: one pass over connections and subscribers per scrape, a few
milliseconds at 10,000). Process RSS and open file descriptors come from `prometheus_client`'s
own `ProcessCollector`.

Series (all prefixed `bridge_`):

- `connections{protocol}`: open client connections (`http/1.1`, `h2`, `h3`, `unknown` for a
  connection whose protocol is not known yet); `connections_rejected_total`.
- `requests_total{route,kind,code}`: finished exchanges by route template, kind (http / sse /
  websocket) and status class; `request_duration_seconds{route}`: plain requests only.
- `stream_channels`, `stream_subscribers{route,kind,protocol}`, `stream_lagging{route}`.
- `upstream_polls_total{route}`, `upstream_not_modified_total{route}`,
  `upstream_errors_total{route}`, `upstream_poll_duration_seconds{route}` (a histogram).
- `stream_events_total{route}` (changes), `stream_deliveries_total{route}` (events x
  subscribers: the fan-out), `stream_conflated_total{route}` (subscribers that lagged and got
  conflated), `stream_closed_slow_total{route}` (closed for lagging too long).
- `pushes_promised_total`, `pushes_declined_total`.
- `notifies_total{source,outcome}` (source `endpoint` / `header`; outcome `accepted`,
  `not_found`, `conflict`, `unauthorized`, `bad_request`, `too_large`),
  `notify_polls_total{route}` (upstream polls a notify brought forward; part of
  `upstream_polls_total`).
- `reloads_total{outcome}` (`ok` / `invalid` / `failed`), `config_loaded_timestamp_seconds`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ..hub.counters import COUNTED, RouteTotals, cumulative
from ..hub.item import Format, slot_format
from ..hub.notify import OUTCOMES, SOURCES
from ..server.tally import DURATION_BUCKETS

if TYPE_CHECKING:
    from ..hub.hub import Hub
    from ..hub.notify import Notifier
    from ..server.run import Bridge

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_PROTOCOLS = {"Http1Protocol": "http/1.1", "Http2Protocol": "h2", "Http3Protocol": "h3"}
_HTTP_VERSIONS = {"1.0": "http/1.0", "1.1": "http/1.1", "2": "h2", "3": "h3"}
_CHANNEL_SERIES = {
    "polls": ("upstream_polls", "Upstream polls made by stream channels."),
    "notify_polls": ("notify_polls", "Upstream polls a notify brought forward (of the polls)."),
    "not_modified": ("upstream_not_modified", "Upstream polls answered 304 Not Modified."),
    "errors": ("upstream_errors", "Upstream polls that failed (error, timeout, non-2xx)."),
    "published": ("stream_events", "Changes published as stream events."),
    "fanned_out": ("stream_deliveries", "Events delivered: events times subscribers."),
    "conflated": ("stream_conflated", "Subscribers that lagged, so their events were conflated."),
    "closed_slow": ("stream_closed_slow", "Subscribers closed for lagging too long."),
}


class ObservedSite(Protocol):
    """What operations read of the request side, beyond the `Bridge` (app.py's `AppSite`)."""

    @property
    def hub(self) -> Hub: ...

    @property
    def notifier(self) -> Notifier: ...

    def pushes(self) -> tuple[int, int]:
        """(promised, declined) server pushes since start, across reloads."""


def connection_protocol(conn: Any) -> str:
    return _PROTOCOLS.get(type(getattr(conn, "adapter", None)).__name__, "unknown")


class BridgeCollector:
    """Reads one running `Bridge` and its site at scrape time."""

    def __init__(self, bridge: Bridge, site: ObservedSite) -> None:
        self.bridge = bridge
        self.site = site

    def collect(self) -> Iterator[Metric]:
        yield from self._connections()
        yield from self._requests()
        yield from self._streams()
        yield from self._pushes()
        yield from self._notifies()
        yield from self._reloads()

    def _connections(self) -> Iterator[Metric]:
        ctx = self.bridge.context
        open_ = GaugeMetricFamily(
            "bridge_connections", "Open client connections.", labels=["protocol"]
        )
        rejected = CounterMetricFamily(
            "bridge_connections_rejected", "Connections refused over max_connections."
        )
        counts: dict[str, int] = dict.fromkeys(("http/1.1", "h2"), 0)
        # QUIC connections are admitted to the same context: their adapter says "h3".
        for conn in ctx.connections if ctx is not None else ():
            protocol = connection_protocol(conn)
            counts[protocol] = counts.get(protocol, 0) + 1
        for protocol, count in sorted(counts.items()):
            open_.add_metric([protocol], count)
        rejected.add_metric([], ctx.rejected_connections if ctx is not None else 0)
        yield open_
        yield rejected

    def _requests(self) -> Iterator[Metric]:
        ctx = self.bridge.context
        requests = CounterMetricFamily(
            "bridge_requests",
            "Finished exchanges by route, kind (http, sse, websocket) and status class.",
            labels=["route", "kind", "code"],
        )
        durations = HistogramMetricFamily(
            "bridge_request_duration_seconds",
            "Duration of plain (non-stream) requests, head in to response end.",
            labels=["route"],
        )
        if ctx is not None:
            tally = ctx.tally
            for (route, kind, code), count in sorted(tally.requests.items()):
                requests.add_metric([route, kind, code], count)
            for route, buckets in sorted(tally.durations.items()):
                durations.add_metric(
                    [route],
                    cumulative(buckets, DURATION_BUCKETS),
                    sum_value=tally.seconds.get(route, 0.0),
                )
        yield requests
        yield durations

    def _streams(self) -> Iterator[Metric]:
        hub = self.site.hub
        channels = list(hub.channels.values())
        retired = hub.retired
        yield GaugeMetricFamily(
            "bridge_stream_channels", "Live stream channels (one upstream poller each).",
            value=len(channels),
        )  # fmt: skip
        subscribers = GaugeMetricFamily(
            "bridge_stream_subscribers",
            "Connected stream subscribers.",
            labels=["route", "kind", "protocol"],
        )
        lagging = GaugeMetricFamily(
            "bridge_stream_lagging", "Subscribers lagging right now.", labels=["route"]
        )
        by_sub: dict[tuple[str, str, str], int] = {}
        by_lag: dict[str, int] = {}
        totals: dict[str, RouteTotals] = {}
        for route, done in retired.items():
            total = totals[route] = RouteTotals()
            total.add(_Totals(done))
        for channel in channels:
            route = channel.route.path
            totals.setdefault(route, RouteTotals()).add(channel)
            by_lag[route] = by_lag.get(route, 0) + len(channel.lagging)
            for sub in channel.subscribers:
                key = (route, subscriber_kind(sub), subscriber_protocol(sub))
                by_sub[key] = by_sub.get(key, 0) + 1
        for key, count in sorted(by_sub.items()):
            subscribers.add_metric(list(key), count)
        for route, count in sorted(by_lag.items()):
            lagging.add_metric([route], count)
        yield subscribers
        yield lagging
        for name in COUNTED:
            series, text = _CHANNEL_SERIES[name]
            family = CounterMetricFamily(f"bridge_{series}", text, labels=["route"])
            for route, total in sorted(totals.items()):
                family.add_metric([route], total.counts[name])
            yield family
        polls = HistogramMetricFamily(
            "bridge_upstream_poll_duration_seconds",
            "Upstream poll latency, request out to answer in.",
            labels=["route"],
        )
        for route, total in sorted(totals.items()):
            polls.add_metric([route], cumulative(total.buckets), sum_value=total.poll_seconds)
        yield polls

    def _pushes(self) -> Iterator[Metric]:
        promised, declined = self.site.pushes()
        yield CounterMetricFamily(
            "bridge_pushes_promised", "HTTP/2 server pushes promised.", value=promised
        )
        yield CounterMetricFamily(
            "bridge_pushes_declined",
            "Pushes not made: the client refused push, or its stream limit was full.",
            value=declined,
        )

    def _notifies(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "bridge_notifies",
            "Notifies by source (endpoint: POST /notify, header: a proxied answer's) and outcome.",
            labels=["source", "outcome"],
        )
        counts = self.site.notifier.tally.counts
        for source in SOURCES:
            for outcome in OUTCOMES:
                value = counts.get((source, outcome), 0)
                if value or outcome == "accepted":
                    family.add_metric([source, outcome], value)
        yield family

    def _reloads(self) -> Iterator[Metric]:
        reloads = CounterMetricFamily(
            "bridge_reloads", "Config reloads by outcome.", labels=["outcome"]
        )
        outcomes = self.bridge.reloads
        for outcome in ("ok", "invalid", "failed"):
            reloads.add_metric([outcome], outcomes.get(outcome, 0))
        yield reloads
        yield GaugeMetricFamily(
            "bridge_config_loaded_timestamp_seconds",
            "When the config in use was loaded (epoch seconds).",
            value=self.bridge.config_loaded_at,
        )


class _Totals:
    """A `RouteTotals` shaped like a channel, so totals add up the same way."""

    def __init__(self, totals: RouteTotals) -> None:
        for name, value in totals.counts.items():
            setattr(self, name, value)
        self.poll_buckets = totals.buckets
        self.poll_seconds = totals.poll_seconds


def subscriber_kind(sub: Any) -> str:
    return "sse" if slot_format(sub.slot) is Format.SSE else "websocket"


def subscriber_protocol(sub: Any) -> str:
    exchange = getattr(sub.sink, "exchange", None)
    if exchange is None:
        return "unknown"
    version = exchange.request.http_version
    return _HTTP_VERSIONS.get(version, version)


def registry_for(bridge: Bridge, site: ObservedSite) -> CollectorRegistry:
    """A registry of its own per bridge (tests run several in one process): bridge's series
    and the process's RSS, CPU and open file descriptors."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BridgeCollector(bridge, site))  # type: ignore[arg-type]
    ProcessCollector(namespace="bridge", registry=registry)
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
