"""The routes.yaml schema: what each key means, checked against the whole of docs/configuration.md.

`build` reads a composed document (`bridge.routing.yamlwalk`) into a `Config`, one function per
section, each in the module named after it: `server` (listen, tls, access_log, limits, engines),
`upstreams`, `routes` (paths, push), `stream` (a route's `stream:` block) and `notify`. Field paths in
messages read like the file: `listen.https`, `upstreams.app.url`, `routes[0].stream.every`,
`routes[2].push[1]`. Valid but meaningless combinations (`send:` on a stream without
`websocket`, `http_mode` without `listen.http`) become warnings at the same file:line:col.

A section's keys, their defaults and a `Literal` field's allowed values are the model's
(`bridge.routing.model`, and `bridge.settings.Limits` for `limits:`): a key left out is left to
the dataclass default, so a new optional key is a field there and a line reading it here.
"""

from __future__ import annotations

from pathlib import Path

from yaml.nodes import Node

from ..broker import parse_broker
from ..model import BrokerConfig, Config, keys
from ..yamlwalk import Walker, present
from .notify import read_notify
from .routes import read_routes
from .server import read_access_log, read_engines, read_limits, read_listen, read_tls
from .upstreams import read_upstreams

TOP_KEYS = keys(Config)


def build(w: Walker, root: Node, source: Path) -> Config | None:
    """The config `root` describes, or None if `w` recorded a problem; relative paths are
    resolved from the folder of `source`."""
    top = w.mapping(root, "", TOP_KEYS)
    if top is None:
        return None
    base = source.resolve().parent  # relative paths are relative to the file, not the cwd
    listen = read_listen(w, present(top, "listen"), root)
    tls = read_tls(w, present(top, "tls"), base)
    access_log = read_access_log(w, present(top, "access_log"), base)
    limits = read_limits(w, present(top, "limits"))
    upstreams, declared = read_upstreams(w, present(top, "upstreams"))
    routes = read_routes(w, present(top, "routes"), upstreams, declared, root)
    broker = read_broker(w, present(top, "broker"))
    notify = read_notify(w, present(top, "notify"))
    engines = read_engines(w, present(top, "engines"))
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
        notify=notify,
        engines=engines,
    )


def read_broker(w: Walker, node: Node | None) -> BrokerConfig | None:
    """`broker:` (`bridge.routing.broker`); None for the in-process broker."""
    if node is None:
        return None
    text = w.text(node, "broker")
    if text is None:
        return None
    return parse_broker(text, lambda message: w.error(node, "broker", message))
