"""`${NAME}` references in routes.yaml values: read from the environment at start and at each
reload, so secrets (a service token) live in the environment and never in the file.

A value with at least one reference becomes a `model.Expanded`: it equals the expanded text,
and keeps the text as written, which is what a printed config shows in its place. An unset
variable is a problem at the value's `file:line:col`; a message never quotes an expanded
value, only the reference.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

from yaml.nodes import Node

from .model import Expanded
from .yamlwalk import Walker

# `${NAME}`: NAME as POSIX shells spell an environment variable.
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expanded_text(
    w: Walker, node: Node, field: str, environ: Mapping[str, str] | None = None
) -> str | None:
    """The string at `node` with every `${NAME}` replaced from `environ` (the process's
    environment by default); an `Expanded` when it had any, the plain text otherwise."""
    written = w.text(node, field)
    if written is None:
        return None
    env = os.environ if environ is None else environ
    missing: list[str] = []

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            missing.append(name)
            return ""
        return env[name]

    text = REFERENCE.sub(value, written)
    if missing:
        names = ", ".join(f"${{{name}}}" for name in dict.fromkeys(missing))
        w.error(node, field, f"{names}: not set in the environment")
        return None
    if text == written:
        return written
    return Expanded(text, written)
