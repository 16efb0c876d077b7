"""Scale-out figures: `--workers 2` against `--workers 1`, and Redis round trips per change.

    python3 benchmarks/scale.py [--parts fanout proxy redis] [--subscribers 20000]

- fanout: one long-poll stream fanned out to N SSE subscribers (HTTP/1.1, no TLS) by
  `bridge serve --workers 1` (memory broker), `--workers 1` (Redis broker) and `--workers 2`
  (Redis broker): delivery latency p50/p99/max, deliveries lost, CPU µs per delivery (the
  whole process tree). The subscriber processes are pinned to core 1 as in fanout.py; bridge
  is not pinned, so two workers can use both cores (and compete with the clients for core 1).
- proxy: pass-through requests/s with wrk (HTTP/1.1 plain, pinned to core 1 with the
  upstream), `--workers 1` and `--workers 2`.
- redis: Redis commands per change with 1, 2 and 3 bridge processes and 100 or 1000
  subscribers on each, from `INFO commandstats` (idle traffic — the blocking reads' timeouts,
  lease renewals, interest refreshes — measured separately and subtracted): it should grow with
  the processes, not with the subscribers.

Needs redis-server (and wrk for the proxy part). Loopback only; every run is bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import redis as redis_client
from _common import ROOT, StealMeter, cpu_seconds, free_port
from fanout import client_main, raise_fd_limit, upstream_main
from proxy import run_upstream, wrk

STREAM = """\
listen:
  http: "127.0.0.1:{http}"
access_log:
  path: /dev/null
limits:
  max_connections: 30000
  max_subscribers: 30000
  max_subscribers_per_stream: 30000
{broker}
upstreams:
  app:
    url: "http://127.0.0.1:{upstream}"
routes:
  - path: /feed
    stream:
      upstream: app
      poll: /feed
      longpoll:
        cursor: seq
        param: since
        timeout: 30s
      event: tick
      heartbeat: 1h
      history: 100
  - path: /{{rest*}}
    upstream: app
"""


# Commands the fenced publish script runs inside Redis (EVALSHA is the one round trip).
INNER = ("get", "xadd", "pexpire")


def tree(pid: int) -> list[int]:
    """`pid` and all its descendants (the supervisor and its workers)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def tree_cpu(pid: int) -> float:
    total = 0.0
    for p in tree(pid):
        try:
            total += cpu_seconds(p)
        except OSError:
            pass
    return total


class Redis:
    def __init__(self) -> None:
        self.port = free_port()
        port = str(self.port)
        cmd = ["redis-server", "--port", port, "--bind", "127.0.0.1", "--save", ""]
        cmd += ["--appendonly", "no"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        self.client = redis_client.Redis(port=self.port, socket_timeout=5)
        for _ in range(100):
            try:
                self.client.ping()
                break
            except redis_client.ConnectionError:
                time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def calls(self) -> dict[str, int]:
        stats: dict[str, Any] = self.client.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Bridge:
    """`bridge serve --workers N` on a config in a temp dir; not pinned."""

    def __init__(self, config: str, workers: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bridge-scale-"))
        self.config = self.dir / "routes.yaml"
        self.config.write_text(textwrap.dedent(config))
        self.workers = workers
        self.log = open(self.dir / "bridge.log", "wb")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, port: int, timeout: float = 30.0) -> None:
        cmd = [sys.executable, "-m", "bridge", "serve", "-c", str(self.config)]
        cmd += ["--workers", str(self.workers)]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError((self.dir / "bridge.log").read_text()) from None
                time.sleep(0.1)
        time.sleep(1.0 + 0.5 * self.workers)  # every worker listening, not just the first

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                for p in tree(self.proc.pid):
                    with contextlib.suppress(OSError):
                        os.kill(p, signal.SIGKILL)
        shutil.rmtree(self.dir, ignore_errors=True)


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(p * len(values)))] * 1000


def _start_clients(
    port: int, count: int, processes: int, out: Any, go: Any, stop: Any
) -> list[mp.Process]:
    share = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    clients = [
        mp.Process(target=client_main, args=("sse-h1", port, n, 1, out, go, stop), daemon=True)
        for n in share
        if n
    ]
    for c in clients:
        c.start()
    return clients


def fanout(workers: int, use_redis: bool, subscribers: int, changes: int) -> dict[str, float]:
    redis = Redis() if use_redis else None
    upstream_port, http = free_port(), free_port()
    publish: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    ready = mp.Event()
    upstream = mp.Process(target=upstream_main, args=(upstream_port, publish, ready), daemon=True)
    upstream.start()
    ready.wait(10)
    broker = f"broker: {redis.url}" if redis else ""
    bridge = Bridge(STREAM.format(http=http, upstream=upstream_port, broker=broker), workers)
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    go, stop = mp.Event(), mp.Event()
    try:
        bridge.start(http)
        clients = _start_clients(http, subscribers, 4, out, go, stop)
        connected = sum(out.get(timeout=300)[1] for _ in clients)
        time.sleep(2.0)
        go.set()
        time.sleep(0.5)
        cpu0 = tree_cpu(bridge.pid)
        steal = StealMeter()
        for _ in range(changes):
            publish.put(1)
            time.sleep(1.0)
        time.sleep(1.0)
        cpu = tree_cpu(bridge.pid) - cpu0
        stolen = steal.percent()
        stop.set()
        latencies: list[float] = []
        for _ in clients:
            latencies += [lat for _, lat in out.get(timeout=120)[1]]
        for c in clients:
            c.join(10)
        latencies.sort()
        return {
            "connected": connected,
            "p50": _pct(latencies, 0.5),
            "p99": _pct(latencies, 0.99),
            "max": latencies[-1] * 1000 if latencies else float("nan"),
            "lost": connected * changes - len(latencies),
            "cpu_us": cpu / max(1, len(latencies)) * 1e6,
            "steal": stolen,
        }
    finally:
        stop.set()
        publish.put(None)
        bridge.stop()
        upstream.terminate()
        if redis:
            redis.stop()


