"""Load and validate `routes.yaml` into `bridge.routing.model.Config`.

The file is composed (not constructed) with PyYAML's SafeLoader, so every node keeps its line
and column; the walk below checks the whole contract of ROUTES.md, collects every problem, and
raises one `ConfigError` listing them all as `routes.yaml:LINE:COL: field.path: message`, the
file named as it was given. Field paths read like the file: `listen.https`,
`upstreams.app.url`, `routes[0].stream.every`, `routes[2].push[1]`. Valid but meaningless
combinations (`send:` on a stream without `websocket`, `http_mode` without `listen.http`)
become `Config.warnings`, at the same file:line:col; `load_config` also checks the files and
folders the config names (`preflight.py`), so what `bridge check` passes, `bridge serve` can
start.

YAML 1.1 makes some files mean what their author did not write, and both are refused: PyYAML
keeps the last of duplicate keys silently, and reads unquoted `on`/`off`/`yes`/`no` as booleans
(so `on:` as a key is an error, "quote it"). Scalars are read from their source text, never
through YAML 1.1's resolvers, so `010` is not octal and `1:30` is not ninety. Merge keys
(`<<: *defaults`) are honoured, so repeated stream settings can be written once.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import ConfigError, ConfigProblem
from ..settings import Limits
from .broker import parse_broker as _broker
from .model import (
    AccessLogConfig,
    Address,
    Config,
    Listen,
    LongPoll,
    Route,
    StreamSpec,
    TlsConfig,
    Upstream,
)
from .paths import PathError, PathPattern, normalize_path, split_target, template_params
from .preflight import check_paths
from .units import (
    SIZE_LIMITS,
    is_hostname,
    is_ipv6,
    is_loopback,
    parse_address,
    parse_duration,
    parse_size,
)

T = TypeVar("T")

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _BOOL, _NULL, _MERGE = (_TAG + t for t in ("str", "int", "bool", "null", "merge"))
_WHOLE = re.compile(r"-?(?:0|[1-9][0-9]*)")
# RFC 9110 §5.6.2 token: what a header name is made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_QUERY_NAME = re.compile(r"[A-Za-z0-9_.\-~]+")
# A target on the upstream, once its {params} are filled: RFC 3986 path and query characters.
_TARGET = re.compile(
    r"/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*"
    r"(?:\?(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*)?"
)
_PARAM = re.compile(r"\{[^{}]*\}")

TOP_KEYS = ("listen", "tls", "access_log", "limits", "upstreams", "routes", "broker")
LISTEN_KEYS = ("https", "http3", "http", "http_mode", "admin", "admin_public")
TLS_KEYS = ("cert", "key")
ACCESS_LOG_KEYS = ("path", "format")
UPSTREAM_KEYS = ("url", "timeout", "host")
ROUTE_KEYS = ("path", "upstream", "stream", "push")
STREAM_KEYS = (
    "upstream", "poll", "every", "longpoll", "emit", "event", "protocols", "vary", "history",
    "heartbeat", "send", "ws_format", "origins",
)  # fmt: skip
LONGPOLL_KEYS = ("cursor", "param", "timeout")
EMITS = ("snapshot", "patch", "merge")
PROTOCOLS = ("sse", "websocket")
DEFAULT_UPSTREAM_TIMEOUT = 10.0
DEFAULT_LONGPOLL_TIMEOUT = 30.0
MAX_HISTORY = 100_000
MAX_COUNT = 2**31 - 1


def load_config(path: str | Path, *, check_files: bool = True) -> Config:
    """Read, validate and build the config at `path`; `ConfigError` lists every problem.

    With `check_files` (what `bridge check` and `bridge serve` do) the files and folders the
    config needs are checked too (`preflight.py`): what would otherwise stop `serve` later, with
    a bare `[Errno 2]`, is reported here as file:line:col."""
    shown = str(path)
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        problem = ConfigProblem(shown, 1, 1, f"cannot read: {exc.strerror or exc}")
        raise ConfigError([problem]) from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ConfigError([ConfigProblem(shown, line, 1, "not UTF-8 text")]) from None
    # The path as the user wrote it (`./routes.yaml` stays `./routes.yaml`, ROUTES.md): a
    # Path would normalise it away in every message.
    return parse_config(text, path, check_files=check_files)


def parse_config(
    text: str, path: str | Path = "routes.yaml", *, check_files: bool = False
) -> Config:
    """Validate and build a config from its text; `path` names it in messages and is where
    relative paths (`tls`, `access_log`) are resolved from, like a file at that path."""
    shown = str(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        said = [part for part in (exc.context, exc.problem) if part]
        message = "YAML syntax: " + ", ".join(said)
        raise ConfigError([ConfigProblem(shown, line, col, message)]) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow in a document
        line = text.count("\n", 0, exc.position) + 1
        col = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        message = f"YAML syntax: unacceptable character #x{exc.character:04x}"
        raise ConfigError([ConfigProblem(shown, line, col, message)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigProblem(shown, 1, 1, f"YAML syntax: {exc}")]) from None
    if root is None:
        raise ConfigError([ConfigProblem(shown, 1, 1, "the file is empty")])
    walker = _Walker(shown)
    config = _build(walker, root, Path(path))
    if config is not None and check_files:
        check_paths(config, walker.positions, walker.error)
    if walker.problems or config is None:
        raise ConfigError(walker.problems)
    if walker.warnings:
        config = dataclasses.replace(config, warnings=tuple(walker.warnings))
    return config


class _Walker:
    """Reads typed values out of YAML nodes, recording a problem (with its node's position)
    instead of raising, so that one pass reports everything."""

    def __init__(self, shown: str) -> None:
        self.shown = shown
        self.problems: list[ConfigProblem] = []
        # Accepted, but almost certainly not what the author meant (`bridge check` prints them).
        self.warnings: list[ConfigProblem] = []
        # Nodes of fields checked after the walk (`preflight.py`), by field path.
        self.positions: dict[str, Node] = {}
        self._seen: set[ConfigProblem] = set()  # a merged (<<) node can be read more than once
        # Each merge source is flattened once: aliases can nest merges exponentially deep.
        self._merged: dict[int, dict[str, tuple[Node, Node]]] = {}

    def error(self, node: Node | None, field: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        col = node.start_mark.column + 1 if node is not None else 1
        problem = ConfigProblem(self.shown, line, col, f"{field}: {message}" if field else message)
        if problem not in self._seen:
            self._seen.add(problem)
            self.problems.append(problem)

    def warn(self, node: Node, field: str, message: str) -> None:
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        self.warnings.append(ConfigProblem(self.shown, line, col, f"{field}: {message}"))

    def pairs(self, node: Node, field: str) -> dict[str, tuple[Node, Node]] | None:
        """name → (key node, value node) of a mapping, `<<` merges applied; refuses keys that
        are not plain scalars, YAML 1.1 booleans, and duplicates."""
        if not isinstance(node, MappingNode):
            self.error(node, field, f"expected a mapping of keys to values, got {_kind(node)}")
            return None
        return self._pairs(node, field, {id(node)})

    def _pairs(
        self, node: MappingNode, field: str, inside: set[int]
    ) -> dict[str, tuple[Node, Node]]:
        explicit: dict[str, tuple[Node, Node]] = {}
        merged: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            if key.tag == _MERGE:
                sources = value.value if isinstance(value, SequenceNode) else [value]
                for source in sources:
                    if not isinstance(source, MappingNode) or id(source) in inside:
                        self.error(
                            source, field, "<< merges a mapping (an *alias), or a list of them"
                        )
                        continue
                    if id(source) not in self._merged:
                        self._merged[id(source)] = self._pairs(source, field, inside | {id(source)})
                    for name, pair in self._merged[id(source)].items():
                        merged.setdefault(name, pair)  # YAML: the first merged mapping wins
                continue
            if not isinstance(key, ScalarNode):
                self.error(key, field, "keys must be plain names")
                continue
            name = key.value
            if key.tag == _BOOL:
                where = f"{field}.{name}" if field else name
                self.error(key, where, f'"{name}" is read as a YAML 1.1 boolean; quote it')
                continue
            if name in explicit:
                self.error(key, field or name, f'duplicate key "{name}"')
                continue
            explicit[name] = (key, value)
        return merged | explicit  # a key written out overrides a merged one

    def mapping(self, node: Node, field: str, allowed: tuple[str, ...]) -> dict[str, Node] | None:
        """Like `pairs`, and every key must be one of `allowed`."""
        pairs = self.pairs(node, field)
        if pairs is None:
            return None
        out: dict[str, Node] = {}
        for name, (key, value) in pairs.items():
            if name not in allowed:
                known = ", ".join(sorted(allowed))
                what = f'unknown key "{name}"' if field else f'unknown top-level key "{name}"'
                self.error(key, field, f"{what} (expected one of: {known})")
                continue
            out[name] = value
        return out

    def text(self, node: Node, field: str) -> str | None:
        if not isinstance(node, ScalarNode):
            self.error(node, field, f"expected a string, got {_kind(node)}")
            return None
        if node.tag == _BOOL:
            self.error(
                node, field, f'expected a string, got "{node.value}", a YAML 1.1 boolean (quote it)'
            )
            return None
        if node.tag == _NULL:
            self.error(node, field, "expected a value, got nothing")
            return None
        if not node.tag.startswith(_TAG):
            self.error(node, field, f"unsupported YAML tag {node.tag}")
            return None
        return str(node.value)

    def integer(self, node: Node, field: str, low: int, high: int) -> int | None:
        if not isinstance(node, ScalarNode) or node.tag != _INT or not _WHOLE.fullmatch(node.value):
            self.error(node, field, "expected a whole number")
            return None
        value = int(node.value)
        if not low <= value <= high:
            self.error(node, field, f"must be between {low} and {high}")
            return None
        return value

    def parsed(self, node: Node, field: str, parse: Callable[[str], T]) -> T | None:
        """`parse` the node's text; its ValueError message becomes the problem."""
        value = self.text(node, field)
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            self.error(node, field, str(exc))
            return None

    def boolean(self, node: Node, field: str) -> bool | None:
        if not isinstance(node, ScalarNode) or node.value not in ("true", "false"):
            self.error(node, field, "expected true or false")
            return None
        return node.value == "true"

    def duration(self, node: Node, field: str) -> float | None:
        value = self.parsed(node, field, parse_duration)
        if value is not None and value <= 0:
            self.error(node, field, "must be greater than zero")
            return None
        return value

    def size(self, node: Node, field: str) -> int | None:
        value = self.parsed(node, field, parse_size)
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

    def strings(self, node: Node, field: str, example: str) -> list[tuple[str, Node, str]] | None:
        """(value, node, field[i]) for a list of strings."""
        if not isinstance(node, SequenceNode):
            self.error(node, field, f"expected a list, e.g. {example}, got {_kind(node)}")
            return None
        out = []
        for index, item in enumerate(node.value):
            where = f"{field}[{index}]"
            value = self.text(item, where)
            if value is not None:
                out.append((value, item, where))
        return out


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL:
        return "nothing"
    return f'"{node.value}"'


def _present(items: dict[str, Node], key: str) -> Node | None:
    """The node for an optional top-level section; `tls:` with nothing under it (say, every
    line commented out) means the defaults."""
    node = items.get(key)
    if isinstance(node, ScalarNode) and node.tag == _NULL:
        return None
    return node


def _build(w: _Walker, root: Node, source: Path) -> Config | None:
    top = w.mapping(root, "", TOP_KEYS)
    if top is None:
        return None
    base = source.resolve().parent  # relative paths are relative to the file, not the cwd
    listen = _listen(w, _present(top, "listen"), root)
    tls = _tls(w, _present(top, "tls"), base)
    access_log = _access_log(w, _present(top, "access_log"), base)
    limits = _limits(w, _present(top, "limits"))
    upstreams, declared = _upstreams(w, _present(top, "upstreams"))
    routes = _routes(w, _present(top, "routes"), upstreams, declared, root)
    broker_node = _present(top, "broker")
    broker = None
    if broker_node is not None:
        text = w.text(broker_node, "broker")
        if text is not None:
            broker = _broker(text, lambda message: w.error(broker_node, "broker", message))
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
        broker=broker,
    )


