"""Reverse-proxy throughput: requests/s and p99 latency for small responses through bridge.

Bridge runs pinned to core 0; the load generator (wrk for HTTP/1.1, h2load for HTTP/2, a
loop of aioquic HTTP/3 clients for HTTP/3: Debian's h2load is built without QUIC) and the
upstream share core 1. Prints one line per scenario, plus the CPU bridge used per request.

    python3 benchmarks/proxy.py [--seconds 10] [--connections 50] [--h2-engine nghttp2|h2]

Needs `wrk` and `h2load` (Debian: wrk, nghttp2-client); scenarios without their tool are
skipped with a note. `kernel %` is the system share of bridge's CPU (syscalls, and waking
the peers it writes to). Loopback only.
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
from _common import BridgeProcess, StealMeter, cpu_split, free_port

ROUTES = """\
listen:
  https: "127.0.0.1:{https}"
  http3: "127.0.0.1:{https}"
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
engines:
  http2: {engine}
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


def h3load(url: str, seconds: int, connections: int) -> tuple[float, float, int]:
    """`connections` aioquic HTTP/3 clients, one request at a time each (h2load's -m1), for
    `seconds`, in a process of their own on core 1."""
    import multiprocessing as mp

    port = int(url.rsplit(":", 1)[1].split("/")[0])
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    proc = mp.Process(target=_h3load_main, args=(port, seconds, connections, out), daemon=True)
    proc.start()
    rps, p99, failed = out.get(timeout=seconds + 120)
    proc.join(10)
    return rps, p99, failed


def _h3load_main(port: int, seconds: int, connections: int, out: object) -> None:
    import os
    import ssl

    import aioquic.h3.events as h3e
    from aioquic.asyncio import connect
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.h3.connection import H3_ALPN, H3Connection
    from aioquic.quic.configuration import QuicConfiguration

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1})

    class Client(QuicConnectionProtocol):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            self.h3 = H3Connection(self._quic)
            self.waiting: dict[int, asyncio.Future[None]] = {}

        def quic_event_received(self, event: object) -> None:
            for ev in self.h3.handle_event(event):  # type: ignore[arg-type]
                ended = isinstance(ev, (h3e.DataReceived, h3e.HeadersReceived)) and ev.stream_ended
                if ended and ev.stream_id in self.waiting:  # type: ignore[union-attr]
                    self.waiting.pop(ev.stream_id).set_result(None)  # type: ignore[union-attr]

        async def get(self) -> None:
            sid = self._quic.get_next_available_stream_id()
            done = self.waiting[sid] = asyncio.get_running_loop().create_future()
            head = [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"127.0.0.1"),
                (b":path", b"/"),
            ]
            self.h3.send_headers(sid, head, end_stream=True)
            self.transmit()
            await asyncio.wait_for(done, 10)

    async def main() -> tuple[float, float, int]:
        config = QuicConfiguration(is_client=True, alpn_protocols=list(H3_ALPN))
        config.verify_mode = ssl.CERT_NONE  # loopback benchmark, throwaway dev certificate
        latencies: list[float] = []
        failed = 0
        deadline = 0.0

        async def worker() -> None:
            nonlocal failed
            async with connect(
                "127.0.0.1", port, configuration=config, create_protocol=Client
            ) as c:
                client: Client = c  # type: ignore[assignment]
                await client.get()  # warm-up
                await ready.wait()
                for _ in range(10_000_000):
                    if time.monotonic() >= deadline:
                        return
                    t0 = time.monotonic()
                    try:
                        await client.get()
                    except (TimeoutError, ConnectionError):
                        failed += 1
                        continue
                    latencies.append(time.monotonic() - t0)

        ready = asyncio.Event()
        tasks = [asyncio.create_task(worker()) for _ in range(connections)]
        await asyncio.sleep(3)  # handshakes
        deadline = time.monotonic() + seconds
        ready.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), seconds + 60)
        latencies.sort()
        p99 = latencies[int(0.99 * len(latencies))] * 1000 if latencies else float("nan")
        return len(latencies) / seconds, p99, failed

    try:
        import uvloop

        result = uvloop.run(main())
    except ImportError:
        result = asyncio.run(main())
    out.put(result)  # type: ignore[attr-defined]


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
        "--only", choices=("plain", "tls", "h2", "h3"), help="run one scenario instead of all"
    )
    parser.add_argument(
        "--h2-engine", choices=("nghttp2", "h2"), default="nghttp2", help="engines.http2"
    )
    args = parser.parse_args()
    upstream_port, https, http = free_port(), free_port(), free_port()
    upstream = run_upstream(upstream_port)
    routes = ROUTES.format(https=https, http=http, upstream=upstream_port, engine=args.h2_engine)
    bridge = BridgeProcess(routes)
    try:
        time.sleep(0.5)
        bridge.start([https, http])
        scenarios = [
            ("HTTP/1.1 plain", "wrk", f"http://127.0.0.1:{http}/"),
            ("HTTP/1.1 TLS", "wrk", f"https://127.0.0.1:{https}/"),
            ("HTTP/2 TLS", "h2load", f"https://127.0.0.1:{https}/"),
            ("HTTP/3", "aioquic", f"https://127.0.0.1:{https}/"),
        ]
        print(f"HTTP/2 engine: {args.h2_engine}")
        print(
            f"{'scenario':<16} {'req/s':>9} {'p99 ms':>8} {'failed':>7} {'bridge CPU µs/req':>18}"
            f" {'kernel %':>9} {'steal %':>8}"
        )
        keys = {
            "HTTP/1.1 plain": "plain",
            "HTTP/1.1 TLS": "tls",
            "HTTP/2 TLS": "h2",
            "HTTP/3": "h3",
        }
        for name, tool, url in scenarios:
            if args.only and keys[name] != args.only:
                continue
            if tool != "aioquic" and not shutil.which(tool):
                print(f"{name:<16} skipped: {tool} not installed")
                continue
            runner = {"wrk": wrk, "h2load": h2load, "aioquic": h3load}[tool]
            runner(url, 2, args.connections)  # warm-up: connections, pools, caches
            user0, system0 = cpu_split(bridge.pid)
            steal = StealMeter()
            rps, p99, failed = runner(url, args.seconds, args.connections)
            user1, system1 = cpu_split(bridge.pid)
            cpu = (user1 - user0) + (system1 - system0)
            per = cpu / max(1.0, rps * args.seconds) * 1e6
            kernel = (system1 - system0) / cpu * 100 if cpu else 0.0
            label = f"{p99:8.2f}" + ("*" if tool == "h2load" else " ")
            print(
                f"{name:<16} {rps:9.0f} {label} {failed:7d} {per:18.1f} {kernel:9.0f}"
                f" {steal.percent():8.1f}"
            )
        print("* HTTP/2 p99 estimated as mean + 3 sd of h2load's request times")
    finally:
        bridge.stop()
        upstream.terminate()
        upstream.wait(5)


if __name__ == "__main__":
    asyncio.run(asyncio.sleep(0))
    main()
