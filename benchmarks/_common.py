"""Shared pieces of the benchmark scripts: a fast loopback upstream, bridge as a subprocess
pinned to one core, and process CPU/RSS readings. Benchmarks print figures; they are never
run as tests and only ever talk to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from /proc."""
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, from /proc: the system share is the kernel's
    work on bridge's behalf (syscalls, and waking the peers it writes to)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


class StealMeter:
    """Share of the machine's CPU time the hypervisor gave to someone else (/proc/stat
    "steal") between `start()` and `stop()`. On a shared VM it moves every figure: a run
    with much steal is not comparable with one without, so the benchmarks print it."""

    def __init__(self) -> None:
        self._start = self._read()

    @staticmethod
    def _read() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields[:8]), fields[7]  # user..steal; guest time is already in user

    def start(self) -> None:
        self._start = self._read()

    def percent(self) -> float:
        total, steal = self._read()
        elapsed = total - self._start[0]
        return 100.0 * (steal - self._start[1]) / elapsed if elapsed else 0.0


def ensure_certs(directory: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from bridge.certs import ensure_dev_certs

    ensure_dev_certs(directory)


class BridgeProcess:
    """`bridge serve` on a config written to a temp dir, pinned with taskset when available."""

    def __init__(self, routes: str, *, core: int | None = 0) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bridge-bench-"))
        self.certs = self.dir / "certs"
        ensure_certs(self.certs)
        self.config = self.dir / "routes.yaml"
        self.config.write_text(textwrap.dedent(routes).replace("CERTS", str(self.certs)))
        self.core = core
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ports: list[int], timeout: float = 15.0) -> None:
        cmd = [sys.executable, "-m", "bridge", "serve", "-c", str(self.config)]
        if self.core is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(self.core), *cmd]
        self.log = open(self.dir / "bridge.log", "wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + timeout
        for port in ports:
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or self.proc.poll() is not None:
                        log = (self.dir / "bridge.log").read_text()  # before stop() removes it
                        self.stop()
                        raise RuntimeError("bridge did not start:\n" + log) from None
                    time.sleep(0.1)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM)
        shutil.rmtree(self.dir, ignore_errors=True)


def stop_process(proc: subprocess.Popen[bytes], sig: signal.Signals, grace: float = 15.0) -> None:
    """Ask a server to stop with `sig` (its graceful stop); kill it if it is still up after
    `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


async def fixed_upstream(port: int, body: bytes = b'{"ok":true}\n') -> asyncio.AbstractServer:
    """A deliberately minimal keep-alive HTTP/1.1 upstream: one canned answer per request head.

    It must not be the bottleneck of a proxy benchmark, so it does not parse beyond finding
    the end of each head (the benchmark only sends bodiless GETs).
    """
    answer = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
        % (len(body), body)
    )

    class Upstream(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            count = self.buffer.count(b"\r\n\r\n")
            if count:
                self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4 :]
                self.transport.write(answer * count)  # type: ignore[attr-defined]

    loop = asyncio.get_running_loop()
    return await loop.create_server(Upstream, "127.0.0.1", port, backlog=1024)