# --- listen, tls, access_log, limits -----------------------------------------------------------


def _listen(w: _Walker, node: Node | None, root: Node) -> Listen:
    if node is None:
        w.error(root, "listen", "missing: at least one of listen.https or listen.http is required")
        return Listen()
    items = w.mapping(node, "listen", LISTEN_KEYS)
    if items is None:
        return Listen()
    values: dict[str, Any] = {}
    tcp: dict[Address, str] = {}
    for key in ("https", "http3", "http", "admin"):
        if key not in items:
            continue
        address = w.parsed(items[key], f"listen.{key}", parse_address)
        if address is None:
            continue
        values[key] = address
        # http3 is UDP, so it may share the https port; the TCP listeners may not share one.
        if key != "http3" and address[1] != 0:
            if address in tcp:
                w.error(items[key], f"listen.{key}", f"same address as listen.{tcp[address]}")
            tcp.setdefault(address, key)
    if "http_mode" in items:
        values["http_mode"] = w.choice(
            items["http_mode"], "listen.http_mode", ("redirect", "serve")
        )
    if "http_mode" in items and "http" not in items:
        w.warn(items["http_mode"], "listen.http_mode", "has no effect without listen.http")
    public = False
    if "admin_public" in items:
        public = bool(w.boolean(items["admin_public"], "listen.admin_public"))
        values["admin_public"] = public
    admin = values.get("admin")
    if admin is not None and not public and not is_loopback(admin[0]):
        # /streams lists every channel (route parameters included) and /metrics the traffic:
        # an operator must say out loud that the world may read them.
        w.error(
            items["admin"],
            "listen.admin",
            f'"{admin[0] or "*"}" is not a loopback address, and /streams exposes every '
            "stream; use 127.0.0.1 or [::1], or set listen.admin_public: true",
        )
    if "https" not in items and "http" not in items:
        w.error(node, "listen", "at least one of https or http is required")
    if "http3" in items and "https" not in items:
        w.error(items["http3"], "listen.http3", "needs listen.https (its Alt-Svc is sent there)")
    return Listen(**{k: v for k, v in values.items() if v is not None})


