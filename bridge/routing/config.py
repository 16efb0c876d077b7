"""Load and validate `routes.yaml` into `bridge.routing.model.Config`.

The file is composed (not loaded) with PyYAML's SafeLoader so every node keeps its line and
column; the walk below checks the whole contract of ROUTES.md, collects every problem, and
raises one `ConfigError` listing them all as `routes.yaml:LINE:COL: field: message`.
PyYAML silently keeps the last of duplicate keys and reads `on`/`yes` as booleans; both are
refused here, because either makes a config mean something its author did not write.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import ConfigError, ConfigProblem
from ..settings import Limits
from .model import (
    AccessLogConfig,
    Config,
    Listen,
    LongPoll,
    Route,
    StreamSpec,
    TlsConfig,
    Upstream,
)
from .paths import PathError, PathPattern, template_params
from .units import parse_address, parse_duration, parse_size

_STR = "tag:yaml.org,2002:str"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_SIZE_LIMITS = {"max_request_body", "max_ws_message", "max_snapshot", "subscriber_buffer"}
_DURATION_LIMITS = {"header_timeout", "tls_handshake_timeout", "keepalive_timeout"}

TOP_KEYS = {"listen", "tls", "access_log", "limits", "upstreams", "routes"}
LISTEN_KEYS = {"https", "http3", "http", "http_mode", "admin"}
ROUTE_KEYS = {"path", "upstream", "stream", "push"}
STREAM_KEYS = {
    "upstream", "poll", "every", "longpoll", "emit", "event", "protocols", "vary", "history",
    "heartbeat", "send", "ws_format", "origins",
}  # fmt: skip


class _Walker:
    def __init__(self, shown: str) -> None:
        self.shown = shown
        self.problems: list[ConfigProblem] = []

    def error(self, node: Node | None, field: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        col = node.start_mark.column + 1 if node is not None else 1
        text = f"{field}: {message}" if field else message
        self.problems.append(ConfigProblem(self.shown, line, col, text))

    def mapping(self, node: Node, field: str, allowed: set[str]) -> dict[str, Node] | None:
        if not isinstance(node, MappingNode):
            self.error(node, field, "expected a mapping of keys to values")
            return None
        out: dict[str, Node] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                self.error(key, field, "keys must be plain names")
                continue
            name = key.value
            where = f"{field}.{name}" if field else name
            if key.tag == _BOOL:
                self.error(key, where, f'"{name}" is read as a YAML 1.1 boolean; quote it')
                continue
            if name in out:
                self.error(key, field or name, f'duplicate key "{name}"')
                continue
            if name not in allowed:
                known = ", ".join(sorted(allowed))
                self.error(key, field or name, f'unknown key "{name}" (expected one of: {known})')
                continue
            out[name] = value
        return out

    def text(self, node: Node, field: str) -> str | None:
        if not isinstance(node, ScalarNode) or node.tag in (_BOOL, _NULL):
            what = "a YAML 1.1 boolean (quote it)" if node.tag == _BOOL else "not a string"
            self.error(node, field, f"expected a string, got {what}")
            return None
        return str(node.value)

    def integer(self, node: Node, field: str, low: int, high: int) -> int | None:
        if not isinstance(node, ScalarNode) or not re.fullmatch(r"\d+", str(node.value)):
            self.error(node, field, "expected a whole number")
            return None
        value = int(node.value)
        if not low <= value <= high:
            self.error(node, field, f"must be between {low} and {high}")
            return None
        return value

    def parsed(self, node: Node, field: str, parse: Any) -> Any:
        value = self.text(node, field)
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            self.error(node, field, str(exc))
            return None

    def duration(self, node: Node, field: str) -> float | None:
        value = self.parsed(node, field, parse_duration)
        if value is not None and value <= 0:
            self.error(node, field, "must be greater than zero")
            return None
        return value

    def choice(self, node: Node, field: str, choices: tuple[str, ...]) -> str | None:
        value = self.text(node, field)
        if value is not None and value not in choices:
            self.error(node, field, f'expected one of {", ".join(choices)}, got "{value}"')
            return None
        return value

    def strings(self, node: Node, field: str) -> list[tuple[str, Node]] | None:
        if not isinstance(node, SequenceNode):
            self.error(node, field, "expected a list, e.g. [a, b]")
            return None
        out = []
        for index, item in enumerate(node.value):
            value = self.text(item, f"{field}[{index}]")
            if value is not None:
                out.append((value, item))
        return out


def load_config(path: str | Path) -> Config:
    shown = str(path)
    walker = _Walker(shown)
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [ConfigProblem(shown, 1, 1, f"cannot read: {exc.strerror or exc}")]
        ) from None
    except UnicodeDecodeError:
        raise ConfigError([ConfigProblem(shown, 1, 1, "not UTF-8 text")]) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ConfigError(
            [ConfigProblem(shown, line, col, f"YAML syntax: {exc.problem}")]
        ) from None
    if root is None:
        raise ConfigError([ConfigProblem(shown, 1, 1, "the file is empty")])
    config = _build(walker, root, file.resolve().parent, file)
    if walker.problems or config is None:
        raise ConfigError(walker.problems)
    return config


def _build(w: _Walker, root: Node, base: Path, source: Path) -> Config | None:
    top = w.mapping(root, "", TOP_KEYS)
    if top is None:
        return None
    listen = _listen(w, top.get("listen"), root)
    tls = _tls(w, top.get("tls"), base)
    access_log = _access_log(w, top.get("access_log"), base)
    limits = _limits(w, top.get("limits"))
    upstreams = _upstreams(w, top.get("upstreams"))
    routes = _routes(w, top.get("routes"), upstreams, root)
    if w.problems:
        return None
    return Config(
        source=source,
        listen=listen,
        tls=tls,
        access_log=access_log,
        limits=limits,
        upstreams=upstreams,
        routes=tuple(routes),
    )


def _listen(w: _Walker, node: Node | None, root: Node) -> Listen:
    if node is None:
        w.error(root, "listen", "missing: at least one of listen.https or listen.http is required")
        return Listen()
    items = w.mapping(node, "listen", LISTEN_KEYS)
    if items is None:
        return Listen()
    values: dict[str, Any] = {}
    for key in ("https", "http3", "http", "admin"):
        if key in items:
            values[key] = w.parsed(items[key], f"listen.{key}", parse_address)
    if "http_mode" in items:
        values["http_mode"] = w.choice(
            items["http_mode"], "listen.http_mode", ("redirect", "serve")
        )
    if "https" not in items and "http" not in items:
        w.error(node, "listen", "at least one of https or http is required")
    if "http3" in items and "https" not in items:
        w.error(items["http3"], "listen.http3", "needs listen.https (its Alt-Svc is sent there)")
    return Listen(**{k: v for k, v in values.items() if v is not None})


def _tls(w: _Walker, node: Node | None, base: Path) -> TlsConfig:
    if node is None:
        return TlsConfig()
    items = w.mapping(node, "tls", {"cert", "key"})
    if items is None:
        return TlsConfig()
    if ("cert" in items) != ("key" in items):
        w.error(node, "tls", "give both cert and key, or neither")
        return TlsConfig()
    paths = {}
    for key in ("cert", "key"):
        if key in items:
            value = w.text(items[key], f"tls.{key}")
            if value is not None:
                paths[key] = base / Path(value).expanduser()
    return TlsConfig(**paths)


def _access_log(w: _Walker, node: Node | None, base: Path) -> AccessLogConfig:
    if node is None:
        return AccessLogConfig()
    items = w.mapping(node, "access_log", {"path", "format"})
    if items is None:
        return AccessLogConfig()
    path = "-"
    if "path" in items:
        value = w.text(items["path"], "access_log.path")
        if value is not None:
            path = value if value == "-" else str(base / Path(value).expanduser())
    fmt = "combined"
    if "format" in items:
        fmt = w.choice(items["format"], "access_log.format", ("combined", "json")) or fmt
    return AccessLogConfig(path=path, format=fmt)  # type: ignore[arg-type]


def _limits(w: _Walker, node: Node | None) -> Limits:
    if node is None:
        return Limits()
    fields = {f.name for f in dataclasses.fields(Limits)}
    items = w.mapping(node, "limits", fields)
    if items is None:
        return Limits()
    values: dict[str, Any] = {}
    for key, value in items.items():
        field = f"limits.{key}"
        if key in _SIZE_LIMITS:
            parsed = w.parsed(value, field, parse_size)
            if parsed is not None and parsed <= 0:
                w.error(value, field, "must be greater than zero")
                parsed = None
        elif key in _DURATION_LIMITS:
            parsed = w.duration(value, field)
        else:
            parsed = w.integer(value, field, 1, 10_000_000)
        if parsed is not None:
            values[key] = parsed
    return Limits(**values)


def _upstreams(w: _Walker, node: Node | None) -> dict[str, Upstream]:
    if node is None:
        return {}
    if not isinstance(node, MappingNode):
        w.error(node, "upstreams", "expected a mapping of names to upstreams")
        return {}
    out: dict[str, Upstream] = {}
    seen: set[str] = set()
    for key, value in node.value:
        name = str(key.value)
        field = f"upstreams.{name}"
        if name in seen:
            w.error(key, "upstreams", f'duplicate key "{name}"')
            continue
        seen.add(name)
        items = w.mapping(value, field, {"url", "timeout", "host"})
        if items is None:
            continue
        if "url" not in items:
            w.error(value, field, "missing url")
            continue
        url = w.text(items["url"], f"{field}.url")
        timeout = w.duration(items["timeout"], f"{field}.timeout") if "timeout" in items else 10.0
        host_mode = "client"
        if "host" in items:
            host_mode = w.choice(items["host"], f"{field}.host", ("client", "upstream")) or "client"
        if url is None:
            continue
        parsed = _upstream_url(w, items["url"], f"{field}.url", url)
        if parsed is None or timeout is None:
            continue
        scheme, host, port, base = parsed
        out[name] = Upstream(name, url, scheme, host, port, base, timeout, host_mode)  # type: ignore[arg-type]
    return out


def _upstream_url(w: _Walker, node: Node, field: str, url: str) -> tuple[str, str, int, str] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        w.error(node, field, f"bad URL: {exc}")
        return None
    if parts.scheme == "https":
        w.error(node, field, "https upstreams are not supported yet; use http://")
        return None
    if parts.scheme != "http" or not parts.hostname:
        w.error(node, field, 'expected "http://host[:port][/base]"')
        return None
    if parts.query or parts.fragment or parts.username:
        w.error(node, field, "no query, fragment or credentials in an upstream url")
        return None
    return "http", parts.hostname, port or 80, parts.path.rstrip("/")


def _routes(
    w: _Walker, node: Node | None, upstreams: dict[str, Upstream], root: Node
) -> list[Route]:
    if node is None:
        w.error(root, "routes", "missing: at least one route is required")
        return []
    if not isinstance(node, SequenceNode):
        w.error(node, "routes", "expected a list of routes")
        return []
    out = []
    for index, item in enumerate(node.value):
        route = _route(w, item, f"routes[{index}]", index, upstreams)
        if route is not None:
            out.append(route)
    return out


def _upstream_ref(
    w: _Walker, node: Node, field: str, upstreams: dict[str, Upstream]
) -> Upstream | None:
    name = w.text(node, field)
    if name is None:
        return None
    if name not in upstreams:
        known = ", ".join(sorted(upstreams)) or "none defined"
        w.error(node, field, f'unknown upstream "{name}" (upstreams: {known})')
        return None
    return upstreams[name]


def _route(
    w: _Walker, node: Node, field: str, index: int, upstreams: dict[str, Upstream]
) -> Route | None:
    items = w.mapping(node, field, ROUTE_KEYS)
    if items is None:
        return None
    if "path" not in items:
        w.error(node, field, "missing path")
        return None
    template = w.text(items["path"], f"{field}.path")
    params: tuple[str, ...] = ()
    if template is not None:
        try:
            params = PathPattern(template).params
        except PathError as exc:
            w.error(items["path"], f"{field}.path", str(exc))
            template = None
    if "upstream" not in items and "stream" not in items:
        w.error(node, field, "a route needs upstream (proxy) or stream (push stream)")
    upstream = None
    if "upstream" in items:
        upstream = _upstream_ref(w, items["upstream"], f"{field}.upstream", upstreams)
    stream = None
    if "stream" in items:
        stream = _stream(w, items["stream"], f"{field}.stream", params, upstreams)
    push: tuple[str, ...] = ()
    push_auto = False
    if "push" in items:
        push, push_auto = _push(w, items["push"], f"{field}.push")
        if "upstream" not in items:
            w.error(items["push"], f"{field}.push", "push needs the route's upstream")
    if template is None:
        return None
    return Route(
        index=index,
        path=template,
        line=node.start_mark.line + 1,
        upstream=upstream,
        stream=stream,
        push=push,
        push_auto=push_auto,
        params=params,
    )


def _push(w: _Walker, node: Node, field: str) -> tuple[tuple[str, ...], bool]:
    if isinstance(node, ScalarNode) and node.value == "auto" and node.tag == _STR:
        return (), True
    values = w.strings(node, field)
    if values is None:
        w.problems[-1] = dataclasses.replace(
            w.problems[-1], message=f'{field}: expected a list of paths or "auto"'
        )
        return (), False
    out = []
    for i, (value, item) in enumerate(values):
        if not value.startswith("/") or value.startswith("//") or "/../" in value + "/":
            w.error(
                item, f"{field}[{i}]", "expected a same-origin absolute path like /static/app.css"
            )
            continue
        out.append(value)
    return tuple(out), False


def _stream(
    w: _Walker,
    node: Node,
    field: str,
    params: tuple[str, ...],
    upstreams: dict[str, Upstream],
) -> StreamSpec | None:
    items = w.mapping(node, field, STREAM_KEYS)
    if items is None:
        return None
    ok = True
    for required in ("upstream", "poll"):
        if required not in items:
            w.error(node, field, f"missing {required}")
            ok = False
    if ("every" in items) == ("longpoll" in items):
        w.error(node, field, "exactly one of every or longpoll is required")
        ok = False
    upstream = (
        _upstream_ref(w, items["upstream"], f"{field}.upstream", upstreams)
        if "upstream" in items
        else None
    )
    poll = w.text(items["poll"], f"{field}.poll") if "poll" in items else None
    if poll is not None:
        poll = _target_template(w, items["poll"], f"{field}.poll", poll, params)
    every = w.duration(items["every"], f"{field}.every") if "every" in items else None
    longpoll = _longpoll(w, items["longpoll"], f"{field}.longpoll") if "longpoll" in items else None
    values: dict[str, Any] = {}
    if "emit" in items:
        values["emit"] = w.choice(items["emit"], f"{field}.emit", ("snapshot", "patch", "merge"))
    if "event" in items:
        event = w.text(items["event"], f"{field}.event")
        if event is not None and (not event or re.search(r"[\r\n]", event)):
            w.error(items["event"], f"{field}.event", "an event name is one non-empty line")
            event = None
        values["event"] = event
    if "protocols" in items:
        protocols = w.strings(items["protocols"], f"{field}.protocols") or []
        chosen = set()
        for value, item in protocols:
            if value not in ("sse", "websocket"):
                w.error(item, f"{field}.protocols", f'expected sse or websocket, got "{value}"')
            chosen.add(value)
        if not protocols:
            w.error(items["protocols"], f"{field}.protocols", "must name at least one protocol")
        values["protocols"] = frozenset(chosen)
    if "vary" in items:
        names = []
        for value, item in w.strings(items["vary"], f"{field}.vary") or []:
            if not _TOKEN.match(value):
                w.error(item, f"{field}.vary", f'"{value}" is not a header name')
            names.append(value.lower())
        values["vary"] = tuple(names)
    if "history" in items:
        values["history"] = w.integer(items["history"], f"{field}.history", 0, 100_000)
    if "heartbeat" in items:
        values["heartbeat"] = w.duration(items["heartbeat"], f"{field}.heartbeat")
    if "send" in items:
        send = w.text(items["send"], f"{field}.send")
        if send is not None:
            send = _target_template(w, items["send"], f"{field}.send", send, params)
        values["send"] = send
    if "ws_format" in items:
        values["ws_format"] = w.choice(
            items["ws_format"], f"{field}.ws_format", ("envelope", "raw")
        )
    if "origins" in items:
        origins = []
        for value, item in w.strings(items["origins"], f"{field}.origins") or []:
            normal = _origin(value)
            if normal is None:
                w.error(item, f"{field}.origins", f'expected "scheme://host[:port]", got "{value}"')
            else:
                origins.append(normal)
        values["origins"] = tuple(origins)
    if not ok or upstream is None or poll is None or any(v is None for v in values.values()):
        return None
    if ("every" in items and every is None) or ("longpoll" in items and longpoll is None):
        return None
    return StreamSpec(upstream=upstream, poll=poll, every=every, longpoll=longpoll, **values)


def _target_template(
    w: _Walker, node: Node, field: str, value: str, params: tuple[str, ...]
) -> str | None:
    if not value.startswith("/") or "#" in value:
        w.error(node, field, "expected a path on the upstream, starting with /")
        return None
    for name in template_params(value):
        if name not in params:
            known = ", ".join(params) or "none"
            w.error(node, field, f"{{{name}}} is not a parameter of the route path (has: {known})")
            return None
    return value


def _longpoll(w: _Walker, node: Node, field: str) -> LongPoll | None:
    items = w.mapping(node, field, {"cursor", "param", "timeout"})
    if items is None:
        return None
    missing = [k for k in ("cursor", "param") if k not in items]
    for key in missing:
        w.error(node, field, f"missing {key}")
    cursor = w.text(items["cursor"], f"{field}.cursor") if "cursor" in items else None
    param = w.text(items["param"], f"{field}.param") if "param" in items else None
    timeout = w.duration(items["timeout"], f"{field}.timeout") if "timeout" in items else 30.0
    if param is not None and not re.fullmatch(r"[A-Za-z0-9_.\-~]+", param):
        w.error(items["param"], f"{field}.param", "expected a plain query parameter name")
        return None
    if cursor is None or param is None or timeout is None:
        return None
    return LongPoll(cursor=cursor, param=param, timeout=timeout)


def _origin(value: str) -> str | None:
    try:
        parts = urlsplit(value.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    default = 443 if parts.scheme == "https" else 80
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + ("" if port in (None, default) else f":{port}")
