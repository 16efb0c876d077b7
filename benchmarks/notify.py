"""Notify: latency from an upstream change to its delivery at N subscribers, when the app says
so (`POST /notify`, on a stream polled `every: 30s`) against polling alone (`every: 1s`).

The upstream is a plain JSON endpoint (no long-poll): a change stamps its time into the body,
and every subscriber measures (receipt - change). With `notify` the benchmark posts to
bridge's admin listener as soon as the upstream has the change; with `poll` the change waits
for the next poll (on average half the interval). Changes come 1 to 2 s apart (random), so
they fall anywhere in the poll interval. Bridge runs pinned to core 0; the upstream and the
subscriber processes share core 1 (fanout.py's subscribers, SSE over HTTP/1.1).

    python3 benchmarks/notify.py --subscribers 10000 --changes 20

Prints, per mode: subscribers connected, delivery latency p50/p99/max, deliveries lost and
upstream polls made during the run. Loopback only; bounded runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import random
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BridgeProcess, free_port
from fanout import Feed, client_main, raise_fd_limit, serve_feed

TOKEN = "benchmark-notify-token-0123456789"
ROUTES = """\
listen:
  http: "127.0.0.1:{http}"
  http_mode: serve
  admin: "127.0.0.1:{admin}"
access_log:
  path: /dev/null
limits:
  max_connections: 30000
  max_subscribers: 30000
  max_subscribers_per_stream: 30000
upstreams:
  app:
    url: "http://127.0.0.1:{upstream}"
routes:
  - path: /feed
    stream:
      upstream: app
      poll: /feed
      every: {every}
      event: tick
      heartbeat: 1h
notify:
  token: "{token}"
"""
MODES = {"notify": "30s", "poll": "1s"}


def upstream_main(
    port: int,
    publish: mp.Queue,  # type: ignore[type-arg]
    done: mp.Queue,  # type: ignore[type-arg]
    ready: mp.Event,  # type: ignore[valid-type]
    polls: mp.Value,  # type: ignore[valid-type]
) -> None:
    """A JSON endpoint answering every GET at once with the current change."""

    def respond(feed: Feed, transport: asyncio.Transport, _head: bytes) -> None:
        polls.value += 1
        feed.answer(transport)

    # A change stamps its time into the body; `done` tells the sender it is there to poll.
    serve_feed(port, publish, ready, respond, lambda feed: done.put(feed.seq))


def notify(admin: int) -> None:
    request = urllib.request.Request(
        f"http://127.0.0.1:{admin}/notify",
        data=json.dumps({"path": "/feed"}).encode(),
        headers={"authorization": f"Bearer {TOKEN}", "content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        if answer.status != 202:
            raise RuntimeError(f"POST /notify answered {answer.status}")


def measure(mode: str, subscribers: int, changes: int, processes: int) -> dict[str, float]:
    upstream_port, http, admin = free_port(), free_port(), free_port()
    publish: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    done: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    ready = mp.Event()
    polls = mp.Value("q", 0)
    upstream = mp.Process(
        target=upstream_main, args=(upstream_port, publish, done, ready, polls), daemon=True
    )
    upstream.start()
    ready.wait(10)
    text = ROUTES.format(
        http=http, admin=admin, upstream=upstream_port, every=MODES[mode], token=TOKEN
    )
    bridge = BridgeProcess(text)
    raise_fd_limit()
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    go, stop = mp.Event(), mp.Event()
    try:
        bridge.start([http, admin])
        share = [
            subscribers // processes + (1 if i < subscribers % processes else 0)
            for i in range(processes)
        ]
        clients = [
            mp.Process(target=client_main, args=("sse-h1", http, n, 1, out, go, stop), daemon=True)
            for n in share
            if n
        ]
        for c in clients:
            c.start()
        connected = sum(out.get(timeout=300)[1] for _ in clients)
        go.set()
        time.sleep(0.5)
        rng = random.Random(22)
        polls0 = polls.value
        for _ in range(changes):
            time.sleep(rng.uniform(1.0, 2.0))
            publish.put(1)
            done.get(timeout=10)  # the upstream has it
            if mode == "notify":
                notify(admin)
        time.sleep(2.0)  # the last change's poll, polling alone
        upstream_polls = polls.value - polls0
        stop.set()
        latencies: list[float] = []
        for _ in clients:
            results = out.get(timeout=120)[1]
            latencies += [lat for _, lat in results]
        for c in clients:
            c.join(10)
        latencies.sort()

        def pct(p: float) -> float:
            if not latencies:
                return float("nan")
            return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000

        return {
            "connected": connected,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
            "lost": connected * changes - len(latencies),
            "polls": upstream_polls,
        }
    finally:
        stop.set()
        publish.put(None)
        bridge.stop()
        upstream.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10000)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--processes", type=int, default=4, help="subscriber processes")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = parser.parse_args()
    print(f"{'mode':<8} {'subs':>6} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'lost':>5} polls")
    for mode in args.modes:
        r = measure(mode, args.subscribers, args.changes, args.processes)
        print(
            f"{mode:<8} {r['connected']:>6} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
            f"{r['max_ms']:>8.1f} {r['lost']:>5} {r['polls']}"
        )


if __name__ == "__main__":
    main()
