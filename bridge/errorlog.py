"""The error log: what bridge says about itself (listening, reloads, upstream trouble) on
stderr, as text lines or one JSON object per line (`--log-format json`), at `--log-level`.

Requests never go here (that is the access log), and neither do clients' headers: hpack logs
every header it decodes at DEBUG, cookies and credentials included, so it stays at INFO even
when the rest is DEBUG.
"""

from __future__ import annotations

import json
import logging
import sys
import time

LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """`{"time": ISO 8601 UTC, "level", "logger", "message"[, "exception"]}` per line."""

    def format(self, record: logging.LogRecord) -> str:
        when = record.created
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when))
        entry: dict[str, object] = {
            "time": f"{stamp}.{int(when % 1 * 1000):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # ensure_ascii: nothing a peer sent can break the one-object-per-line shape.
        return json.dumps(entry, ensure_ascii=True)


def configure(level: str = "info", fmt: str = "text") -> None:
    """Send every logger to stderr at `level` (one of LEVELS) in `fmt` (one of FORMATS)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("hpack").setLevel(max(logging.INFO, root.level))
