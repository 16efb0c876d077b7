"""Page + assets: time until the page and all its assets are received, three ways.

- push:        HTTP/2 client with push enabled; bridge pushes the declared assets.
- early hints: push disabled; the client starts fetching the assets when the 103 arrives
               (what a current browser does with `Link: rel=preload` in Early Hints).
- neither:     a route without `push:`; the client asks for the assets after the page.

Every upstream answer has a think time (default 50 ms), assets included: "neither" pays it
twice in a row (page, then assets); push and Early Hints overlap the two, so they should beat
"neither" by about the think time. Bridge runs as a subprocess on core 0; loopback only.

    python3 benchmarks/push.py [--think 0.05] [--loads 20]
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import sys
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.settings

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import BridgeProcess, free_port

from bridge.demo.httpserver import HttpRequest, HttpServer

ASSETS = {
    "/static/app.css": b"body{color:#123}\n" * 400,
    "/static/app.js": b"console.log(1);\n" * 800,
}

ROUTES = """\
listen:
  https: "127.0.0.1:{https}"
tls:
  cert: CERTS/server.crt
  key: CERTS/server.key
access_log:
  path: /dev/null
upstreams:
  app:
    url: "http://127.0.0.1:{upstream}"
routes:
  - path: /page
    upstream: app
    push: [/static/app.css, /static/app.js]
  - path: /plain
    upstream: app
  - path: /{{rest*}}
    upstream: app
"""


def site(think: float):  # type: ignore[no-untyped-def]
    async def handle(request: HttpRequest):  # type: ignore[no-untyped-def]
        if request.path in ("/page", "/plain"):
            await asyncio.sleep(think)
            return 200, [(b"content-type", b"text/html")], b"<html>" + b"x" * 2000 + b"</html>"
        body = ASSETS.get(request.path)
        await asyncio.sleep(think)  # every request to this app costs its think time
        if body is None:
            return 404, [], b""
        return 200, [(b"content-type", b"text/plain"), (b"cache-control", b"max-age=600")], body

    return handle


async def load(port: int, ctx: ssl.SSLContext, path: str, mode: str) -> float:
    """Seconds from the page request until the page and every asset are complete."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
    )
    conn = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    conn.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.ENABLE_PUSH: int(mode == "push")}
    )
    conn.initiate_connection()
    conn.increment_flow_control_window(1 << 24)
    base = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"localhost")]
    start = time.perf_counter()
    conn.send_headers(1, [*base, (b":path", path.encode())], end_stream=True)
    writer.write(conn.data_to_send())
    pending = {1}
    wanted = set(ASSETS)
    requested = False

    def request_assets() -> None:
        nonlocal requested
        if requested:
            return
        requested = True
        for asset in sorted(wanted):
            sid = conn.get_next_available_stream_id()
            pending.add(sid)
            conn.send_headers(sid, [*base, (b":path", asset.encode())], end_stream=True)

    while pending:
        data = await asyncio.wait_for(reader.read(65536), 10)
        if not data:
            break
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.PushedStreamReceived):
                pending.add(event.pushed_stream_id)
                wanted.discard(dict(event.headers)[b":path"].decode())
            elif isinstance(event, h2.events.InformationalResponseReceived) and mode == "hints":
                request_assets()  # a browser starts preloading on the 103
            elif isinstance(event, h2.events.DataReceived):
                conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                pending.discard(event.stream_id)
                if event.stream_id == 1 and mode != "push":
                    request_assets()  # without hints, the page's HTML names them
                if event.stream_id == 1 and mode == "push" and wanted:
                    request_assets()
        writer.write(conn.data_to_send())
    elapsed = time.perf_counter() - start
    writer.close()
    return elapsed


async def main(think: float, loads: int) -> None:
    upstream = HttpServer(site(think))
    upstream_port = await upstream.start()
    https = free_port()
    bridge = BridgeProcess(ROUTES.format(https=https, upstream=upstream_port))
    await asyncio.to_thread(bridge.start, [https])
    ctx = ssl.create_default_context(cafile=str(bridge.certs / "ca.crt"))
    ctx.set_alpn_protocols(["h2"])
    try:
        print(f"upstream think time {think * 1000:.0f} ms; {loads} loads each (median, p90)")
        for mode, path in (("push", "/page"), ("hints", "/page"), ("neither", "/plain")):
            await load(https, ctx, path, mode)  # warm the asset cache and connections
            times = sorted([await load(https, ctx, path, mode) for _ in range(loads)])
            label = {"push": "HTTP/2 push", "hints": "Early Hints", "neither": "neither"}[mode]
            p90 = times[int(0.9 * (len(times) - 1))]
            print(f"{label:<12} {statistics.median(times) * 1000:8.1f} ms {p90 * 1000:8.1f} ms")
    finally:
        bridge.stop()
        await upstream.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--think", type=float, default=0.05)
    parser.add_argument("--loads", type=int, default=20)
    args = parser.parse_args()
    asyncio.run(main(args.think, args.loads))
