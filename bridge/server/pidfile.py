"""The pid file `bridge reload` reads: written by the process that takes the signals (a single
`bridge serve`, or the supervisor of `--workers`, which passes SIGHUP on), removed at its exit."""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("bridge")


def write_pid_file(path: Path) -> None:
    try:
        path.write_text(f"{os.getpid()}\n")
    except OSError as exc:
        log.warning("cannot write the pid file %s: %s (bridge reload will not find it)", path, exc)


def remove_pid_file(path: Path) -> None:
    try:
        if path.read_text().strip() == str(os.getpid()):
            path.unlink()
    except OSError:
        pass
