"""`bridge serve --workers N`: a supervisor and N worker processes on SO_REUSEPORT listeners,
sharing a real redis-server as the broker. Refused with the in-process broker; serves through
every worker; a worker killed with -9 is restarted; SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.cluster import ROOT, BridgeNode, RedisServer, node_config
from tests.support.harness import run
from tests.support.subscribers import sse
from tests.support.upstream import Upstream

PLAIN = """\
  - path: /plain
    upstream: app
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return "zombie"


def test_several_workers_need_a_shared_broker(tmp_path: Path) -> None:
    config = tmp_path / "routes.yaml"
    config.write_text(
        'listen: {http: "127.0.0.1:0"}\nupstreams: {app: {url: "http://127.0.0.1:9"}}\n'
        "routes: [{path: /, upstream: app}]\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "serve", "-c", str(config), "--workers", "2"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert b"--workers 2 needs a shared broker" in done.stderr
    assert b"broker: memory" in done.stderr


async def _get(url: str) -> int:
    # A fresh connection each time, so the kernel picks a worker each time.
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(url, headers={"connection": "close"})).status_code


def test_workers_share_ports_and_a_killed_worker_is_restarted() -> None:
    async def body() -> None:
        redis = RedisServer()
        await asyncio.to_thread(redis.start)
        try:
            async with Upstream() as upstream:
                upstream.set_json("/plain", {"ok": True})
                upstream.set_json("/feed/w", {"n": 0})
                config = node_config(redis.url, upstream.port, extra=PLAIN)
                pid_dir = Path(tempfile.mkdtemp(prefix="bridge-workers-"))
                pid_file = pid_dir / "bridge.pid"
                args = ("--workers", "2", "--pid-file", str(pid_file))
                node = await asyncio.to_thread(BridgeNode, config, args=args)
                try:
                    await _check(node, upstream, pid_file)
                finally:
                    await asyncio.to_thread(node.stop)
                    shutil.rmtree(pid_dir, ignore_errors=True)
        finally:
            await asyncio.to_thread(redis.stop)

    run(body(), timeout=90)


async def _wait_workers(node: BridgeNode, count: int, timeout: float = 20.0) -> dict[int, int]:
    deadline = time.monotonic() + timeout
    while True:
        workers = node.workers()
        if len(workers) == count and all(alive(pid) for pid in workers.values()):
            return workers
        assert time.monotonic() < deadline, node.log()
        await asyncio.sleep(0.1)


async def _serving(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if await _get(url) == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"{url} not served"
        await asyncio.sleep(0.1)


async def _check(node: BridgeNode, upstream: Upstream, pid_file: Path) -> None:
    workers = await _wait_workers(node, 2)
    supervisor = node.proc
    assert supervisor is not None
    # The supervisor takes the signals, so its pid is the one `bridge reload` finds.
    assert pid_file.read_text().strip() == str(supervisor.pid)
    await _serving(node.url("/plain"))
    # Both workers listen on the supervisor's port (SO_REUSEPORT), each with its own socket.
    for pid in workers.values():
        await asyncio.to_thread(_wait_listening, pid, node.http)
    assert [await _get(node.url("/plain")) for _ in range(10)] == [200] * 10

    # Subscribers spread over the workers share one poller and one id through Redis.
    async with httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as c:
        async with sse(c, node.url("/feed/w")) as a, sse(c, node.url("/feed/w")) as b:
            firsts = [await a.next_event(), await b.next_event()]
            assert firsts[0].id == firsts[1].id

    # kill -9 a worker: the supervisor starts another; the port keeps being served.
    victim = workers[1]
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while node.workers().get(1) in (None, victim):
        assert time.monotonic() < deadline, node.log()
        await asyncio.sleep(0.1)
    assert f"worker 1 (pid {victim}) exited" in node.log()
    replaced = await _wait_workers(node, 2)
    assert replaced[0] == workers[0] and replaced[1] != victim
    await _serving(node.url("/plain"))
    await asyncio.to_thread(_wait_listening, replaced[1], node.http)

    # SIGHUP goes on to every worker (each reloads, or, without a reload handler, exits and
    # is restarted); the port keeps being served either way.
    reload = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "-m",
            "bridge",
            "reload",
            "-c",
            str(node.config),
            "--pid-file",
            str(pid_file),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert reload.returncode == 0, reload.stderr
    deadline = time.monotonic() + 10
    while "SIGHUP: passing it on to 2 workers" not in node.log():
        assert time.monotonic() < deadline, node.log()
        await asyncio.sleep(0.1)
    replaced = await _wait_workers(node, 2)
    await _serving(node.url("/plain"))

    # SIGTERM to the supervisor reaches every worker; all exit.
    supervisor.send_signal(signal.SIGTERM)
    code = await asyncio.to_thread(supervisor.wait, 30)
    assert code == 0
    assert not any(alive(pid) for pid in replaced.values())
    assert not pid_file.exists()


def _listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` holds a listening TCP socket on `port` (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port and inode in inodes:
                return True
    return False


def _wait_listening(pid: int, port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not _listens_on(pid, port):
        assert time.monotonic() < deadline, f"pid {pid} never listened on {port}"
        time.sleep(0.1)


SLOW = """\
  - path: /slow
    upstream: app
limits:
  shutdown_grace: 30s
"""


def test_workers_get_the_configured_shutdown_grace() -> None:
    """A worker finishing a slow request inside a configured 30 s grace is not killed at the
    supervisor's own idea of the grace: the request outlives the 10 s default + margin."""
    from bridge import settings
    from bridge.settings import Limits

    slow = Limits().shutdown_grace + settings.WORKER_KILL_MARGIN + 2.0

    async def body() -> None:
        redis = RedisServer()
        await asyncio.to_thread(redis.start)
        try:
            async with Upstream() as upstream:
                upstream.set_json("/plain", {"ok": True})
                upstream.set_json("/slow", {"done": True})
                upstream.set_delay("/slow", slow)
                config = node_config(redis.url, upstream.port, extra=PLAIN + SLOW)
                config = config.replace("    url: ", "    timeout: 60s\n    url: ", 1)
                node = await asyncio.to_thread(BridgeNode, config, args=("--workers", "2"))
                try:
                    await _wait_workers(node, 2)
                    await _serving(node.url("/plain"))
                    async with httpx.AsyncClient(timeout=slow + 20) as client:
                        request = asyncio.ensure_future(client.get(node.url("/slow")))
                        await upstream.wait_for_requests("/slow", 1, timeout=10)
                        supervisor = node.proc
                        assert supervisor is not None
                        supervisor.send_signal(signal.SIGTERM)
                        response = await asyncio.wait_for(request, slow + 20)
                    assert response.status_code == 200, node.log()
                    assert response.json() == {"done": True}
                    assert await asyncio.to_thread(supervisor.wait, 30) == 0
                    assert "did not stop in time" not in node.log()
                finally:
                    await asyncio.to_thread(node.stop)
        finally:
            await asyncio.to_thread(redis.stop)

    run(body(), timeout=90)
