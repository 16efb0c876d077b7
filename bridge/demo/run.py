"""`bridge demo`: the embedded legacy polling app with bridge in front of it.

The demo's config goes through the same loader as a user's `routes.yaml`, so what the demo
shows is exactly what a user gets from the same lines.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import secrets
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from ..app import AppSite
    from ..server.run import Bridge

log = logging.getLogger("bridge")
DEMO_PORTS = 3  # --port (HTTPS), --port + 1 (HTTP), --port + 2 (admin)

DEMO_ROUTES = """\
listen:
  https: "127.0.0.1:{port}"
  http: "127.0.0.1:{http_port}"
  http_mode: redirect
  admin: "127.0.0.1:{admin_port}"
tls:
  cert: {certs}/server.crt
  key: {certs}/server.key
access_log:
  path: "-"
  format: combined
upstreams:
  app:
    url: "http://127.0.0.1:{app_port}"
routes:
  - path: /prices/{{symbol}}
    stream:
      upstream: app
      poll: /api/prices?symbol={{symbol}}
      every: 1s
      event: price
  - path: /updates
    stream:
      upstream: app
      poll: /api/updates
      longpoll:
        cursor: seq
        param: since
        timeout: 30s
      emit: patch
  - path: /
    upstream: app
    push: [/static/app.css, /static/app.js]
  - path: /{{rest*}}
    upstream: app
notify:
  token: "{notify_token}"      # the app's write path uses the Bridge-Notify header instead
"""


def demo_config_text(*, port: int, app_port: int, certs: Path) -> str:
    return DEMO_ROUTES.format(
        port=port,
        http_port=port + 1 if port else 0,
        admin_port=port + 2 if port else 0,
        app_port=app_port,
        certs=certs,
        notify_token=secrets.token_urlsafe(24),
    )


def demo_viewers(bridge: Bridge) -> int:
    """How many subscribers bridge streams /prices/DEMO to (SSE and WebSocket together)."""
    hub = cast("AppSite", bridge.site).hub  # create_bridge's site
    channels = hub.channels.values()
    return sum(len(c.subscribers) for c in channels if c.spec.params.get("symbol") == "DEMO")


def ports_free(first: int, host: str = "127.0.0.1") -> bool:
    """Whether the demo's three ports from `first` can all be bound now."""
    if not 0 < first <= 65535 - (DEMO_PORTS - 1):
        return False
    for port in range(first, first + DEMO_PORTS):
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                return False
    return True


def suggest_port(busy: int) -> int | None:
    """A --port above `busy` whose next two ports are free as well, or None."""
    start = busy + 10 if busy else 9443
    for first in range(start, min(start + 1000, 65533), 10):
        if ports_free(first):
            return first
    return None


def run_demo(*, port: int = 8443) -> int:
    from ..app import create_bridge
    from ..certs import ensure_dev_certs
    from ..routing.config import load_config
    from ..server.run import run
    from .app import start_demo_app

    certs = Path("certs").resolve()
    ensure_dev_certs(certs)

    async def go() -> None:
        holder: list[Bridge] = []
        app = await start_demo_app(viewers=lambda: demo_viewers(holder[0]) if holder else 0)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "routes.yaml"
            path.write_text(demo_config_text(port=port, app_port=app.port, certs=certs))
            bridge = create_bridge(load_config(path))
            holder.append(bridge)
            try:
                await bridge.start()
            except OSError:
                await bridge.stop(grace=0)
                await app.stop()
                raise
            https, admin = bridge.ports["https"], bridge.ports["admin"]
            print(
                f"\n  bridge demo: open https://localhost:{https}/\n"
                f"  (the legacy app polls /api/prices; bridge streams it as /prices/DEMO)\n"
                f"  try: curl --cacert {certs}/ca.crt -N https://localhost:{https}/prices/DEMO"
                f" -H 'Accept: text/event-stream'\n"
                f"  admin: http://127.0.0.1:{admin}/metrics  /streams  /readyz\n"
                f"  development CA to trust: {certs}/ca.crt   (Ctrl-C stops)\n",
                file=sys.stderr,
                flush=True,
            )
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):  # `docker stop` and Ctrl-C alike
                loop.add_signal_handler(sig, stop.set)
            try:
                await stop.wait()
                log.info("shutting down")
            finally:
                await bridge.stop(grace=1.0)
                await app.stop()
            log.info("stopped")  # as `bridge serve` does: the last line says it ended cleanly

    try:
        run(go)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            ports = f"{port}-{port + 2}" if port else "the ports it chose"
            other = suggest_port(port)
            hint = (
                f"try bridge demo --port {other} ({other}-{other + 2} are free now)"
                if other is not None
                else "try bridge demo --port with three free ports in a row"
            )
            print(
                f"bridge demo: a port in {ports} is in use ({exc.strerror}); the demo uses"
                f" --port (HTTPS), the next one (HTTP) and the one after (admin): {hint}",
                file=sys.stderr,
            )
        else:
            print(f"bridge demo: {exc}", file=sys.stderr)
        return 1
    return 0