def _file_path(w: _Walker, node: Node, field: str, value: str, base: Path) -> Path | None:
    if not value.strip():
        w.error(node, field, "expected a file path")
        return None
    return base / Path(value).expanduser()  # an absolute path stays as it is


def _tls(w: _Walker, node: Node | None, base: Path) -> TlsConfig:
    if node is None:
        return TlsConfig()
    items = w.mapping(node, "tls", TLS_KEYS)
    if items is None:
        return TlsConfig()
    if ("cert" in items) != ("key" in items):
        w.error(node, "tls", "give both cert and key, or neither")
        return TlsConfig()
    paths: dict[str, Path | None] = {}
    for key, value in items.items():
        w.positions[f"tls.{key}"] = value
        text = w.text(value, f"tls.{key}")
        paths[key] = _file_path(w, value, f"tls.{key}", text, base) if text is not None else None
    return TlsConfig(**paths)


def _access_log(w: _Walker, node: Node | None, base: Path) -> AccessLogConfig:
    if node is None:
        return AccessLogConfig()
    items = w.mapping(node, "access_log", ACCESS_LOG_KEYS)
    if items is None:
        return AccessLogConfig()
    path = "-"
    if "path" in items:
        w.positions["access_log.path"] = items["path"]
        text = w.text(items["path"], "access_log.path")
        if text is not None and text != "-":  # "-" is stdout
            resolved = _file_path(w, items["path"], "access_log.path", text, base)
            path = str(resolved) if resolved is not None else "-"
    fmt = "combined"
    if "format" in items:
        fmt = w.choice(items["format"], "access_log.format", ("combined", "json")) or fmt
    return AccessLogConfig(path=path, format=fmt)  # type: ignore[arg-type]


