"""A small bounded cache of page assets, so pushing to 1,000 clients costs one upstream fetch.

It is a private HTTP cache in the sense of RFC 9111 for GET 200 responses only: `no-store`
and `private` are not kept; `max-age`/`s-maxage` (or `Expires`) decide freshness; a stale entry
with an `ETag` or `Last-Modified` is revalidated. Entries are keyed by upstream, Host and path,
and by the request's values of the fields the response's `Vary` names (RFC 9111 §4.1), so a
gzip body never reaches a client that did not ask for gzip. Concurrent misses for one asset
share one upstream request, which runs on its own: a client resetting its pushed stream does
not cancel it for the others. Eviction is least-recently-used by total body bytes.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import hashlib
import re
import time
from collections import OrderedDict
from dataclasses import dataclass

from .. import settings
from ..events import Headers
from ..routing.model import Upstream
from ..upstream import UpstreamPool
from ..upstream.headers import forward_request_headers, response_headers

_MAX_AGE = re.compile(rb"(?:^|,)\s*(s-maxage|max-age)\s*=\s*\"?(\d+)", re.IGNORECASE)
# Fields a 304 may update on the stored response (RFC 9111 §4.3.4); framing stays ours.
_NOT_UPDATED = frozenset({b"content-length", b"content-encoding", b"content-range"})

Primary = tuple[str, str, str]  # upstream name, Host sent, path
Selecting = tuple[bytes, ...]  # the request's values of the Vary'd fields


@dataclass(slots=True)
class Asset:
    status: int
    headers: Headers
    body: bytes
    version: str  # the ETag, or a hash of the body
    fresh_until: float
    cacheable: bool
    stored_at: float = 0.0  # monotonic time of the last upstream answer, for Age

    def validators(self) -> Headers:
        out: Headers = []
        for name, value in self.headers:
            if name == b"etag":
                out.append((b"if-none-match", value))
            elif name == b"last-modified":
                out.append((b"if-modified-since", value))
        return out

    @property
    def fresh(self) -> bool:
        return self.fresh_until > time.monotonic()

    def response_headers(self) -> Headers:
        """The stored head as sent downstream: `Age` says how long we held it (RFC 9111
        §5.1), so a browser does not count max-age again from the push."""
        age = max(0, int(time.monotonic() - self.stored_at))
        out = [(n, v) for n, v in self.headers if n not in (b"content-length", b"age")]
        out.append((b"age", str(age).encode()))
        out.append((b"content-length", str(len(self.body)).encode()))
        return out


def asset_request_headers(
    headers: Headers, *, upstream: Upstream, scheme: str, authority: str, http_version: str
) -> Headers:
    """What the upstream sees for an asset fetch: the normal proxy rewrite (Host per the
    upstream's `host:` mode, X-Forwarded-*, Via) of the page request's content-negotiation
    fields only. The fetch is shared by every client, so nothing of one client's (cookies,
    its address) goes with it."""
    return forward_request_headers(
        headers,
        client_ip="",
        scheme=scheme,
        authority=authority,
        http_version=http_version,
        upstream=upstream,
    )


class AssetCache:
    def __init__(self, pool: UpstreamPool, *, max_bytes: int = settings.ASSET_CACHE_BYTES) -> None:
        self.pool = pool
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[tuple[Primary, Selecting], Asset] = OrderedDict()
        # The field names each asset's last response varied on; bounded like the entries.
        self._vary: OrderedDict[Primary, tuple[bytes, ...]] = OrderedDict()
        self._inflight: dict[tuple[Primary, Selecting], asyncio.Future[Asset]] = {}
        self.fetches = 0

    def _key(self, upstream: Upstream, path: str, headers: Headers) -> tuple[Primary, Selecting]:
        host = next((v for n, v in headers if n == b"host"), b"").decode("latin-1")
        primary = (upstream.name, host, path)
        names = self._vary.get(primary, ())
        return primary, _selecting(names, headers)

    def peek(self, upstream: Upstream, path: str, headers: Headers) -> Asset | None:
        """The cached entry for this request, fresh or not, without touching the upstream."""
        return self._entries.get(self._key(upstream, path, headers))

    async def get(self, upstream: Upstream, path: str, headers: Headers) -> Asset:
        """`headers` as made by `asset_request_headers` (Host first)."""
        key = self._key(upstream, path, headers)
        entry = self._entries.get(key)
        if entry is not None and entry.fresh:
            self._entries.move_to_end(key)
            return entry
        pending = self._inflight.get(key)
        if pending is None:
            # A task of its own, awaited through shield: one waiter's cancellation (a reset
            # pushed stream) must not fail the fetch for the others or for the cache.
            pending = asyncio.ensure_future(self._fetch(key, upstream, path, headers, entry))
            self._inflight[key] = pending
            pending.add_done_callback(functools.partial(self._settled, key))
        return await asyncio.shield(pending)

    def _settled(self, key: tuple[Primary, Selecting], done: asyncio.Future[Asset]) -> None:
        if self._inflight.get(key) is done:
            del self._inflight[key]
        if not done.cancelled():
            done.exception()  # retrieved: every waiter re-raises it itself

    async def _fetch(
        self,
        key: tuple[Primary, Selecting],
        upstream: Upstream,
        path: str,
        headers: Headers,
        stale: Asset | None,
    ) -> Asset:
        request = list(headers)
        if stale is not None:
            request += stale.validators()
        self.fetches += 1
        status, answer, body = await self.pool.fetch(
            upstream,
            path,
            request,
            timeout=upstream.timeout,
            max_bytes=settings.PUSH_MAX_ASSET_BYTES,
        )
        now = time.monotonic()
        kept = response_headers(answer, http_version="2")
        if status == 304 and stale is not None:
            # RFC 9111 §4.3.4: the 304's fields replace the stored ones of the same name.
            fresh = {n for n, _ in kept if n not in _NOT_UPDATED}
            stale.headers = [(n, v) for n, v in stale.headers if n not in fresh] + [
                (n, v) for n, v in kept if n in fresh
            ]
            stale.version = _etag(stale.headers) or stale.version
            stale.fresh_until = _fresh_until(stale.headers)
            stale.stored_at = now
            if key in self._entries:
                self._entries.move_to_end(key)
            return stale
        version = _etag(kept) or hashlib.sha256(body).hexdigest()[:16]
        asset = Asset(
            status, kept, body, version, _fresh_until(kept), _cacheable(status, kept), now
        )
        self._store(key, asset, _vary_names(kept), headers)
        return asset

    def _store(
        self,
        key: tuple[Primary, Selecting],
        asset: Asset,
        names: tuple[bytes, ...],
        headers: Headers,
    ) -> None:
        self._drop(key)
        if not asset.cacheable or len(asset.body) > self.max_bytes // 4:
            return
        primary = key[0]
        if self._vary.get(primary) != names:
            # The asset now varies on other fields: variants stored under the old ones go.
            for stored in [k for k in self._entries if k[0] == primary]:
                self._drop(stored)
            self._vary[primary] = names
        self._vary.move_to_end(primary)
        key = (primary, _selecting(names, headers))
        self._entries[key] = asset
        self.size += len(asset.body)
        while self.size > self.max_bytes and self._entries:
            self._drop(next(iter(self._entries)))  # least recently used first
        while len(self._vary) > settings.ASSET_MAX_VARY_RECORDS:
            self._vary.popitem(last=False)  # at worst, one more fetch for that asset

    def _drop(self, key: tuple[Primary, Selecting]) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= len(old.body)


def _vary_names(headers: Headers) -> tuple[bytes, ...]:
    names: set[bytes] = set()
    for name, value in headers:
        if name == b"vary":
            names.update(t.strip().lower() for t in value.split(b",") if t.strip())
    return tuple(sorted(names))


def _selecting(names: tuple[bytes, ...], headers: Headers) -> Selecting:
    """The request's values of the Vary'd fields, combined as RFC 9111 §4.1 compares them."""
    return tuple(b", ".join(v for n, v in headers if n == name) for name in names)


def _etag(headers: Headers) -> str | None:
    for name, value in headers:
        if name == b"etag":
            return value.decode("latin-1")
    return None


def _cacheable(status: int, headers: Headers) -> bool:
    if status != 200:
        return False
    for name, value in headers:
        if name == b"cache-control" and re.search(rb"no-store|private", value, re.IGNORECASE):
            return False
        if name == b"vary" and value.strip() == b"*":
            return False
    return True


def _fresh_until(headers: Headers) -> float:
    """When the response stops being fresh (RFC 9111 §4.2): its lifetime minus its Age."""
    now = time.monotonic()
    age = 0
    for name, value in headers:
        if name == b"age" and value.strip().isdigit():
            age = int(value)
    for name, value in headers:
        if name == b"cache-control":
            if re.search(rb"no-cache", value, re.IGNORECASE):
                return 0.0
            found = _MAX_AGE.search(value)
            if found:
                return now + int(found.group(2)) - age
    for name, value in headers:
        if name == b"expires":
            try:
                when = email.utils.parsedate_to_datetime(value.decode("latin-1")).timestamp()
            except (TypeError, ValueError):
                return 0.0
            return now + max(0.0, when - time.time())  # absolute: Age is already in it
    return 0.0
