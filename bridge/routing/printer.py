"""The effective configuration as routes.yaml text: what `bridge check --print` and the admin
listener's `/config` show.

`render(config)` writes every key of every section, the defaults the file left out filled in,
as YAML that the loader accepts again and reads back to an equal `Config` (positions and the
file's own name aside), with relative paths written relative to the config's folder.

The walk follows the model (`bridge.routing.model`): each section's keys are its dataclass's
written fields, so a new key prints without a change here. Values print in the file's own
languages: durations `10s`/`250ms`, sizes `1MB`/`256KB`, addresses `host:port`, a route's
upstream by its name, `broker: memory`, `push: auto`. A key at its default where it means
nothing (`http_mode` without an http listener, `ws_format` on a stream without WebSocket) is
left out, because the loader warns about it.

Secrets follow one rule, applied to every string: a value read from a `${NAME}` reference
(`model.Expanded`) prints as the reference, not the value; any other value of a field marked
`model.SECRET` prints as `<masked>`, and so does the password of a broker URL.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args, get_type_hints
from urllib.parse import urlsplit

import yaml

from .model import (
    AccessLogConfig,
    BrokerConfig,
    Config,
    Expanded,
    Listen,
    Route,
    StreamSpec,
    Upstream,
    is_secret,
    written_fields,
)
from .units import SIZE_LIMITS, format_address, format_duration, format_size, parse_duration

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

MASKED = "<masked>"


def render(config: Config) -> str:
    """The whole effective configuration of `config`, as routes.yaml text."""
    head = (
        f"# The effective configuration of {config.source}\n"
        "# (every default filled in, secrets masked, relative paths from that file's folder)\n"
    )
    return head + dump(section(config, config.source.resolve().parent))


def dump(data: Mapping[str, Any]) -> str:
    """YAML text for `section`'s output: keys in model order, short lists on one line."""
    return yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False
    )


def section(obj: DataclassInstance, base: Path) -> dict[str, Any]:
    """One section as plain data: each written field by its key, `None` left out; `base` is
    the folder relative paths are written from."""
    hints = get_type_hints(type(obj))
    out: dict[str, Any] = {}
    for key, f in written_fields(obj):
        value = getattr(obj, f.name)
        writer = _WRITERS.get((type(obj), f.name))
        if writer is not None:
            shown = writer(obj, base)
        else:
            duration = float in (hints[f.name], *get_args(hints[f.name]))
            shown = _plain(value, key, base, duration=duration, secret=is_secret(f))
        inert = _INERT.get((type(obj), f.name))
        if inert is not None and inert(obj) and value == f.default:
            continue
        if shown is not None:
            out[key] = shown
    return out


def _plain(value: Any, key: str, base: Path, *, duration: bool, secret: bool) -> Any:
    """One value as the file writes it."""
    if isinstance(value, Expanded):
        return value.written
    if isinstance(value, str):
        return MASKED if secret else str(value)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and key in SIZE_LIMITS:
        return format_size(value)
    if isinstance(value, float | int) and duration:
        return _duration(value)
    if isinstance(value, int):
        return value
    if isinstance(value, Path):
        return _relative(value, base)
    if isinstance(value, Upstream):
        return value.name  # a route's upstream is a reference to the `upstreams:` entry
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return section(value, base)
    if isinstance(value, Mapping):
        return {  # named sections (`upstreams:`), or named values
            str(name): section(item, base)
            if dataclasses.is_dataclass(item) and not isinstance(item, type)
            else _plain(item, key, base, duration=duration, secret=secret)
            for name, item in value.items()
        }
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], int):
        return _Quoted(format_address(value))
    if isinstance(value, tuple | list | frozenset):
        items = sorted(value) if isinstance(value, frozenset) else value
        shown = [_plain(item, key, base, duration=duration, secret=secret) for item in items]
        return _Flow(shown) if all(not isinstance(i, dict) for i in shown) else shown
    raise TypeError(f"{key}: no routes.yaml form for {type(value).__name__}")


def _duration(seconds: float) -> str:
    """`10s`, `250ms`, `2m`; in seconds, with every digit, where the short form would round."""
    text = format_duration(seconds)
    if parse_duration(text) == seconds:
        return text
    return f"{Decimal(repr(float(seconds))):f}s"  # seconds: n * 1.0 reads back exact


def _relative(path: Path, base: Path) -> str:
    """`path` as the file may write it: relative to the config's folder when inside it."""
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


def _broker(config: Config, base: Path) -> str:
    broker: BrokerConfig | None = config.broker
    if broker is None:
        return "memory"
    url = broker.url
    password = urlsplit(url).password
    if password is not None:
        scheme, rest = url.split("://", 1)
        userinfo, at, where = rest.rpartition("@")
        user = userinfo.split(":", 1)[0]
        url = f"{scheme}://{user}:{MASKED}{at}{where}"
    return f"{url}?lease={_duration(broker.lease)}"


def _access_log_path(log: AccessLogConfig, base: Path) -> str:
    return log.path if log.path == "-" else _relative(Path(log.path), base)


def _push(route: Route, base: Path) -> Any:
    return "auto" if route.push_auto else _Flow(route.push)


def _upstream_headers(upstream: Upstream, base: Path) -> Any:
    """`headers:` as the name → value mapping the file writes; every value a secret."""
    shown = {
        name: _plain(value, "headers", base, duration=False, secret=True)
        for name, value in upstream.headers
    }
    return shown or None


# Fields written in a form of their own: the broker as one URL (`memory` for none), the access
# log's path (a string in the model) relative to the config, `push: auto` (a derived flag).
_WRITERS: dict[tuple[type, str], Callable[[Any, Path], Any]] = {
    (Config, "broker"): _broker,
    (AccessLogConfig, "path"): _access_log_path,
    (Route, "push"): _push,
    (Upstream, "headers"): _upstream_headers,
}

# Defaults that mean nothing where they stand: written out, the loader would warn (or, for
# `push` without the route's upstream, refuse), so they are left out.
_INERT: dict[tuple[type, str], Callable[[Any], bool]] = {
    (Listen, "http_mode"): lambda listen: listen.http is None,
    (StreamSpec, "ws_format"): lambda stream: "websocket" not in stream.protocols,
    (StreamSpec, "origins"): lambda stream: "websocket" not in stream.protocols,
    (Route, "push"): lambda route: route.upstream is None,
}


class _Flow(list[Any]):
    """A list of plain values, written on one line (`[sse, websocket]`)."""


class _Quoted(str):
    """A string written in double quotes, as addresses are in docs/configuration.md (`"0.0.0.0:8443"`)."""


class _Dumper(yaml.SafeDumper):
    """Lists indented under their key, as routes.yaml is written."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _flow(dumper: yaml.SafeDumper, data: _Flow) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)


def _quoted(dumper: yaml.SafeDumper, data: _Quoted) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(data), style='"')


_Dumper.add_representer(_Flow, _flow)
_Dumper.add_representer(_Quoted, _quoted)
