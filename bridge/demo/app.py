"""The embedded "legacy polling app" that `bridge demo` puts behind bridge.

It is deliberately the kind of app bridge is for: a price that changes every second, served
by polling endpoints. Its page subscribes to `/prices/DEMO` (SSE or WebSocket) — a stream
that exists only behind bridge, which polls `/api/prices` once for all viewers — and falls
back to polling `/api/prices` itself when that stream is not there (the app on its own).

Routes: `/` (the page), `/static/*` (files of `static/`, with ETag), `/api/prices?symbol=X`
(JSON with ETag / Last-Modified and 304s), `/api/updates?since=N` (a long-poll whose `seq`
cursor moves every second), `/api/stats` (how often the app was polled, and — when `bridge
demo` tells it — how many viewers bridge is streaming to), `/healthz`, and one write:
`POST /api/trade?symbol=X` moves X's price up 50 cents for good and answers with
`Bridge-Notify: /prices/X`, the one line a legacy app adds to its write path so that bridge
re-polls the stream at once instead of at its next interval (the page times it).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import resources

from .httpserver import (
    HttpServer,
    ServerRequest,
    ServerResponse,
    etag_of,
    http_date,
    is_not_modified,
)

MAX_SYMBOL = 12
MAX_TRADED = 100  # symbols whose trades the app remembers (the demo's state is bounded)
TRADE_STEP = 0.5  # each trade moves the price up this much
LONGPOLL_DEFAULT = 25.0  # seconds an /api/updates request is held without a change
LONGPOLL_MAX = 60.0

CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".json": b"application/json",
    ".svg": b"image/svg+xml",
    ".png": b"image/png",
    ".ico": b"image/x-icon",
    ".txt": b"text/plain; charset=utf-8",
}


def price(symbol: str, now: float) -> float:
    """A deterministic price for `symbol` at second `int(now)` that differs every second.

    A triangle wave moves 25 cents each second; the added sine moves at most
    ceil(300/23) + 1 = 14 cents a second, so consecutive prices always differ.
    """
    second = int(now)
    seed = int(hashlib.sha256(symbol.encode()).hexdigest()[:6], 16) % 100
    triangle = abs(second % 80 - 40)
    cents = 10000 + 100 * seed + 25 * triangle + round(300 * math.sin(second / 23))
    return cents / 100


def iso(second: int) -> str:
    return datetime.fromtimestamp(second, UTC).isoformat().replace("+00:00", "Z")


# --- static files --------------------------------------------------------------------------


class StaticFiles:
    """The files of `bridge/demo/static/`, read once (a handful of small files: bounded)."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, bytes, bytes]] | None = None

    def get(self, name: str) -> tuple[bytes, bytes, bytes] | None:
        """(body, content type, etag) of `name`, or None."""
        if self._files is None:
            self._files = {}
            for entry in resources.files("bridge.demo").joinpath("static").iterdir():
                if entry.is_file() and not entry.name.startswith("."):
                    body = entry.read_bytes()
                    suffix = entry.name[entry.name.rfind(".") :]
                    kind = CONTENT_TYPES.get(suffix, b"application/octet-stream")
                    self._files[entry.name] = (body, kind, etag_of(body))
        return self._files.get(name)


STATIC = StaticFiles()


def static_response(request: ServerRequest, name: str, cache: bytes) -> ServerResponse:
    found = STATIC.get(name)
    if found is None:
        return ServerResponse.text("not found\n", 404)
    body, kind, tag = found
    headers = [(b"etag", tag), (b"cache-control", cache)]
    if is_not_modified(request, tag):
        return ServerResponse(304, headers)
    return ServerResponse(200, [(b"content-type", kind), *headers], body)


# --- the API ---------------------------------------------------------------------------------


def prices(request: ServerRequest, trades: int = 0) -> ServerResponse:
    symbol = request.query.get("symbol", "DEMO")[:MAX_SYMBOL] or "DEMO"
    second = int(time.time())
    value = round(price(symbol, second) + TRADE_STEP * trades, 2)
    answer = ServerResponse.json(
        {"symbol": symbol, "price": value, "time": iso(second), "trades": trades}
    )
    assert isinstance(answer.body, bytes)
    tag = etag_of(answer.body)
    validators = [
        (b"etag", tag),
        (b"last-modified", http_date(second)),
        (b"cache-control", b"no-cache"),
    ]
    if is_not_modified(request, tag, second):
        return ServerResponse(304, validators)
    answer.headers += validators
    return answer


