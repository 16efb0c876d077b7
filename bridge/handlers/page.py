"""Page routes with `push:`: assets arrive before the browser asks for them.

For every client: `103 Early Hints` with `Link: rel=preload` as soon as the request is routed
(not to HTTP/1.0), and the same `Link`s on the final response unless the upstream set its own.
Where the client accepts push (HTTP/2, and HTTP/3): a PUSH_PROMISE per asset before the page
is even requested upstream; each promised stream is a synthesized request answered from the
asset cache. A cookie remembers which asset versions this browser got, so a second visit is
not pushed what is already in its cache (RFC 9113 §8.4 leaves that judgement to the server).
"""

from __future__ import annotations

import asyncio
import hashlib
import re

from .. import settings
from ..errors import ErrorCode, StreamError
from ..events import Headers
from ..routing.model import Route
from ..server.exchange import Exchange
from .assets import Asset, AssetCache
from .proxy import ProxyHandler
from .util import header

COOKIE = b"bridge_pushed"
MAX_COOKIE_TAGS = 32  # bounded cookie: 32 tags of 8 hex chars
_PUSH_REQUEST_HEADERS = (b"accept-encoding", b"accept-language", b"user-agent")
_PRELOAD = re.compile(rb"<([^>]+)>\s*;[^,]*?rel\s*=\s*\"?preload", re.IGNORECASE)
_AS = {
    ".css": "style",
    ".js": "script",
    ".mjs": "script",
    ".woff2": "font",
    ".woff": "font",
    ".ttf": "font",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".gif": "image",
    ".svg": "image",
    ".webp": "image",
    ".avif": "image",
}


def preload_link(path: str) -> bytes:
    base = path.split("?", 1)[0]
    dot = base.rfind(".")
    kind = _AS.get(base[dot:].lower(), "fetch") if dot >= 0 else "fetch"
    link = f"<{path}>; rel=preload; as={kind}"
    if kind in ("font", "fetch"):
        link += "; crossorigin"  # fonts and fetches are CORS requests; the preload must match
    return link.encode()


def _tag(path: str, version: str) -> str:
    return hashlib.sha256(f"{path}\0{version}".encode()).hexdigest()[:8]


def _cookie_tags(headers: Headers) -> set[str]:
    tags: set[str] = set()
    for name, value in headers:
        if name != b"cookie":
            continue
        for part in value.split(b";"):
            key, _, val = part.strip().partition(b"=")
            if key == COOKIE:
                tags.update(t for t in val.decode("latin-1").split(".") if len(t) == 8)
    return tags


class PageHandler:
    def __init__(self, proxy: ProxyHandler, cache: AssetCache) -> None:
        self.proxy = proxy
        self.cache = cache
        self.learned: dict[int, tuple[str, ...]] = {}  # `push: auto`, per route index

    def assets(self, route: Route) -> tuple[str, ...]:
        return route.push if route.push else self.learned.get(route.index, ())

    async def __call__(self, exchange: Exchange, route: Route, target: str) -> None:
        request = exchange.request
        upstream = route.upstream
        assert upstream is not None
        assets = self.assets(route) if request.method == "GET" else ()
        links = [preload_link(path) for path in assets]
        if links:
            # RFC 8297: hints go out before the upstream has even seen the request.
            exchange.send_informational(103, [(b"link", b", ".join(links))])
        have = _cookie_tags(request.headers)
        pushed: list[str] = []
        fetches: list[asyncio.Future[Asset]] = []
        if assets and request.http_version in ("2", "3"):
            extra = [(n, v) for n, v in request.headers if n in _PUSH_REQUEST_HEADERS]
            promise_headers = [(b":authority", request.authority.encode()), *extra]
            for path in assets:
                cached = self.cache.peek(upstream, path)
                if cached is not None and _tag(path, cached.version) in have:
                    continue
                exchange.push(path, promise_headers)
                pushed.append(path)
                # Fetch now (shared with the promised stream) so the cookie can name versions.
                fetches.append(asyncio.ensure_future(self.cache.get(upstream, path, extra)))
        add = _PageDecoration(self, route, links, have, pushed, exchange.request.scheme, fetches)
        try:
            await self.proxy(exchange, upstream, target, decorate=add)
        finally:
            for fetch in fetches:
                if fetch.done() and not fetch.cancelled():
                    fetch.exception()  # retrieved: the promised stream reports its own errors
                else:
                    fetch.cancel()

    async def serve_pushed(self, exchange: Exchange, route: Route, path: str) -> None:
        """Answer a promised stream from the asset cache (the upstream's own headers and body)."""
        upstream = route.upstream
        if upstream is None:
            raise StreamError(ErrorCode.NOT_FOUND)
        extra = [(n, v) for n, v in exchange.request.headers if n in _PUSH_REQUEST_HEADERS]
        asset = await self.cache.get(upstream, path, extra)
        if asset.status != 200:
            # Only successful GET responses are pushed; the client falls back to fetching.
            exchange.reset(ErrorCode.CANCELLED)
            return
        exchange.upstream_status = asset.status
        headers = [(n, v) for n, v in asset.headers if n != b"content-length"]
        headers.append((b"content-length", str(len(asset.body)).encode()))
        exchange.respond_now(200, headers, asset.body)


class _PageDecoration:
    """Adds preload Links and the pushed-versions cookie to the page's response head."""

    def __init__(
        self,
        page: PageHandler,
        route: Route,
        links: list[bytes],
        have: set[str],
        pushed: list[str],
        scheme: str,
        fetches: list[asyncio.Future[Asset]],
    ) -> None:
        self.fetches = fetches
        self.page = page
        self.route = route
        self.links = links
        self.have = have
        self.pushed = pushed
        self.scheme = scheme

    async def __call__(self, status: int, headers: Headers) -> Headers:
        if self.fetches:
            # Normally long done (the page has upstream think time); bounded either way.
            await asyncio.wait(self.fetches, timeout=1.0)
        upstream_links = [v for n, v in headers if n == b"link"]
        if self.route.push_auto and status == 200:
            self._learn(upstream_links)
        if self.links and not any(b"preload" in v.lower() for v in upstream_links):
            headers = [*headers, (b"link", b", ".join(self.links))]
        cookie = self._cookie()
        if cookie is not None:
            headers = [*headers, (b"set-cookie", cookie)]
        return headers

    def _learn(self, links: list[bytes]) -> None:
        found: list[str] = []
        for value in links:
            for match in _PRELOAD.finditer(value):
                target = match.group(1).decode("latin-1")
                # Same-origin absolute paths only: never push another site's resource.
                if target.startswith("/") and not target.startswith("//") and target not in found:
                    found.append(target)
        if found:
            self.page.learned[self.route.index] = tuple(found[: settings.MAX_PUSH_AUTO])

    def _cookie(self) -> bytes | None:
        upstream = self.route.upstream
        if not self.pushed or upstream is None:
            return None
        tags = [t for t in self.have]
        for path in self.pushed:
            cached = self.page.cache.peek(upstream, path)
            if cached is not None:
                tags.append(_tag(path, cached.version))
        tags = list(dict.fromkeys(tags))[-MAX_COOKIE_TAGS:]
        secure = "; Secure" if self.scheme == "https" else ""
        value = f"{COOKIE.decode()}={'.'.join(tags)}; Path=/; Max-Age=604800; SameSite=Lax{secure}"
        return value.encode()


def has_preload(headers: Headers) -> bool:
    value = header(headers, b"link")
    return value is not None and b"preload" in value.lower()
