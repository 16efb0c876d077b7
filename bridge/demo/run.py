"""`bridge demo`: the embedded legacy polling app with bridge in front of it.

The demo's config goes through the same loader as a user's `routes.yaml`, so what the demo
shows is exactly what a user gets from the same lines.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import tempfile
from pathlib import Path

DEMO_ROUTES = """\
listen:
  https: "127.0.0.1:{port}"
  http: "127.0.0.1:{http_port}"
  http_mode: redirect
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
"""


def demo_config_text(*, port: int, app_port: int, certs: Path) -> str:
    return DEMO_ROUTES.format(
        port=port, http_port=port + 1 if port else 0, app_port=app_port, certs=certs
    )


def run_demo(*, port: int = 8443) -> int:
    from ..app import create_bridge
    from ..certs import ensure_dev_certs
    from ..routing.config import load_config
    from ..server.run import run
    from .app import start_demo_app

    certs = Path("certs").resolve()
    ensure_dev_certs(certs)

    async def go() -> None:
        app = await start_demo_app()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "routes.yaml"
            path.write_text(demo_config_text(port=port, app_port=app.port, certs=certs))
            bridge = create_bridge(load_config(path))
            await bridge.start()
            https = bridge.ports["https"]
            print(
                f"\n  bridge demo: open https://localhost:{https}/\n"
                f"  (the legacy app polls /api/prices; bridge streams it as /prices/DEMO)\n"
                f"  try: curl --cacert {certs}/ca.crt -N https://localhost:{https}/prices/DEMO"
                f" -H 'Accept: text/event-stream'\n"
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
            finally:
                await bridge.stop(grace=1.0)
                await app.stop()

    try:
        run(go)
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        print(f"bridge demo: {exc}", file=sys.stderr)
        return 1
    return 0
