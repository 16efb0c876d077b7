"""The access log writes the lines of one loop iteration with one write, and loses none."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bridge import settings
from bridge.accesslog import AccessEntry, AccessLog


def _entry(n: int) -> AccessEntry:
    return AccessEntry(
        client_ip="127.0.0.1", time=0.0, method="GET", target=f"/{n}", http_version="HTTP/1.1",
        status=200, bytes_sent=2, referer=None, user_agent=None, duration=0.001,
        upstream_status=200, route="/{rest*}",
    )  # fmt: skip


def test_lines_of_one_iteration_are_written_together(tmp_path: Path) -> None:
    path = tmp_path / "access.log"

    async def main() -> None:
        log = AccessLog.open(str(path), "combined")
        for n in range(3):
            log.log(_entry(n))
        assert path.read_text() == ""  # queued until the iteration ends
        await asyncio.sleep(0)
        assert [line.split('"')[1] for line in path.read_text().splitlines()] == [
            "GET /0 HTTP/1.1",
            "GET /1 HTTP/1.1",
            "GET /2 HTTP/1.1",
        ]
        for n in range(settings.ACCESS_LOG_BATCH):  # bounded: a full batch is written at once
            log.log(_entry(n))
        assert len(path.read_text().splitlines()) == 3 + settings.ACCESS_LOG_BATCH
        log.log(_entry(99))
        log.close()  # and nothing queued is lost at close
        assert path.read_text().splitlines()[-1].split('"')[1] == "GET /99 HTTP/1.1"

    asyncio.run(asyncio.wait_for(main(), 10))
