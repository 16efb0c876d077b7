"""Connect cost: N stream subscribers connecting at once, with a load generator in C.

`fanout.py` connects its subscribers from Python processes, and on a 2-core machine their
own TLS handshakes (Python's ssl on core 1) bound the connect time long before bridge does.
Here h2load (nghttp2, OpenSSL) opens N connections at once on core 1, each sending one SSE
request (`Accept: text/event-stream`), and reports when each got its first response byte:
the slowest of those is the time for everyone to be subscribed. Bridge runs pinned to core 0
on `fanout.py`'s config and long-poll upstream.

    python3 benchmarks/connect.py [--subscribers 10000] [--modes plain tls h2]

Prints, per mode: time until the last subscriber had its first byte (max of h2load's
"time to 1st byte"), its mean, and bridge CPU µs per connection. Needs `h2load` (Debian:
nghttp2-client). Loopback only; bounded runs.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import StealMeter, cpu_seconds
from fanout import raise_fd_limit, start_feed

MODES = ("plain", "tls", "h2")


def _seconds(text: str) -> float:
    value = float(re.match(r"[\d.]+", text).group(0))  # type: ignore[union-attr]
    if text.endswith("us"):
        return value / 1e6
    if text.endswith("ms"):
        return value / 1e3
    return value


def measure(mode: str, subscribers: int, hold: int) -> dict[str, float]:
    upstream, _, bridge, https, http = start_feed()
    try:
        bridge.start([https, http])
        url = (
            f"http://127.0.0.1:{http}/feed"
            if mode == "plain"
            else f"https://127.0.0.1:{https}/feed"
        )
        cmd = ["h2load", "-t1", f"-c{subscribers}", f"-n{subscribers}", "-D", str(hold)]
        cmd += ["-H", "accept: text/event-stream"]
        if mode != "h2":
            cmd.append("--h1")
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", "1", *cmd]
        cpu0 = cpu_seconds(bridge.pid)
        steal = StealMeter()
        out = subprocess.run([*cmd, url], capture_output=True, text=True, timeout=hold + 120).stdout
        cpu = cpu_seconds(bridge.pid) - cpu0
        first = re.search(r"time to 1st byte:\s+(\S+)\s+(\S+)\s+(\S+)", out)
        if first is None:
            raise RuntimeError(f"h2load printed no first-byte times:\n{out[-2000:]}")
        return {
            "last_s": _seconds(first.group(2)),
            "mean_s": _seconds(first.group(3)),
            "cpu_us": cpu / subscribers * 1e6,
            "steal": steal.percent(),
        }
    finally:
        bridge.stop()
        upstream.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument(
        "--hold", type=int, default=12, help="seconds h2load keeps the streams open"
    )
    args = parser.parse_args()
    if not shutil.which("h2load"):
        print("skipped: h2load not installed (Debian: nghttp2-client)")
        return
    raise_fd_limit()
    print(
        f"{'mode':<6} {'subs':>6} {'last 1st byte s':>16} {'mean s':>7} {'bridge CPU µs/conn':>19} {'steal %':>8}"
    )
    for mode in args.modes:
        r = measure(mode, args.subscribers, args.hold)
        print(
            f"{mode:<6} {args.subscribers:6d} {r['last_s']:16.2f} {r['mean_s']:7.2f}"
            f" {r['cpu_us']:19.0f} {r['steal']:8.1f}"
        )
        time.sleep(1)


if __name__ == "__main__":
    main()
