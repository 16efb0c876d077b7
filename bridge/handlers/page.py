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
import functools
import hashlib
import re
from collections.abc import Awaitable, Callable

from .. import settings
from ..errors import ErrorCode, StreamError
from ..events import Headers, Request
from ..routing.model import Route, Upstream
from ..routing.paths import PathError, normalize_path, split_target
from ..routing.table import RouteTable
from ..stream.exchange import Exchange
from .assets import Asset, AssetCache, asset_request_headers
from .proxy import ProxyHandler

COOKIE = b"bridge_pushed"
_PUSH_REQUEST_HEADERS = (b"accept-encoding", b"accept-language", b"user-agent")
_PRELOAD = re.compile(rb"<([^>]+)>\s*;.*?\brel\s*=\s*\"?(?:[^\";]*\s)?preload\b", re.IGNORECASE)
_NOPUSH = re.compile(rb";\s*nopush\b", re.IGNORECASE)
_TARGET = re.compile(rb"<([^>]*)>")
_TAG = re.compile(r"[0-9a-f]{8}")
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


def _cookie_tags(headers: Headers) -> list[str]:
    """The tags in the request's `bridge_pushed` cookie, oldest first, without repeats."""
    tags: list[str] = []
    for name, value in headers:
        if name != b"cookie":
            continue
        for part in value.split(b";"):
            key, _, val = part.strip().partition(b"=")
            if key == COOKIE:
                tags.extend(t for t in val.decode("latin-1").split(".") if _TAG.fullmatch(t))
    return list(dict.fromkeys(tags))[-settings.PUSH_COOKIE_TAGS :]


def _link_targets(values: list[bytes]) -> set[bytes]:
    return {m.group(1) for value in values for m in _TARGET.finditer(value)}


def _retrieve(fetch: asyncio.Future[Asset]) -> None:
    if not fetch.cancelled():
        fetch.exception()  # the promised stream reports its own errors


class PageHandler:
    def __init__(
        self, proxy: ProxyHandler, cache: AssetCache, *, table: RouteTable | None = None
    ) -> None:
        self.proxy = proxy
        self.cache = cache
        self.table = table
        self.learned: dict[int, tuple[str, ...]] = {}  # `push: auto`, per route index
        # Promised stream -> the page's fetch of its asset, so the pushed response is the very
        # version the cookie records. Keyed by connection and path; the page removes its own.
        self._handoff: dict[tuple[object, str], list[asyncio.Future[Asset]]] = {}
        self.promised = 0  # PUSH_PROMISEs sent (for /metrics)
        self.declined = 0  # pushes not made: the client refused push, or its stream limit

    def assets(self, route: Route) -> tuple[str, ...]:
        return route.push if route.push else self.learned.get(route.index, ())

    def asset_upstream(self, path: str) -> Upstream | None:
        """The upstream the router sends `path` to; None where no proxy route takes it (a
        push stream never ends, so it is hinted at most, never pushed)."""
        if self.table is None:
            return None
        try:
            found = self.table.match(normalize_path(split_target(path)[0]))
        except PathError:
            return None
        if found is None or found[0].stream is not None:
            return None
        return found[0].upstream

    async def __call__(self, exchange: Exchange, route: Route, target: str) -> None:
        request = exchange.request
        upstream = route.upstream
        assert upstream is not None
        assets = self.assets(route) if request.method == "GET" else ()
        links = [preload_link(path) for path in assets]
        if links:
            # RFC 8297: hints go out before the upstream has even seen the request.
            exchange.send_informational(103, [(b"link", b", ".join(links))])
        page = _PagePush(self, exchange, route, links, _cookie_tags(request.headers))
        if assets and request.http_version in ("2", "3"):
            page.promise_all(assets)
        try:
            await self.proxy(exchange, upstream, target, decorate=page.decorate)
        finally:
            page.release()

    async def serve_pushed(self, exchange: Exchange, route: Route, path: str) -> None:
        """Answer a promised stream with the upstream's own status, headers and body, from the
        asset cache; anything but a 200 is a reset, never an error page the browser would
        cache as the asset (RFC 9113 §8.4: only cacheable responses are pushed)."""
        upstream = route.upstream
        request = exchange.request
        try:
            if upstream is None or route.stream is not None:
                raise StreamError(ErrorCode.CANCELLED, "not an asset")
            queue = self._handoff.get((exchange.port, path))
            if queue:
                fetch = queue.pop(0)
                asset = await asyncio.shield(fetch)
            else:
                headers = _asset_headers(request, upstream)
                asset = await self.cache.get(upstream, path, headers)
        except StreamError as exc:
            exchange.access.note = exc.detail or exc.code.reason
            exchange.reset(ErrorCode.CANCELLED)
            return
        exchange.access.upstream_status = asset.status
        if asset.status != 200:
            exchange.reset(ErrorCode.CANCELLED)
            return
        exchange.respond_now(200, asset.response_headers(), asset.body)


def _asset_headers(request: Request, upstream: Upstream) -> Headers:
    negotiation = [(n, v) for n, v in request.headers if n in _PUSH_REQUEST_HEADERS]
    return asset_request_headers(
        negotiation,
        upstream=upstream,
        scheme=request.scheme,
        authority=request.authority,
        http_version=request.http_version,
    )