def proxy(workers: int, seconds: int, connections: int) -> tuple[float, float, int, float, float]:
    redis = Redis()
    upstream_port, http = free_port(), free_port()
    upstream = run_upstream(upstream_port)
    config = STREAM.format(http=http, upstream=upstream_port, broker=f"broker: {redis.url}")
    bridge = Bridge(config, workers)
    try:
        time.sleep(0.5)
        bridge.start(http)
        url = f"http://127.0.0.1:{http}/x"
        wrk(url, 2, connections)  # warm-up
        cpu0 = tree_cpu(bridge.pid)
        steal = StealMeter()
        rps, p99, failed = wrk(url, seconds, connections)
        cpu = tree_cpu(bridge.pid) - cpu0
        return rps, p99, failed, cpu / max(1.0, rps * seconds) * 1e6, steal.percent()
    finally:
        bridge.stop()
        upstream.terminate()
        upstream.wait(5)
        redis.stop()


def round_trips(instances: int, per_instance: int, changes: int) -> dict[str, Any]:
    redis = Redis()
    upstream_port = free_port()
    publish: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    ready = mp.Event()
    upstream = mp.Process(target=upstream_main, args=(upstream_port, publish, ready), daemon=True)
    upstream.start()
    ready.wait(10)
    bridges, clients = [], []
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    go, stop = mp.Event(), mp.Event()
    try:
        for _ in range(instances):
            http = free_port()
            config = STREAM.format(http=http, upstream=upstream_port, broker=f"broker: {redis.url}")
            bridge = Bridge(config, 1)
            bridge.start(http)
            bridges.append(bridge)
            clients += _start_clients(http, per_instance, 1, out, go, stop)
        for _ in clients:
            out.get(timeout=120)
        go.set()
        time.sleep(2.0)
        idle_s = 4.0
        redis.client.config_resetstat()
        time.sleep(idle_s)
        idle = redis.calls()
        redis.client.config_resetstat()
        started = time.monotonic()
        for _ in range(changes):
            publish.put(1)
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        busy = redis.calls()
        stop.set()
        delivered = sum(len(out.get(timeout=60)[1]) for _ in clients)
        per_change = {
            cmd: (busy.get(cmd, 0) - idle.get(cmd, 0) * elapsed / idle_s) / changes
            for cmd in sorted(set(busy) | set(idle))
        }
        return {
            "per_change": per_change,
            "idle_per_s": {cmd: n / idle_s for cmd, n in idle.items()},
            "delivered": delivered,
            "expected": instances * per_instance * changes,
        }
    finally:
        stop.set()
        publish.put(None)
        for bridge in bridges:
            bridge.stop()
        upstream.terminate()
        redis.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["fanout", "proxy", "redis"])
    parser.add_argument("--subscribers", type=int, default=20000)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    args = parser.parse_args()
    raise_fd_limit()
    if not shutil.which("redis-server"):
        sys.exit("redis-server is needed (Debian: apt-get install redis-server)")
    if "fanout" in args.parts:
        print(f"fan-out to {args.subscribers} SSE subscribers (HTTP/1.1), {args.changes} changes")
        print(
            f"{'setup':<22} {'subs':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'lost':>6}"
            f" {'CPU µs/deliv':>12} {'steal %':>8}"
        )
        for label, workers, use_redis in (
            ("workers 1, memory", 1, False),
            ("workers 1, redis", 1, True),
            ("workers 2, redis", 2, True),
        ):
            r = fanout(workers, use_redis, args.subscribers, args.changes)
            print(
                f"{label:<22} {r['connected']:6.0f} {r['p50']:8.1f} {r['p99']:8.1f}"
                f" {r['max']:8.1f} {r['lost']:6.0f} {r['cpu_us']:12.1f} {r['steal']:8.1f}",
                flush=True,
            )
    if "proxy" in args.parts:
        if not shutil.which("wrk"):
            print("proxy: skipped, wrk not installed")
        else:
            print(f"pass-through, wrk -c{args.connections}, {args.seconds}s, HTTP/1.1 plain")
            print(
                f"{'setup':<22} {'req/s':>9} {'p99 ms':>8} {'failed':>7} {'CPU µs/req':>11}"
                f" {'steal %':>8}"
            )
            for workers in (1, 2):
                rps, p99, failed, per, stolen = proxy(workers, args.seconds, args.connections)
                print(
                    f"{'workers ' + str(workers):<22} {rps:9.0f} {p99:8.2f} {failed:7d}"
                    f" {per:11.1f} {stolen:8.1f}",
                    flush=True,
                )
    if "redis" in args.parts:
        print("Redis commands per change (idle traffic subtracted), 10 changes")
        for instances in (1, 2, 3):
            for per_instance in (100, 1000):
                r = round_trips(instances, per_instance, 10)
                per = r["per_change"]
                trips = {k: round(v, 1) for k, v in per.items() if k not in INNER and v >= 0.05}
                inner = {k: round(v, 1) for k, v in per.items() if k in INNER and v >= 0.05}
                idle = sum(v for k, v in r["idle_per_s"].items() if not k.startswith("config"))
                print(
                    f"{instances} processes x {per_instance:5d} subscribers:"
                    f" round trips per change {trips} (= {sum(trips.values()):.1f});"
                    f" inside the publish script {inner};"
                    f" delivered {r['delivered']}/{r['expected']}; idle {idle:.1f} commands/s",
                    flush=True,
                )


if __name__ == "__main__":
    main()