def _limits(w: _Walker, node: Node | None) -> Limits:
    if node is None:
        return Limits()
    fields = {f.name: f for f in dataclasses.fields(Limits)}
    items = w.mapping(node, "limits", tuple(fields))
    if items is None:
        return Limits()
    values: dict[str, Any] = {}
    for key, value in items.items():
        field = f"limits.{key}"
        parsed: float | int | None
        if key in SIZE_LIMITS:
            parsed = w.size(value, field)
        elif fields[key].type in ("float", float):
            parsed = w.duration(value, field)
        else:
            parsed = w.integer(value, field, 1, MAX_COUNT)
        if parsed is not None:
            values[key] = parsed
    return Limits(**values)


# --- upstreams ---------------------------------------------------------------------------------


def _upstreams(w: _Walker, node: Node | None) -> tuple[dict[str, Upstream], list[str]]:
    """The valid upstreams, and every declared name (so a route naming an upstream that is
    itself broken gets no second, misleading "unknown upstream" problem)."""
    if node is None:
        return {}, []
    pairs = w.pairs(node, "upstreams")
    if pairs is None:
        return {}, []
    out: dict[str, Upstream] = {}
    for name, (key, value) in pairs.items():
        field = f"upstreams.{name}"
        if not _NAME.fullmatch(name):
            w.error(key, field, "an upstream name is letters, digits, '_', '-' and '.'")
            continue
        items = w.mapping(value, field, UPSTREAM_KEYS)
        if items is None:
            continue
        if "url" not in items:
            w.error(value, field, "missing url")
        timeout: float | None = DEFAULT_UPSTREAM_TIMEOUT
        if "timeout" in items:
            timeout = w.duration(items["timeout"], f"{field}.timeout")
        host_mode = "client"
        if "host" in items:
            host_mode = w.choice(items["host"], f"{field}.host", ("client", "upstream")) or "client"
        url = w.text(items["url"], f"{field}.url") if "url" in items else None
        parsed = _upstream_url(w, items["url"], f"{field}.url", url) if url is not None else None
        if url is None or parsed is None or timeout is None:
            continue
        scheme, host, port, base_path = parsed
        out[name] = Upstream(name, url, scheme, host, port, base_path, timeout, host_mode)  # type: ignore[arg-type]
    return out, list(pairs)


