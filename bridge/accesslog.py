"""The access log: one line per finished request, and one per stream when it ends.

`combined` is the Apache/nginx combined format (so standard log tools parse it), followed by
bridge's own `key=value` fields; `json` is one object per line. Every line is stamped with the
time it is written, as nginx does, so a file is in time order even though a stream's line is
written when the stream ends (minutes after it began); how long it lasted is `rt`. Lines are written whole and
flushed one by one; `SIGUSR1` reopens the file after rotation. Peer-controlled text is escaped
the way nginx does, so no request can forge or break a line.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from dataclasses import dataclass
from typing import TextIO

from . import settings

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(slots=True)
class AccessEntry:
    client_ip: str
    time: float  # epoch seconds, when the request started (lines carry their write time)
    method: str
    target: str
    http_version: str  # "HTTP/1.1", "HTTP/2.0", "HTTP/3"
    status: int
    bytes_sent: int
    referer: str | None
    user_agent: str | None
    duration: float  # seconds
    upstream_status: int | None
    route: str | None
    pushed: bool = False
    kind: str = "http"  # "http" | "sse" | "websocket" (the last two: one line per stream)
    events: int | None = None
    lagged: bool = False
    note: str | None = None
    request_id: str = ""  # also sent upstream as X-Request-Id
    close_code: int | None = None  # WebSocket close code, whoever sent the close first


def escape(text: str) -> str:
    """nginx-style: `"` and `\\` escaped, control and non-ASCII bytes as \\xHH."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text  # the common case, without a Python loop per character
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        if byte in (0x22, 0x5C):
            out.append("\\" + chr(byte))
        elif 0x20 <= byte < 0x7F:
            out.append(chr(byte))
        else:
            out.append(f"\\x{byte:02X}")
    return "".join(out)


_clf_cache: tuple[int, str] = (-1, "")


def _clf_time(when: float) -> str:
    """`10/Oct/2000:13:55:36 -0700`; formatted once per second, not once per request."""
    global _clf_cache
    second = int(when)
    cached_second, text = _clf_cache
    if second == cached_second:
        return text
    text = _format_clf(second)
    _clf_cache = (second, text)
    return text


def _format_clf(when: float) -> str:
    t = time.localtime(when)
    offset = t.tm_gmtoff
    sign = "+" if offset >= 0 else "-"
    offset = abs(offset)
    return (
        f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:"
        f"{t.tm_sec:02d} {sign}{offset // 3600:02d}{offset % 3600 // 60:02d}"
    )


def combined_line(e: AccessEntry, written: float | None = None) -> str:
    """The combined line, stamped `written` (epoch seconds; default: now)."""
    stamp = _clf_time(time.time() if written is None else written)
    request = escape(f"{e.method} {e.target} {e.http_version}")
    size = str(e.bytes_sent) if e.bytes_sent else "-"
    line = (
        f'{e.client_ip or "-"} - - [{stamp}] "{request}" {e.status} {size} '
        f'"{escape(e.referer or "-")}" "{escape(e.user_agent or "-")}"'
        f" rt={e.duration:.3f} us={e.upstream_status if e.upstream_status is not None else '-'}"
        f' route="{escape(e.route or "-")}"'
    )
    if e.request_id:
        line += f" id={e.request_id}"  # requestid.py: never a space or quote in it
    if e.kind != "http":
        line += f" {e.kind} events={e.events or 0}"
        if e.close_code is not None:
            line += f" close={e.close_code}"
        if e.lagged:
            line += " lagged"
    if e.pushed:
        line += " pushed"
    if e.note:
        line += f' note="{escape(e.note)}"'
    return line


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when)) + f".{int(when % 1 * 1000):03d}Z"


def json_line(e: AccessEntry, written: float | None = None) -> str:
    """One JSON object, its `time` the moment it is written (default: now)."""
    record: dict[str, object] = {
        "time": _iso(time.time() if written is None else written),
        "client": e.client_ip,
        "method": e.method,
        "target": e.target,
        "protocol": e.http_version,
        "status": e.status,
        "bytes": e.bytes_sent,
        "duration_ms": round(e.duration * 1000, 3),
        "upstream_status": e.upstream_status,
        "route": e.route,
        "referer": e.referer,
        "user_agent": e.user_agent,
        "pushed": e.pushed,
        "kind": e.kind,
        "request_id": e.request_id or None,
    }
    if e.kind != "http":
        record["events"] = e.events or 0
        record["lagged"] = e.lagged
    if e.kind == "websocket":
        record["close_code"] = e.close_code
    if e.note:
        record["note"] = e.note
    # ensure_ascii: any peer-controlled text becomes \\u escapes, never a raw line break.
    return json.dumps(record, ensure_ascii=True, separators=(",", ":"))


class AccessLog:
    def __init__(self, path: str, fmt: str) -> None:
        self.path = path
        self.format = fmt
        self._render = json_line if fmt == "json" else combined_line
        self._file: TextIO | None = None
        self._pending: list[str] = []  # lines not yet written, at most `settings.ACCESS_LOG_BATCH`
        self._open()

    @classmethod
    def open(cls, path: str, fmt: str) -> AccessLog:
        return cls(path, fmt)

    def _open(self) -> None:
        if self.path == "-":
            self._file = sys.stdout
        else:
            self._file = open(self.path, "a", encoding="ascii", buffering=1)

    def log(self, entry: AccessEntry) -> None:
        """Queue the line; the lines of one loop iteration are written with one syscall (at
        the end of the iteration, or at once past `settings.ACCESS_LOG_BATCH` lines), not one write per request."""
        if self._file is None:
            return
        pending = self._pending
        pending.append(self._render(entry) + "\n")
        if len(pending) >= settings.ACCESS_LOG_BATCH:
            self.flush()
        elif len(pending) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop (a tool writing a line): write it now
                self.flush()

    def flush(self) -> None:
        pending = self._pending
        if not pending or self._file is None:
            pending.clear()
            return
        text = pending[0] if len(pending) == 1 else "".join(pending)
        pending.clear()
        self._file.write(text)
        self._file.flush()

    def event(self, kind: str, note: str) -> None:
        """A line about the server itself (a reload and what it changed), JSON format only:
        a combined-format line that is not a request would break the tools that read it."""
        if self._file is not None and self.format == "json":
            record = {"time": _iso(time.time()), "kind": kind, "note": note}
            self._file.write(json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n")
            self._file.flush()

    def reopen(self) -> None:
        """After logrotate moved the file: start a new one at the same path."""
        if self.path == "-":
            return
        self.flush()  # lines queued before the rotation go to the old file
        old = self._file
        self._open()
        if old is not None and old is not sys.stdout:
            old.close()

    def close(self) -> None:
        self.flush()
        if self._file is not None and self._file is not sys.stdout:
            self._file.close()
        self._file = None


def install_sigusr1(loop: asyncio.AbstractEventLoop, access_log: AccessLog) -> None:
    try:
        loop.add_signal_handler(signal.SIGUSR1, access_log.reopen)
    except (NotImplementedError, RuntimeError, ValueError):  # not on this platform/thread
        pass
