"""The `upstreams:` section (named origins bridge proxies to and polls), and a route's or a
stream's reference to one of them by name."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from yaml.nodes import Node

from ..envref import expanded_text
from ..model import Expanded, Upstream, choices, keys
from ..paths import TARGET, PathError, normalize_path
from ..units import is_hostname, is_ipv6
from ..yamlwalk import Walker

UPSTREAM_KEYS = keys(Upstream)
HOST_MODES = choices(Upstream, "host_mode")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
# RFC 9110 §5.6.2 token: what a header name is made of.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 §5.5: a field value is visible characters, spaces and tabs.
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# Fields the poll sets itself or that belong to the connection, not to a credential.
_NOT_SETTABLE = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-connection",
        "expect",
        "if-none-match",
        "if-modified-since",
        "if-match",
        "if-unmodified-since",
        "if-range",
        "range",
    }
)


def read_upstreams(w: Walker, node: Node | None) -> tuple[dict[str, Upstream], list[str]]:
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
        upstream = _upstream(w, name, value, field)
        if upstream is not None:
            out[name] = upstream
    return out, list(pairs)


def _upstream(w: Walker, name: str, node: Node, field: str) -> Upstream | None:
    items = w.mapping(node, field, UPSTREAM_KEYS)
    if items is None:
        return None
    if "url" not in items:
        w.error(node, field, "missing url")
    values: dict[str, Any] = {}
    valid = True
    if "timeout" in items:
        values["timeout"] = w.duration(items["timeout"], f"{field}.timeout")
        valid = values["timeout"] is not None
    if "host" in items:
        # A wrong value is reported, but the upstream still exists for the routes naming it.
        host_mode = w.choice(items["host"], f"{field}.host", HOST_MODES)
        if host_mode is not None:
            values["host_mode"] = host_mode
    if "headers" in items:
        headers = _headers(w, items["headers"], f"{field}.headers")
        if headers is None:
            valid = False
        else:
            values["headers"] = headers
    url = w.text(items["url"], f"{field}.url") if "url" in items else None
    parsed = _upstream_url(w, items["url"], f"{field}.url", url) if url is not None else None
    if url is None or parsed is None or not valid:
        return None
    scheme, host, port, base_path = parsed
    return Upstream(
        name=name, url=url, scheme=scheme, host=host, port=port, base_path=base_path, **values
    )


def _headers(w: Walker, node: Node, field: str) -> tuple[tuple[str, str], ...] | None:
    """`headers:`, name → value (with `${NAME}` references); names lower-cased, as sent."""
    pairs = w.pairs(node, field)
    if pairs is None:
        return None
    out: dict[str, str] = {}
    valid = True
    for name, (key, value_node) in pairs.items():
        where = f"{field}.{name}"
        lower = name.lower()
        if not _TOKEN.fullmatch(name):
            w.error(key, where, f'"{name}" is not a header name')
            valid = False
            continue
        if lower in _NOT_SETTABLE:
            w.error(key, where, f"{name} is set by bridge itself, not by headers:")
            valid = False
            continue
        if lower in out:
            w.error(key, field, f'duplicate header "{name}" (names are case-insensitive)')
            valid = False
            continue
        value = expanded_text(w, value_node, where)
        if value is None:
            valid = False
            continue
        if not _FIELD_VALUE.fullmatch(value):
            # Never the value itself in a message: it may be a secret from the environment.
            source = "the environment's value" if isinstance(value, Expanded) else "the value"
            w.error(value_node, where, f"{source} has a line break or control character")
            valid = False
            continue
        out[lower] = value
    return tuple(out.items()) if valid else None


def _upstream_url(w: Walker, node: Node, field: str, url: str) -> tuple[str, str, int, str] | None:
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
            plain = normalize_path(base_path) == base_path and TARGET.fullmatch(base_path)
        except PathError:
            plain = False
        if not plain:
            w.error(node, field, "the base path must be a plain normalised path like /app")
            return None
    return "http", host, port or 80, base_path


def upstream_ref(
    w: Walker, node: Node, field: str, upstreams: dict[str, Upstream], declared: list[str]
) -> Upstream | None:
    """The upstream a route or stream names; None (reported) if there is no such upstream, or
    None (already reported at its own line) if it is one with a mistake."""
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
