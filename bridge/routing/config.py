"""Load and validate `routes.yaml` into `bridge.routing.model.Config`.

The text is composed into nodes that keep their line and column (`yamlwalk.py`), the schema
(`schema/`) walks them against the whole contract of docs/configuration.md, collecting every problem, and
one `ConfigError` lists them all as `routes.yaml:LINE:COL: field.path: message`, the file named
as it was given. Problems that are only warnings become `Config.warnings`. `load_config` also
checks the files and folders the config names (`preflight.py`), so what `bridge check` passes,
`bridge serve` can start.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import ConfigError, ConfigProblem
from .model import Config
from .preflight import check_paths
from .schema import build
from .yamlwalk import Walker, compose


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
    # The path as the user wrote it (`./routes.yaml` stays `./routes.yaml`, docs/configuration.md): a
    # Path would normalise it away in every message.
    return parse_config(text, path, check_files=check_files)


def parse_config(
    text: str, path: str | Path = "routes.yaml", *, check_files: bool = False
) -> Config:
    """Validate and build a config from its text; `path` names it in messages and is where
    relative paths (`tls`, `access_log`) are resolved from, like a file at that path."""
    shown = str(path)
    root = compose(text, shown)
    walker = Walker(shown)
    config = build(walker, root, Path(path))
    if config is not None and check_files:
        check_paths(config, walker.positions, walker.error)
    if walker.problems or config is None:
        raise ConfigError(walker.problems)
    if walker.warnings:
        config = dataclasses.replace(config, warnings=tuple(walker.warnings))
    return config
