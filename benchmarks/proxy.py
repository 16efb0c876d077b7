"""Reverse-proxy throughput: requests/s and p99 latency for small responses through bridge.

Bridge runs pinned to core 0; the load generator (wrk for HTTP/1.1, h2load for HTTP/2) and
the upstream share core 1. Prints one line per scenario, plus the CPU bridge used per request.

    python3 benchmarks/proxy.py [--seconds 10] [--connections 50]

Needs `wrk` and `h2load` (Debian: wrk, nghttp2-client); scenarios without their tool are
skipped with a note. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BridgeProcess, StealMeter, cpu_seconds, free_port

ROUTES = """\
listen:
  https: "127.0.0.1:{https}"
  http: "127.0.0.1:{http}"
  http_mode: serve
tls:
  cert: CERTS/server.crt
  key: CERTS/server.key
access_log:
  path: /dev/null
  format: combined
upstreams:
  app:
    url: "http://127.0.0.1:{upstream}"
routes:
  - path: /{{rest*}}
    upstream: app
"""


def run_upstream(port: int) -> subprocess.Popen[bytes]:
    here = str(Path(__file__).resolve().parent)
    code = (
        f"import asyncio, sys; sys.path.insert(0, {here!r})\n"
        "from _common import fixed_upstream\n"
        "async def main():\n"
        f"    await fixed_upstream({port})\n"
        "    await asyncio.sleep(3600)\n"
        "try:\n    import uvloop; uvloop.run(main())\n"
        "except ImportError:\n    asyncio.run(main())\n"
    )
    cmd = [sys.executable, "-c", code]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "1", *cmd]
    return subprocess.Popen(cmd)


def wrk(url: str, seconds: int, connections: int) -> tuple[float, float, int]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "1", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"99%\s+([\d.]+\w+)", out).group(1))  # type: ignore[union-attr]
    errors = sum(
        int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|errors: .*?):\s*(\d+)", out)
    )
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    if socket_errors:
        errors += sum(int(x) for x in socket_errors.groups())
    return rps, p99, errors


def h2load(url: str, seconds: int, connections: int) -> tuple[float, float, int]:
    cmd = ["h2load", f"-c{connections}", "-m1", f"-D{seconds}", url]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "1", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))  # type: ignore[union-attr]
    done = re.search(
        r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored",
        out,
    )
    failed = int(done.group(3)) + int(done.group(4)) if done else -1
    # h2load prints request latency min/max/mean/sd; p99 needs its percentile log, so the
    # mean + 3 sd is reported as an upper estimate and labelled as such.
    lat = re.search(
        r"time for request:\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)\s+([\d.]+\w+)", out
    )
    p99 = _ms(lat.group(3)) + 3 * _ms(lat.group(4)) if lat else float("nan")
    return rps, p99, failed


def _ms(text: str) -> float:
    value = float(re.match(r"[\d.]+", text).group(0))  # type: ignore[union-attr]
    if text.endswith("us"):
        return value / 1000
    if text.endswith("ms"):
        return value
    if text.endswith("s"):
        return value * 1000
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument(
        "--only", choices=("plain", "tls", "h2"), help="run one scenario instead of all three"
    )
    args = parser.parse_args()
    upstream_port, https, http = free_port(), free_port(), free_port()
    upstream = run_upstream(upstream_port)
    bridge = BridgeProcess(ROUTES.format(https=https, http=http, upstream=upstream_port))
    try:
        time.sleep(0.5)
        bridge.start([https, http])
        scenarios = [
            ("HTTP/1.1 plain", "wrk", f"http://127.0.0.1:{http}/"),
            ("HTTP/1.1 TLS", "wrk", f"https://127.0.0.1:{https}/"),
            ("HTTP/2 TLS", "h2load", f"https://127.0.0.1:{https}/"),
        ]
        print(
            f"{'scenario':<16} {'req/s':>9} {'p99 ms':>8} {'failed':>7} {'bridge CPU µs/req':>18}"
            f" {'steal %':>8}"
        )
        keys = {"HTTP/1.1 plain": "plain", "HTTP/1.1 TLS": "tls", "HTTP/2 TLS": "h2"}
        for name, tool, url in scenarios:
            if args.only and keys[name] != args.only:
                continue
            if not shutil.which(tool):
                print(f"{name:<16} skipped: {tool} not installed")
                continue
            runner = wrk if tool == "wrk" else h2load
            runner(url, 2, args.connections)  # warm-up: connections, pools, caches
            cpu0 = cpu_seconds(bridge.pid)
            steal = StealMeter()
            rps, p99, failed = runner(url, args.seconds, args.connections)
            cpu = cpu_seconds(bridge.pid) - cpu0
            per = cpu / max(1.0, rps * args.seconds) * 1e6
            label = f"{p99:8.2f}" + ("*" if tool == "h2load" else " ")
            print(f"{name:<16} {rps:9.0f} {label} {failed:7d} {per:18.1f} {steal.percent():8.1f}")
        print("* HTTP/2 p99 estimated as mean + 3 sd of h2load's request times")
    finally:
        bridge.stop()
        upstream.terminate()
        upstream.wait(5)


if __name__ == "__main__":
    asyncio.run(asyncio.sleep(0))
    main()