def _upstream_url(w: _Walker, node: Node, field: str, url: str) -> tuple[str, str, int, str] | None:
    usage = 'expected "http://host[:port][/base]"'
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        w.error(node, field, f"{usage}: {exc}")
        return None
    scheme = parts.scheme.lower()
    if scheme == "https":
        w.error(node, field, "https upstreams are not supported yet; use http://")
        return None
    if scheme != "http" or not parts.hostname or not url.lower().startswith("http://"):
        w.error(node, field, usage)
        return None
    if "@" in parts.netloc:
        w.error(node, field, "no credentials in an upstream url")
        return None
    if "?" in url or "#" in url:
        w.error(node, field, "no query or fragment in an upstream url")
        return None
    host = parts.hostname
    if not (is_hostname(host) or (":" in host and is_ipv6(host))) or port == 0:
        w.error(node, field, usage)
        return None
    base_path = parts.path.rstrip("/")
    if base_path:
        try:
            plain = normalize_path(base_path) == base_path and _TARGET.fullmatch(base_path)
        except PathError:
            plain = False
        if not plain:
            w.error(node, field, "the base path must be a plain normalised path like /app")
            return None
    return "http", host, port or 80, base_path


def _upstream_ref(
    w: _Walker, node: Node, field: str, upstreams: dict[str, Upstream], declared: list[str]
) -> Upstream | None:
    name = w.text(node, field)
    if name is None or name in upstreams:
        return upstreams.get(name) if name is not None else None
    if name not in declared:
        # Every declared name, the broken ones marked: "none are defined" next to an upstream
        # that exists but has a mistake of its own (reported at its line) would mislead.
        names = [n if n in upstreams else f"{n} (invalid)" for n in declared]
        known = ", ".join(names) or "none are defined"
        w.error(node, field, f'unknown upstream "{name}" (upstreams: {known})')
    return None


