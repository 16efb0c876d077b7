"""The embedded "legacy polling app" that `bridge demo` puts behind bridge.

It is deliberately the kind of app bridge is for: its page polls `/api/prices` every second.
Behind bridge the same page subscribes to `/prices/DEMO` instead (bridge polls once for
everyone), and still works without bridge's stream thanks to its polling fallback.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from datetime import UTC, datetime
from importlib import resources

from .httpserver import Answer, Headers, HttpRequest, HttpServer

_TYPES = {".css": b"text/css; charset=utf-8", ".js": b"text/javascript; charset=utf-8"}


def price(symbol: str, now: float) -> float:
    """A deterministic price that changes every second."""
    second = int(now)
    seed = int(hashlib.sha256(symbol.encode()).hexdigest()[:6], 16) % 100
    return round(100 + seed + 5 * math.sin(second / 7) + (second % 5) * 0.1, 2)


def _etagged(request: HttpRequest, body: bytes, kind: bytes, cache: bytes = b"no-cache") -> Answer:
    tag = b'"' + hashlib.sha256(body).hexdigest()[:16].encode() + b'"'
    headers: Headers = [(b"etag", tag), (b"cache-control", cache)]
    if request.header("if-none-match") == tag.decode():
        return 304, headers, b""
    return 200, [(b"content-type", kind), *headers], body


async def handle(request: HttpRequest) -> Answer:
    path = request.path
    now = time.time()
    if path == "/":
        page = resources.files("bridge.demo").joinpath("static/index.html").read_bytes()
        return 200, [(b"content-type", b"text/html; charset=utf-8")], page
    if path.startswith("/static/") and path.count("/") == 2 and ".." not in path:
        name = path.rsplit("/", 1)[1]
        suffix = name[name.rfind(".") :]
        try:
            body = resources.files("bridge.demo").joinpath(f"static/{name}").read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return 404, [], b"not found\n"
        return _etagged(
            request, body, _TYPES.get(suffix, b"application/octet-stream"), b"max-age=60"
        )
    if path == "/api/prices":
        symbol = request.query.get("symbol", "DEMO")[:12]
        stamp = datetime.fromtimestamp(int(now), UTC).isoformat()
        body = json.dumps({"symbol": symbol, "price": price(symbol, now), "time": stamp}).encode()
        return _etagged(request, body, b"application/json")
    if path == "/api/updates":
        # Long-poll: answers when the second (the cursor) moves past `since`, or after 25 s.
        since = request.query.get("since")
        if since is not None and since.isdigit():
            deadline = now + 25
            while int(time.time()) <= int(since) and time.time() < deadline:
                await asyncio.sleep(0.05)
        second = int(time.time())
        body = json.dumps({"seq": second, "prices": {"DEMO": price("DEMO", second)}}).encode()
        return 200, [(b"content-type", b"application/json")], body
    if path == "/healthz":
        return 200, [(b"content-type", b"text/plain")], b"ok\n"
    return 404, [(b"content-type", b"text/plain")], b"not found\n"


async def start_demo_app(host: str = "127.0.0.1", port: int = 0) -> HttpServer:
    server = HttpServer(handle)
    await server.start(host, port)
    return server