async def updates(request: ServerRequest) -> ServerResponse:
    """Long-poll: `seq` is the current second. With `since=N` the answer waits until the
    cursor passes N (or `timeout` seconds, default 25); without it, it answers at once."""
    since_text = request.query.get("since")
    try:
        since = int(since_text) if since_text is not None else None
        wait = min(float(request.query.get("timeout", LONGPOLL_DEFAULT)), LONGPOLL_MAX)
    except ValueError:
        return ServerResponse.text("since must be an integer, timeout a number\n", 400)
    if since is not None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait, 0.0)
        while int(time.time()) <= since:  # bounded by the deadline
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            # Sleep to just past the next second boundary, when the cursor moves.
            await asyncio.sleep(min(remaining, 1.001 - time.time() % 1))
    second = int(time.time())
    return ServerResponse.json(
        {"seq": second, "time": iso(second), "prices": {"DEMO": price("DEMO", second)}},
        headers=[(b"cache-control", b"no-store")],
    )


class DemoStats:
    """The page's point, in numbers: upstream polls against viewers. `viewers` is given by
    `bridge demo` (it reads bridge's hub); the app alone knows only its own polls."""

    def __init__(self, viewers: Callable[[], int] | None = None) -> None:
        self.polls = 0
        self.viewers = viewers
        self.trades: dict[str, int] = {}  # symbol -> trades so far (at most MAX_TRADED)

    def answer(self) -> ServerResponse:
        viewers = self.viewers() if self.viewers is not None else None
        return ServerResponse.json(
            {"polls": self.polls, "viewers": viewers}, headers=[(b"cache-control", b"no-store")]
        )


def trade(request: ServerRequest, stats: DemoStats) -> ServerResponse:
    """The app's write path: one trade, and the header that tells bridge what it changed."""
    symbol = request.query.get("symbol", "DEMO")
    if not (0 < len(symbol) <= MAX_SYMBOL and symbol.isascii() and symbol.isalnum()):
        return ServerResponse.text("symbol: 1 to 12 letters or digits\n", 400)
    if symbol not in stats.trades and len(stats.trades) >= MAX_TRADED:
        return ServerResponse.text("too many symbols traded\n", 429)
    stats.trades[symbol] = stats.trades.get(symbol, 0) + 1
    return ServerResponse.json(
        {"symbol": symbol, "trades": stats.trades[symbol]},
        headers=[
            (b"cache-control", b"no-store"),
            # bridge strips this and re-polls the stream now; without bridge it is ignored.
            (b"bridge-notify", f"/prices/{symbol}".encode()),
        ],
    )


async def handle(request: ServerRequest, stats: DemoStats | None = None) -> ServerResponse:
    path = request.path
    if path == "/api/trade" and stats is not None:
        if request.method != "POST":
            return ServerResponse.text("method not allowed\n", 405, [(b"allow", b"POST")])
        return trade(request, stats)
    if request.method not in ("GET", "HEAD"):
        return ServerResponse.text("method not allowed\n", 405, [(b"allow", b"GET, HEAD")])
    if path in ("/", "/index.html"):
        return static_response(request, "index.html", b"no-cache")
    if path.startswith("/static/"):
        name = path.removeprefix("/static/")
        if "/" in name or name.startswith("."):
            return ServerResponse.text("not found\n", 404)
        return static_response(request, name, b"max-age=60")
    if path == "/api/prices":
        if stats is None:
            return prices(request)
        stats.polls += 1
        symbol = request.query.get("symbol", "DEMO")[:MAX_SYMBOL] or "DEMO"
        return prices(request, stats.trades.get(symbol, 0))
    if path == "/api/stats" and stats is not None:
        return stats.answer()
    if path == "/api/updates":
        return await updates(request)
    if path == "/healthz":
        return ServerResponse.text("ok\n", headers=[(b"cache-control", b"no-store")])
    return ServerResponse.text("not found\n", 404)


async def start_demo_app(
    host: str = "127.0.0.1", port: int = 0, *, viewers: Callable[[], int] | None = None
) -> HttpServer:
    server = HttpServer(functools.partial(handle, stats=DemoStats(viewers)))
    await server.start(host, port)
    return server