# --- routes ------------------------------------------------------------------------------------


def _routes(
    w: _Walker,
    node: Node | None,
    upstreams: dict[str, Upstream],
    declared: list[str],
    root: Node,
) -> list[Route]:
    if node is None:
        w.error(root, "routes", "missing: at least one route is required")
        return []
    if not isinstance(node, SequenceNode):
        w.error(node, "routes", f"expected a list of routes, got {_kind(node)}")
        return []
    if not node.value:
        w.error(node, "routes", "at least one route is required")
        return []
    out: list[tuple[Route, Node]] = []
    for index, item in enumerate(node.value):
        built = _route(w, item, f"routes[{index}]", index, upstreams, declared)
        if built is not None:
            out.append(built)
    _check_reachable(w, out)
    return [route for route, _ in out]


def _check_reachable(w: _Walker, routes: list[tuple[Route, Node]]) -> None:
    """First match wins, so a route that an earlier one always beats can never be chosen:
    after a catch-all `/{rest*}`, after a template of the same shape (`/p/{a}` then `/p/{b}`),
    or a literal path an earlier template matches (`/p/{a}` then `/p/latest`). Almost certainly
    a mistake in the file, so it is one."""
    earlier: list[tuple[Route, PathPattern]] = []
    shapes: dict[str, Route] = {}
    for route, path_node in routes:
        pattern = PathPattern(route.path)
        shape = _PARAM.sub(lambda m: "{*}" if m.group(0).endswith("*}") else "{}", route.path)
        winner = next((r for r, p in earlier if p.matches_everything), None)
        why = "matches every path first"
        if winner is None and shape in shapes:
            winner, why = shapes[shape], "matches the same paths first"
        if winner is None and not pattern.params:
            winner = next((r for r, p in earlier if p.match(route.path) is not None), None)
            why = "matches it first"
        if winner is not None:
            w.error(
                path_node,
                f"routes[{route.index}].path",
                f"never matched: routes[{winner.index}] ({winner.path}) {why}",
            )
        shapes.setdefault(shape, route)
        earlier.append((route, pattern))


def _route(
    w: _Walker,
    node: Node,
    field: str,
    index: int,
    upstreams: dict[str, Upstream],
    declared: list[str],
) -> tuple[Route, Node] | None:
    items = w.mapping(node, field, ROUTE_KEYS)
    if items is None:
        return None
    template: str | None = None
    params: tuple[str, ...] | None = None  # None: the path is broken, so params are unknown
    if "path" not in items:
        w.error(node, field, "missing path")
    else:
        template = w.text(items["path"], f"{field}.path")
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
        upstream = _upstream_ref(w, items["upstream"], f"{field}.upstream", upstreams, declared)
    stream = None
    if "stream" in items:
        stream = _stream(w, items["stream"], f"{field}.stream", params, upstreams, declared)
    push: tuple[str, ...] = ()
    push_auto = False
    if "push" in items:
        push, push_auto = _push(w, items["push"], f"{field}.push")
        if "upstream" not in items:
            w.error(items["push"], f"{field}.push", "push needs the route's upstream (the page)")
    if template is None or params is None:
        return None
    route = Route(
        index=index,
        path=template,
        line=node.start_mark.line + 1,
        upstream=upstream,
        stream=stream,
        push=push,
        push_auto=push_auto,
        params=params,
    )
    return route, items["path"]


def _push(w: _Walker, node: Node, field: str) -> tuple[tuple[str, ...], bool]:
    if isinstance(node, ScalarNode) and node.tag == _STR and node.value == "auto":
        return (), True
    if not isinstance(node, SequenceNode):
        w.error(node, field, f'expected a list of paths or "auto", got {_kind(node)}')
        return (), False
    out: list[str] = []
    for index, item in enumerate(node.value):
        where = f"{field}[{index}]"
        value = w.text(item, where)
        if value is None:
            continue
        problem = _asset_problem(value)
        if problem is not None:
            w.error(item, where, problem)
        elif value in out:
            w.error(item, where, f"{value} is listed twice")
        else:
            out.append(value)
    return tuple(out), False


