"""routes.yaml → an immutable `Config` and `RouteTable`; `match(path)` → route + parameters.

- `load_config(path)` / `parse_config(text, path)`: validate the whole docs/configuration.md contract,
  raising `bridge.errors.ConfigError` with every problem as `file:line:col: message`.
- `split_target`, `normalize_path`: the request path every route is matched on.
- `RouteTable(routes).match(path, query)`: first match wins (a route's query template must be
  met); `describe(config)` prints the table. `routing.query`: what a stream route reads.
- `substitute(template, params)`: fill a poll/send target without changing its structure.
"""

from __future__ import annotations

from .config import load_config, parse_config
from .model import Config, Route, StreamSpec, Upstream
from .paths import PathError, PathPattern, normalize_path, split_target, substitute
from .table import RouteTable, describe

__all__ = [
    "Config",
    "PathError",
    "PathPattern",
    "Route",
    "RouteTable",
    "StreamSpec",
    "Upstream",
    "describe",
    "load_config",
    "normalize_path",
    "parse_config",
    "split_target",
    "substitute",
]
