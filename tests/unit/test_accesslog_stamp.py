"""Access-log lines carry the time they are written (as nginx's do), not the request's start:
a stream's line is written when it ends, and a file stamped with starts would be out of order."""

from __future__ import annotations

import calendar
import json
import time
from pathlib import Path

from bridge.accesslog import AccessEntry, AccessLog, combined_line, json_line


def _stream(started: float) -> AccessEntry:
    return AccessEntry(
        client_ip="127.0.0.1", time=started, method="GET", target="/prices/ACME",
        http_version="HTTP/2.0", status=200, bytes_sent=5120, referer=None, user_agent=None,
        duration=300.0, upstream_status=None, route="/prices/{symbol}", kind="sse", events=3,
    )  # fmt: skip


def test_a_line_is_stamped_when_written_and_rt_keeps_the_duration() -> None:
    written = 1_800_000_000.0  # 2027-01-15T08:00:00Z
    entry = _stream(written - 300)
    line = combined_line(entry, written)
    stamp = time.strftime("%d/%b/%Y:%H:%M:%S", time.localtime(written))
    assert f"[{stamp} " in line and " rt=300.000 " in line
    record = json.loads(json_line(entry, written))
    assert record["time"] == "2027-01-15T08:00:00.000Z" and record["duration_ms"] == 300000.0


def test_the_file_is_in_time_order(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    log = AccessLog.open(str(path), "json")
    log.log(_stream(time.time() - 300))  # a stream that began five minutes ago, ending now
    log.close()
    [record] = [json.loads(line) for line in path.read_text().splitlines()]
    written = calendar.timegm(time.strptime(record["time"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert abs(written - time.time()) < 60  # now, not five minutes ago
