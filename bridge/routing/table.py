"""The route table: first match wins, on the normalised path; and its printed form."""

from __future__ import annotations

from collections.abc import Iterable

from .model import Config, Route
from .paths import PathPattern
from .units import format_duration


class RouteTable:
    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = tuple(routes)
        self._patterns = [(PathPattern(r.path), r) for r in self.routes]

    @classmethod
    def from_config(cls, config: Config) -> RouteTable:
        return cls(config.routes)

    def match(self, path: str) -> tuple[Route, dict[str, str]] | None:
        for pattern, route in self._patterns:
            params = pattern.match(path)
            if params is not None:
                return route, params
        return None


def _address(value: tuple[str, int] | None) -> str:
    if value is None:
        return "-"
    host, port = value
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def describe(config: Config) -> str:
    """What `bridge check` prints: listeners, upstreams, then one line per route."""
    listen = config.listen
    lines = ["listeners:"]
    for name in ("https", "http3", "http", "admin"):
        value = getattr(listen, name)
        if value is not None:
            extra = f" ({listen.http_mode})" if name == "http" else ""
            lines.append(f"  {name:<6} {_address(value)}{extra}")
    lines.append("upstreams:")
    for up in config.upstreams.values():
        lines.append(f"  {up.name:<10} {up.url}  timeout {format_duration(up.timeout)}")
    lines.append("routes:")
    width = max((len(r.path) for r in config.routes), default=4)
    for route in config.routes:
        if route.stream is not None:
            spec = route.stream
            mode = (
                f"every {format_duration(spec.every)}"
                if spec.every is not None
                else f"longpoll {spec.longpoll.param}={spec.longpoll.cursor}"  # type: ignore[union-attr]
            )
            protocols = ",".join(sorted(spec.protocols))
            text = (
                f"stream  {spec.upstream.name} {spec.poll}  {mode}  emit {spec.emit}"
                f"  event {spec.event}  [{protocols}]"
            )
            if spec.vary:
                text += f"  vary {','.join(spec.vary)}"
        else:
            text = f"proxy   {route.upstream.name if route.upstream else '-'}"
        if route.push:
            text += f"  push {', '.join(route.push)}"
        elif route.push_auto:
            text += "  push auto"
        lines.append(f"  {route.index:>2}  {route.path:<{width}}  {text}")
    return "\n".join(lines)
