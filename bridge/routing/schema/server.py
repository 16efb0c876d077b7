"""How bridge itself serves: the `listen:`, `tls:`, `access_log:`, `limits:` and `engines:`
sections.

An absent section is its dataclass's defaults; so is a key left out of one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from yaml.nodes import Node, ScalarNode

from ...settings import Limits
from ..model import AccessLogConfig, Address, Engines, Listen, TlsConfig, choices, keys
from ..units import SIZE_LIMITS, is_loopback, parse_address
from ..yamlwalk import Walker

LISTEN_KEYS = keys(Listen)
TLS_KEYS = keys(TlsConfig)
ACCESS_LOG_KEYS = keys(AccessLogConfig)
LIMITS_KEYS = keys(Limits)
ENGINES_KEYS = keys(Engines)
HTTP_MODES = choices(Listen, "http_mode")
LOG_FORMATS = choices(AccessLogConfig, "format")
MAX_COUNT = 2**31 - 1


def read_listen(w: Walker, node: Node | None, root: Node) -> Listen:
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
        values["http_mode"] = w.choice(items["http_mode"], "listen.http_mode", HTTP_MODES)
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


def _file_path(w: Walker, node: Node, field: str, value: str, base: Path) -> Path | None:
    if not value.strip():
        w.error(node, field, "expected a file path")
        return None
    return base / Path(value).expanduser()  # an absolute path stays as it is


def read_tls(w: Walker, node: Node | None, base: Path) -> TlsConfig:
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
        w.positions[f"tls.{key}"] = value  # the files are checked after the walk (preflight)
        text = w.text(value, f"tls.{key}")
        paths[key] = _file_path(w, value, f"tls.{key}", text, base) if text is not None else None
    return TlsConfig(**paths)


def read_access_log(w: Walker, node: Node | None, base: Path) -> AccessLogConfig:
    if node is None:
        return AccessLogConfig()
    items = w.mapping(node, "access_log", ACCESS_LOG_KEYS)
    if items is None:
        return AccessLogConfig()
    values: dict[str, Any] = {}
    if "path" in items:
        w.positions["access_log.path"] = items["path"]
        text = w.text(items["path"], "access_log.path")
        if text is not None and text != "-":  # "-" is stdout, the default
            resolved = _file_path(w, items["path"], "access_log.path", text, base)
            if resolved is not None:
                values["path"] = str(resolved)
    if "format" in items:
        chosen = w.choice(items["format"], "access_log.format", LOG_FORMATS)
        if chosen is not None:
            values["format"] = chosen
    return AccessLogConfig(**values)


def read_limits(w: Walker, node: Node | None) -> Limits:
    if node is None:
        return Limits()
    items = w.mapping(node, "limits", LIMITS_KEYS)
    if items is None:
        return Limits()
    types = {f.name: f.type for f in dataclasses.fields(Limits)}
    values: dict[str, Any] = {}
    for key, value in items.items():
        field = f"limits.{key}"
        parsed: float | int | None
        if key in SIZE_LIMITS:
            parsed = w.size(value, field)
        elif types[key] in ("float", float):
            parsed = w.duration(value, field)
        else:
            parsed = w.integer(value, field, 1, MAX_COUNT)
        if parsed is not None:
            values[key] = parsed
    return Limits(**values)


def read_engines(w: Walker, node: Node | None) -> Engines:
    if node is None:
        return Engines()
    items = w.mapping(node, "engines", ENGINES_KEYS)
    if items is None:
        return Engines()
    values: dict[str, Any] = {}
    for key in ENGINES_KEYS:
        if key in items:
            node = items[key]
            if key == "http3" and isinstance(node, ScalarNode) and node.value == "qh3":
                w.error(
                    node,
                    "engines.http3",
                    "qh3 is not accepted yet: it does not pass bridge's HTTP/3 suite"
                    " (docs/performance.md, HTTP/3 engines); use aioquic",
                )
                continue
            chosen = w.choice(node, f"engines.{key}", choices(Engines, key))
            if chosen is not None:
                values[key] = chosen
    return Engines(**values)