class _PagePush:
    """One page load's pushes: the promises, the cookie, and the Links on the page's head."""

    def __init__(
        self,
        page: PageHandler,
        exchange: Exchange,
        route: Route,
        links: list[bytes],
        have: list[str],
    ) -> None:
        self.page = page
        self.exchange = exchange
        self.route = route
        self.links = links
        self.have = have
        request = exchange.request
        negotiation = [(n, v) for n, v in request.headers if n in _PUSH_REQUEST_HEADERS]
        # RFC 9113 §8.4.1: the promised request names the page's own authority.
        self.promise_headers = [(b":authority", request.authority.encode()), *negotiation]
        self.pushed: dict[str, asyncio.Future[Asset]] = {}
        # Assets the browser has (by the cookie) in a version the cache must revalidate: if
        # the upstream changed it, it is promised once the answer is in, before the page head.
        self.recheck: dict[str, asyncio.Future[Asset]] = {}
        self._handed: list[tuple[tuple[object, str], asyncio.Future[Asset]]] = []

    def promise_all(self, assets: tuple[str, ...]) -> None:
        have = set(self.have)
        for path in assets:
            upstream = self.page.asset_upstream(path)
            if upstream is None:
                continue
            headers = _asset_headers(self.exchange.request, upstream)
            cached = self.page.cache.peek(upstream, path, headers)
            if cached is not None and _tag(path, cached.version) in have:
                if not cached.fresh:
                    fetch = asyncio.ensure_future(self.page.cache.get(upstream, path, headers))
                    fetch.add_done_callback(_retrieve)
                    self.recheck[path] = fetch
                continue
            self._promise(path, functools.partial(self.page.cache.get, upstream, path, headers))

    def _promise(
        self, path: str, fetch: Callable[[], Awaitable[Asset]] | asyncio.Future[Asset]
    ) -> None:
        if not self.exchange.push(path, self.promise_headers):
            self.page.declined += 1
            return  # refused by the client or its stream limit: it will fetch the asset itself
        self.page.promised += 1
        # No await since the push: the promised stream's task has not run yet and will find it.
        future = fetch if isinstance(fetch, asyncio.Future) else asyncio.ensure_future(fetch())
        future.add_done_callback(_retrieve)
        key = (self.exchange.port, path)
        self.page._handoff.setdefault(key, []).append(future)
        self._handed.append((key, future))
        self.pushed[path] = future

    def release(self) -> None:
        """Drop handoffs no promised stream took (it was reset before it ran)."""
        handoff = self.page._handoff
        for key, future in self._handed:
            queue = handoff.get(key)
            if queue is not None and future in queue:
                queue.remove(future)
            if queue is not None and not queue:
                del handoff[key]

    async def decorate(self, status: int, headers: Headers) -> Headers:
        waiting = [*self.pushed.values(), *self.recheck.values()]
        if waiting:
            # Normally long done (the page has upstream think time); bounded either way.
            await asyncio.wait(waiting, timeout=settings.PUSH_VERSION_WAIT)
        have = set(self.have)
        for path, fetch in self.recheck.items():
            asset = _result(fetch)
            if asset is not None and asset.status == 200 and _tag(path, asset.version) not in have:
                self._promise(path, fetch)  # changed upstream since this browser got it
        upstream_links = [v for n, v in headers if n == b"link"]
        if self.route.push_auto and status == 200:
            self._learn(upstream_links)
        # The upstream's own Links win; ours are added for the targets it did not name.
        named = _link_targets(upstream_links)
        ours = [link for link in self.links if _TARGET.match(link).group(1) not in named]  # type: ignore[union-attr]
        if ours:
            headers = [*headers, (b"link", b", ".join(ours))]
        cookie = self._cookie()
        if cookie is not None:
            headers = [*headers, (b"set-cookie", cookie)]
        return headers

    def _learn(self, links: list[bytes]) -> None:
        found: list[str] = []
        for value in links:
            for element in _split_links(value):
                match = _PRELOAD.match(element)
                if match is None or _NOPUSH.search(element):
                    continue  # `nopush`: the page asks for a preload, not a push
                target = match.group(1).decode("latin-1")
                # Same-origin absolute paths only: never push another site's resource.
                if _is_local(target) and target not in found:
                    found.append(target)
        if found:
            self.page.learned[self.route.index] = tuple(found[: settings.MAX_PUSH_AUTO])

    def _cookie(self) -> bytes | None:
        tags = list(self.have)
        for path, fetch in self.pushed.items():
            asset = _result(fetch)
            if asset is not None and asset.status == 200:
                tags.append(_tag(path, asset.version))
        tags = list(dict.fromkeys(tags))
        if tags == self.have:
            return None  # nothing new pushed, or no version known yet
        tags = tags[
            -settings.PUSH_COOKIE_TAGS :
        ]  # bounded: the newest versions are the ones that matter
        secure = "; Secure" if self.exchange.request.scheme == "https" else ""
        value = (
            f"{COOKIE.decode()}={'.'.join(tags)}; Path=/; Max-Age=604800; "
            f"HttpOnly; SameSite=Lax{secure}"
        )
        return value.encode()


def _result(fetch: asyncio.Future[Asset]) -> Asset | None:
    if not fetch.done() or fetch.cancelled() or fetch.exception() is not None:
        return None
    return fetch.result()


def _split_links(value: bytes) -> list[bytes]:
    """A Link field's elements (RFC 8288 §3), split on commas outside <...> and quotes."""
    out: list[bytes] = []
    start = 0
    in_uri = in_quote = False
    for i, byte in enumerate(value):
        if byte == 0x3C and not in_quote:
            in_uri = True
        elif byte == 0x3E and not in_quote:
            in_uri = False
        elif byte == 0x22 and not in_uri:
            in_quote = not in_quote
        elif byte == 0x2C and not in_uri and not in_quote:
            out.append(value[start:i].strip())
            start = i + 1
    out.append(value[start:].strip())
    return [e for e in out if e]


def _is_local(target: str) -> bool:
    return (
        target.startswith("/")
        and not target.startswith("//")
        and "\\" not in target
        and "#" not in target
        and all(33 <= ord(c) < 127 for c in target)
    )
