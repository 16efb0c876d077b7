"""Fan-out against nginx + nchan: the same HTTP/2 subscribers, the same measurement.

N SSE subscribers multiplexed S streams per HTTP/2 connection (TLS, bridge's dev
certificate) subscribe to one stream of bridge (`--h2-engine nghttp2`, `h2`) and of nginx with
the nchan module (one worker, `nchan_subscriber eventsource`); K changes follow, a second apart
(bridge: the long-poll upstream changes, as in fanout.py; nchan: a POST to its publisher
location). The subscribers, the run and its figures are fanout.py's (`measure`): only the
server differs. The servers run pinned to core 0, the subscriber processes to core 1.

    python3 benchmarks/nchan.py                        # N=10,000, S=128 and 1000, one round
    python3 benchmarks/nchan.py --rounds 3 --streams 128

Per run: connect time (first request to the last stream's response head), CPU µs per delivery
of the server's processes (/proc/PID/stat utime+stime; nginx: master + its one worker), the
connections the subscribers still hold at the end (open, no GOAWAY), write calls per change per
held connection (/proc/PID/io `syscw`, the upstream's few included for bridge), and the
subscriber processes' CPU (their share of core 1 while changes went out; near 100 % would make
them the bottleneck). Needs nginx and libnginx-mod-nchan (Debian: `apt-get install nginx
libnginx-mod-nchan`); exits 2 without them. Loopback only; every run ends by itself.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ensure_certs, free_port, stop_process
from fanout import Target, measure

MODULE_DIRS = (Path("/usr/lib/nginx/modules"), Path("/usr/share/nginx/modules"))

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes 1;
user root;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
load_module {module};
worker_rlimit_nofile 65536;
events {{ worker_connections 30000; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    client_body_buffer_size 64k;
    keepalive_timeout 1h;
    keepalive_requests 1000000;  # else a connection's 1000th stream gets GOAWAY
    server {{
        listen 127.0.0.1:{https} ssl http2;
        ssl_certificate {certs}/server.crt;
        ssl_certificate_key {certs}/server.key;
        http2_max_concurrent_streams {limit};
        location = /sub {{
            nchan_subscriber eventsource;
            nchan_channel_id feed;
        }}
    }}
    server {{
        listen 127.0.0.1:{http};
        location = /pub {{
            nchan_publisher;
            nchan_channel_id feed;
            nchan_message_buffer_length 100;
        }}
    }}
}}
"""


def nchan_module() -> Path | None:
    for directory in MODULE_DIRS:
        found = directory / "ngx_nchan_module.so"
        if found.exists():
            return found
    return None


class Nchan(Target):
    """nginx with one worker and the nchan module; a change is a POST to `/pub`."""

    name = "nginx+nchan"
    path = b"/sub"

    def __init__(self, stream_limit: int) -> None:
        nginx, module = shutil.which("nginx"), nchan_module()
        assert nginx is not None and module is not None
        self.dir = Path(tempfile.mkdtemp(prefix="bridge-nchan-"))
        ensure_certs(self.dir / "certs")
        self.port, self.http = free_port(), free_port()
        conf = self.dir / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                dir=self.dir,
                module=module,
                https=self.port,
                http=self.http,
                certs=self.dir / "certs",
                limit=stream_limit,
            )
        )
        cmd = [nginx, "-c", str(conf), "-p", str(self.dir)]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", "0", *cmd]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
        self.seq = 0
        deadline = time.monotonic() + 10
        while True:
            workers = self._workers()
            if workers and self._answers():
                break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                log = (
                    (self.dir / "error.log").read_text()
                    if (self.dir / "error.log").exists()
                    else ""
                )
                self.stop()
                raise RuntimeError("nginx did not start:\n" + log)
            time.sleep(0.1)
        self.workers = workers
        self.publisher = http.client.HTTPConnection("127.0.0.1", self.http, timeout=10)

    def _workers(self) -> list[int]:
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        try:
            return [int(pid) for pid in children.read_text().split()]
        except OSError:
            return []

    def _answers(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.http, timeout=1)
            conn.request("GET", "/pub")  # channel info: 404 until a message, but an answer
            conn.getresponse().read()
            conn.close()
            return True
        except OSError:
            return False

    def pids(self) -> list[int]:
        return [self.proc.pid, *self.workers]

    def publish(self) -> None:
        # The same body as fanout.py's upstream: seq and the publish time, 64 bytes of pad.
        self.seq += 1
        body = json.dumps({"seq": self.seq, "ts": round(time.time(), 6), "pad": "x" * 64})
        self.publisher.request("POST", "/pub", body, headers={"Content-Type": "application/json"})
        self.publisher.getresponse().read()

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGQUIT)  # nginx's graceful stop
        shutil.rmtree(self.dir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--streams", type=int, nargs="+", default=[128, 1000])
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--processes", type=int, default=4, help="subscriber processes")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds")
    parser.add_argument(
        "--servers",
        nargs="+",
        default=["nghttp2", "h2", "nchan"],
        choices=["nghttp2", "h2", "nchan"],
        help="bridge on either HTTP/2 engine, and nginx+nchan",
    )
    args = parser.parse_args()
    if "nchan" in args.servers and (shutil.which("nginx") is None or nchan_module() is None):
        print(
            "nginx with the nchan module is needed (Debian: apt-get install nginx "
            "libnginx-mod-nchan); not found",
            file=sys.stderr,
        )
        sys.exit(2)
    figures: dict[tuple[str, int], list[dict[str, float]]] = {}
    print(
        f"{'server':<14} {'S':>5} {'subs':>6} {'conn s':>7} {'held':>5} {'writes/ev/conn':>14} "
        f"{'CPU µs/deliv':>12} {'lost':>6} {'p99 ms':>8} {'client µs':>9} {'client %':>8} "
        f"{'steal %':>7}"
    )
    for _ in range(args.rounds):
        for streams in args.streams:
            for server in args.servers:
                limit = max(128, streams)
                target = Nchan(limit) if server == "nchan" else None
                r = measure(
                    "sse-h2",
                    args.subscribers,
                    args.changes,
                    args.processes,
                    streams,
                    engine=server if server != "nchan" else "nghttp2",
                    target=target,
                )
                name = "nginx+nchan" if server == "nchan" else f"bridge {server}"
                figures.setdefault((name, streams), []).append(r)
                print(
                    f"{name:<14} {streams:5d} {r['connected']:6.0f} {r['connect_s']:7.2f} "
                    f"{r['held']:5.0f} {r['writes']:14.2f} {r['cpu_us']:12.2f} {r['lost']:6.0f} "
                    f"{r['p99_ms']:8.1f} {r['client_cpu_us']:9.2f} {r['client_busy']:8.1f} "
                    f"{r['steal']:7.1f}",
                    flush=True,
                )
    if args.rounds > 1:
        print("\nmin / median / max over the rounds")
        for (name, streams), runs in figures.items():

            def span(key: str, fmt: str, runs: list[dict[str, float]] = runs) -> str:
                values = sorted(r[key] for r in runs)
                return " / ".join(
                    format(v, fmt) for v in (values[0], statistics.median(values), values[-1])
                )

            print(
                f"{name:<14} S={streams:<5} CPU µs/deliv {span('cpu_us', '.2f')}  "
                f"connect s {span('connect_s', '.2f')}  held {span('held', '.0f')}  "
                f"writes/ev/conn {span('writes', '.2f')}",
                flush=True,
            )


if __name__ == "__main__":
    main()
