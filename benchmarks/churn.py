"""Memory after connection churn: RSS of `bridge serve` over rounds of connections that their
client resets (RST) right after a request has begun, mixing HTTP/1.1 and HTTP/2 GETs, SSE over
both and WebSocket handshakes (tests/support/churn.py, in its own process).

Bridge runs as in production (uvloop, its raised GC thresholds), pinned to core 0; the client
and the upstream share core 1. Prints RSS after each round and the connection rate the round
reached (the client's TLS handshakes bound it as much as bridge does: indicative only).

    python3 benchmarks/churn.py [--rounds 6] [--connections 1000]

Loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, BridgeProcess, StealMeter, free_port, rss_bytes
from proxy import run_upstream

ROUTES = """\
listen:
  https: "127.0.0.1:{https}"
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
  - path: /prices/{{symbol}}
    stream:
      upstream: app
      poll: /api/price?s={{symbol}}
      every: 1s
  - path: /{{rest*}}
    upstream: app
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=1000)
    args = parser.parse_args()
    https, upstream = free_port(), free_port()
    origin = run_upstream(upstream)
    bridge = BridgeProcess(ROUTES.format(https=https, upstream=upstream))
    try:
        bridge.start([https])
        client = [sys.executable, "-m", "tests.support.churn", str(https)]
        client += [str(bridge.certs / "ca.crt")]
        if shutil.which("taskset"):
            client = ["taskset", "-c", "1", *client]
        subprocess.run([*client, "20"], cwd=ROOT, check=True, timeout=60)
        time.sleep(0.5)
        print(f"start: RSS {rss_bytes(bridge.pid) / 2**20:.1f} MiB")
        steal = StealMeter()
        for n in range(1, args.rounds + 1):
            steal.start()
            began = time.monotonic()
            count = str(args.connections)
            subprocess.run([*client, count], cwd=ROOT, check=True, timeout=300)
            rate = args.connections / (time.monotonic() - began)
            time.sleep(0.5)
            print(
                f"round {n}: RSS {rss_bytes(bridge.pid) / 2**20:.1f} MiB, "
                f"{rate:.0f} connections/s, steal {steal.percent():.1f}%"
            )
    finally:
        bridge.stop()
        origin.terminate()
        origin.wait(5)


if __name__ == "__main__":
    main()