def _asset_problem(value: str) -> str | None:
    """Pushed assets are promised on the page's own origin: a path, nothing else."""
    usage = "expected a same-origin absolute path like /static/app.css"
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return usage
    try:
        path, query = split_target(value)
        normal = normalize_path(path)
    except PathError as exc:
        return f"{usage} ({exc})"
    if not _TARGET.fullmatch(value):
        return f"{usage} (percent-encode other characters)"
    if normal != path:
        return f"write the normalised path {normal}{query}"
    return None


# --- stream blocks -----------------------------------------------------------------------------


def _stream(
    w: _Walker,
    node: Node,
    field: str,
    params: tuple[str, ...] | None,
    upstreams: dict[str, Upstream],
    declared: list[str],
) -> StreamSpec | None:
    items = w.mapping(node, field, STREAM_KEYS)
    if items is None:
        return None
    for required in ("upstream", "poll"):
        if required not in items:
            w.error(node, field, f"missing {required}")
    if ("every" in items) == ("longpoll" in items):
        w.error(node, field, "exactly one of every or longpoll is required")
    before = len(w.problems)

    upstream = None
    if "upstream" in items:
        upstream = _upstream_ref(w, items["upstream"], f"{field}.upstream", upstreams, declared)
    poll = None
    if "poll" in items:
        poll = _target_template(w, items["poll"], f"{field}.poll", params)
    every = w.duration(items["every"], f"{field}.every") if "every" in items else None
    longpoll = _longpoll(w, items["longpoll"], f"{field}.longpoll") if "longpoll" in items else None

    values: dict[str, Any] = {}
    if "emit" in items:
        values["emit"] = w.choice(items["emit"], f"{field}.emit", EMITS)
    if "event" in items:
        values["event"] = _event_name(w, items["event"], f"{field}.event")
    if "protocols" in items:
        values["protocols"] = _protocols(w, items["protocols"], f"{field}.protocols")
    if "vary" in items:
        values["vary"] = _vary(w, items["vary"], f"{field}.vary")
    if "history" in items:
        values["history"] = w.integer(items["history"], f"{field}.history", 0, MAX_HISTORY)
    if "heartbeat" in items:
        values["heartbeat"] = w.duration(items["heartbeat"], f"{field}.heartbeat")
    if "send" in items:
        values["send"] = _target_template(w, items["send"], f"{field}.send", params)
    if "ws_format" in items:
        values["ws_format"] = w.choice(
            items["ws_format"], f"{field}.ws_format", ("envelope", "raw")
        )
    if "origins" in items:
        values["origins"] = _origins(w, items["origins"], f"{field}.origins")

    protocols = values.get("protocols")
    if protocols is not None and "websocket" not in protocols:
        # Accepted (the block is valid), but these only ever apply to WebSocket subscribers.
        for key, why in (
            ("send", "only WebSocket messages are sent upstream"),
            ("ws_format", "it shapes WebSocket messages"),
            ("origins", "Origin is checked on WebSocket handshakes"),
        ):
            if key in items:
                w.warn(
                    items[key],
                    f"{field}.{key}",
                    f"has no effect: {why}, and protocols has no websocket",
                )
    if len(w.problems) != before or upstream is None or poll is None:
        return None
    if (every is None) == (longpoll is None):
        return None
    return StreamSpec(upstream=upstream, poll=poll, every=every, longpoll=longpoll, **values)


