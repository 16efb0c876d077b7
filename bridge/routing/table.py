"""The route table: routes in file order, matched on the normalised path (and, for a route
with a query template, on the query parameters it names), first match wins.

Also `describe`, the human-readable table `bridge check` prints: per stream route, the query
parameters it reads and those it ignores (any other one passes a plain GET through to the
upstream and refuses a subscription; `bridge.routing.query`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from ..certs import dev_cert_dir
from ..settings import Limits
from .model import Config, Route
from .paths import PathPattern
from .query import reads
from .units import SIZE_LIMITS, format_address, format_duration, format_size


class RouteTable:
    """Immutable; built once per config, shared by every connection."""

    __slots__ = ("_patterns", "routes")

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        self._patterns = tuple((PathPattern(route.path), route) for route in self.routes)

    @classmethod
    def from_config(cls, config: Config) -> RouteTable:
        return cls(config.routes)

    def __len__(self) -> int:
        return len(self.routes)

    def match(self, path: str, query: str = "") -> tuple[Route, dict[str, str]] | None:
        """The first route whose template matches `path` (already normalised) and `query` (as
        received, with or without its '?'), with its parameters decoded; None when nothing
        matches (the caller answers 404). A route whose query template names a parameter the
        request lacks does not match, so the next one may."""
        for pattern, route in self._patterns:
            params = pattern.match(path)
            if params is None:
                continue
            if pattern.query:
                values = pattern.match_query(query)
                if values is None:
                    continue
                params.update(values)
            return route, params
        return None


# docs/configuration.md's wording: what each listener serves, where it is not obvious from its name.
_LISTENER_NOTES = {"http3": "  (UDP + QUIC, HTTP/3; advertised with Alt-Svc)"}


def describe(config: Config) -> str:
    """What `bridge check` prints: listeners, upstreams, non-default limits, then the routes
    in match order, one line each."""
    listen = config.listen
    lines = ["listeners:"]
    for name in ("https", "http3", "http", "admin"):
        value = getattr(listen, name)
        if value is not None:
            extra = _LISTENER_NOTES.get(name, "")
            if name == "http":
                extra = f"  ({listen.http_mode})"
            lines.append(f"  {name:<6} {format_address(value)}{extra}")
    if config.tls.cert is not None:
        lines.append(f"tls: {config.tls.cert}, {config.tls.key}")
    else:
        lines.append(f"tls: omitted: development certificate in {dev_cert_dir(config.source)}")
    log = config.access_log
    lines.append(f"access log: {'stdout' if log.path == '-' else log.path} ({log.format})")
    changed = _changed_limits(config.limits)
    if changed:
        lines.append("limits: " + ", ".join(changed))
    lines.append("upstreams:")
    width = max((len(name) for name in config.upstreams), default=0)
    for up in config.upstreams.values():
        lines.append(
            f"  {up.name:<{width}}  {up.url}  timeout {format_duration(up.timeout)}"
            f"  host {up.host_mode}"
        )
    lines.append("routes:")
    width = max((len(route.path) for route in config.routes), default=0)
    for route in config.routes:
        lines.append(f"  {route.index:>2}  {route.path:<{width}}  {_route_text(route)}")
    return "\n".join(lines)


def _route_text(route: Route) -> str:
    parts: list[str] = []
    spec = route.stream
    if spec is not None:
        if spec.longpoll is not None:
            poll = spec.longpoll
            mode = f"longpoll {poll.param}={poll.cursor} {format_duration(poll.timeout)}"
        else:
            mode = f"every {format_duration(spec.every or 0.0)}"
        parts.append(
            f"stream  {spec.upstream.name} {spec.poll}  {mode}  emit {spec.emit}"
            f"  event {spec.event}  [{','.join(sorted(spec.protocols))}]"
        )
        if spec.vary:
            parts.append(f"vary {','.join(spec.vary)}")
        if spec.send:
            parts.append(f"send {spec.send}")
        read = ", ".join(reads(route)) or "none"
        parts.append(f"query reads {read}; ignores {', '.join(spec.ignore_query) or 'none'}")
        if route.upstream is not None:
            parts.append(f"else proxy {route.upstream.name}")
    else:
        parts.append(f"proxy   {route.upstream.name if route.upstream else '-'}")
    if route.push:
        parts.append(f"push {', '.join(route.push)}")
    elif route.push_auto:
        parts.append("push auto")
    return "  ".join(parts)


def _changed_limits(limits: Limits) -> list[str]:
    default = Limits()
    out = []
    for field in dataclasses.fields(Limits):
        value = getattr(limits, field.name)
        if value == getattr(default, field.name):
            continue
        if isinstance(value, float):
            shown = format_duration(value)
        elif field.name in SIZE_LIMITS:
            shown = format_size(value)
        else:
            shown = str(value)
        out.append(f"{field.name} {shown}")
    return out