def _target_template(
    w: _Walker, node: Node, field: str, params: tuple[str, ...] | None
) -> str | None:
    """A `poll` or `send` target: path (+ query) on the upstream, `{params}` of the route."""
    value = w.text(node, field)
    if value is None:
        return None
    if not value.startswith("/") or value.startswith("//"):
        w.error(node, field, "expected a path on the upstream, starting with /")
        return None
    try:
        names = template_params(value)
    except PathError as exc:
        w.error(node, field, str(exc))
        return None
    if not _TARGET.fullmatch(_PARAM.sub("x", value)):
        w.error(node, field, "only URL characters: percent-encode others; no spaces or '#'")
        return None
    if params is not None:
        for name in names:
            if name not in params:
                known = ", ".join(params) or "none"
                w.error(
                    node, field, f"{{{name}}} is not a parameter of the route path (has: {known})"
                )
                return None
    return value


def _longpoll(w: _Walker, node: Node, field: str) -> LongPoll | None:
    items = w.mapping(node, field, LONGPOLL_KEYS)
    if items is None:
        return None
    for key in ("cursor", "param"):
        if key not in items:
            w.error(node, field, f"missing {key}")
    cursor = w.text(items["cursor"], f"{field}.cursor") if "cursor" in items else None
    if cursor is not None and not all(part.strip() for part in cursor.split(".")):
        w.error(items["cursor"], f"{field}.cursor", "expected a JSON field like seq or meta.cursor")
        cursor = None
    param = w.text(items["param"], f"{field}.param") if "param" in items else None
    if param is not None and not _QUERY_NAME.fullmatch(param):
        w.error(items["param"], f"{field}.param", "expected a plain query parameter name")
        param = None
    timeout: float | None = DEFAULT_LONGPOLL_TIMEOUT
    if "timeout" in items:
        timeout = w.duration(items["timeout"], f"{field}.timeout")
    if cursor is None or param is None or timeout is None:
        return None
    return LongPoll(cursor=cursor, param=param, timeout=timeout)


def _event_name(w: _Walker, node: Node, field: str) -> str | None:
    event = w.text(node, field)
    # An SSE field value ends at the first line break (WHATWG HTML §9.2.6).
    if event is not None and (not event.strip() or re.search(r"[\r\n]", event)):
        w.error(node, field, "an event name is one non-empty line")
        return None
    return event


def _protocols(w: _Walker, node: Node, field: str) -> frozenset[str] | None:
    items = w.strings(node, field, "[sse, websocket]")
    if items is None:
        return None
    if not node.value:
        w.error(node, field, "name at least one of sse, websocket")
        return None
    chosen = set()
    for value, item, where in items:
        if value not in PROTOCOLS:
            w.error(item, where, f'expected sse or websocket, got "{value}"')
        chosen.add(value)
    return frozenset(chosen)


def _vary(w: _Walker, node: Node, field: str) -> tuple[str, ...] | None:
    items = w.strings(node, field, "[authorization]")
    if items is None:
        return None
    names: list[str] = []
    for value, item, where in items:
        if not _TOKEN.fullmatch(value):
            w.error(item, where, f'"{value}" is not a header name')
        elif value.lower() not in names:
            names.append(value.lower())  # header names are case-insensitive (RFC 9110 §5.1)
    return tuple(names)


def _origins(w: _Walker, node: Node, field: str) -> tuple[str, ...] | None:
    items = w.strings(node, field, '["https://app.example.com"]')
    if items is None:
        return None
    origins: list[str] = []
    for value, item, where in items:
        normal = normalize_origin(value)
        if normal is None:
            w.error(item, where, f'expected "scheme://host[:port]", got "{value}"')
        elif normal not in origins:
            origins.append(normal)
    return tuple(origins)


def normalize_origin(value: str) -> str | None:
    """RFC 6454 serialisation of an origin as written in `origins:`: lower-case scheme and
    host, default port dropped, IPv6 in brackets; None if it is not `scheme://host[:port]`."""
    try:
        parts = urlsplit(value.strip().lower())
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host or "@" in parts.netloc:
        return None
    if not (is_hostname(host) or (":" in host and is_ipv6(host))) or port == 0:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in value or "#" in value:
        return None
    default = 443 if parts.scheme == "https" else 80
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}" + ("" if port in (None, default) else f":{port}")
