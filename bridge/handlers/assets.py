"""A small bounded cache of page assets, so pushing to 1,000 clients costs one upstream fetch.

It is a private HTTP cache in the sense of RFC 9111 for GET 200 responses only: `no-store`
and `private` are not kept; `max-age`/`s-maxage` (or `Expires`) decide freshness; a stale entry
with an `ETag` or `Last-Modified` is revalidated. Concurrent misses for one asset share one
upstream request. Eviction is least-recently-used by total body bytes.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import re
import time
from collections import OrderedDict
from dataclasses import dataclass

from .. import settings
from ..errors import ErrorCode, StreamError
from ..events import Headers
from ..routing.model import Upstream
from ..upstream.client import UpstreamPool
from ..upstream.headers import response_headers

MAX_ASSET_BYTES = 4 * settings.MB  # larger assets are not worth pushing; passed through instead
_MAX_AGE = re.compile(rb"(?:^|,)\s*(s-maxage|max-age)\s*=\s*\"?(\d+)", re.IGNORECASE)


@dataclass(slots=True)
class Asset:
    status: int
    headers: Headers
    body: bytes
    version: str  # the ETag, or a hash of the body
    fresh_until: float
    cacheable: bool

    def validators(self) -> Headers:
        out: Headers = []
        for name, value in self.headers:
            if name == b"etag":
                out.append((b"if-none-match", value))
            elif name == b"last-modified":
                out.append((b"if-modified-since", value))
        return out


class AssetCache:
    def __init__(self, pool: UpstreamPool, *, max_bytes: int = settings.ASSET_CACHE_BYTES) -> None:
        self.pool = pool
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[tuple[str, str], Asset] = OrderedDict()
        self._inflight: dict[tuple[str, str], asyncio.Future[Asset]] = {}
        self.fetches = 0

    def peek(self, upstream: Upstream, path: str) -> Asset | None:
        """The cached entry, fresh or not, without touching the upstream."""
        return self._entries.get((upstream.name, path))

    async def get(self, upstream: Upstream, path: str, headers: Headers) -> Asset:
        key = (upstream.name, path)
        entry = self._entries.get(key)
        if entry is not None and entry.fresh_until > time.monotonic():
            self._entries.move_to_end(key)
            return entry
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Asset] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            asset = await self._fetch(upstream, path, headers, entry)
            future.set_result(asset)
            return asset
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._inflight[key]

    async def _fetch(
        self, upstream: Upstream, path: str, headers: Headers, stale: Asset | None
    ) -> Asset:
        request = [(b"host", upstream.authority.encode()), *headers]
        if stale is not None:
            request += stale.validators()
        self.fetches += 1
        status, answer, body = await self.pool.fetch(
            upstream, path, request, timeout=upstream.timeout, max_bytes=MAX_ASSET_BYTES
        )
        key = (upstream.name, path)
        if status == 304 and stale is not None:
            stale.fresh_until = _fresh_until(answer) or _fresh_until(stale.headers)
            self._entries.move_to_end(key)
            return stale
        kept = response_headers(answer, http_version="2")
        version = _etag(kept) or hashlib.sha256(body).hexdigest()[:16]
        asset = Asset(status, kept, body, version, _fresh_until(kept), _cacheable(status, kept))
        self._store(key, asset)
        return asset

    def _store(self, key: tuple[str, str], asset: Asset) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.size -= len(old.body)
        if not asset.cacheable or len(asset.body) > self.max_bytes // 4:
            return
        self._entries[key] = asset
        self.size += len(asset.body)
        while self.size > self.max_bytes and self._entries:
            _, evicted = self._entries.popitem(last=False)
            self.size -= len(evicted.body)


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
    now = time.monotonic()
    for name, value in headers:
        if name == b"cache-control":
            if re.search(rb"no-cache", value, re.IGNORECASE):
                return 0.0
            found = _MAX_AGE.search(value)
            if found:
                return now + int(found.group(2))
    for name, value in headers:
        if name == b"expires":
            try:
                when = email.utils.parsedate_to_datetime(value.decode("latin-1")).timestamp()
            except (TypeError, ValueError):
                return 0.0
            return now + max(0.0, when - time.time())
    return 0.0


def require_ok(asset: Asset) -> Asset:
    if asset.status != 200:
        raise StreamError(ErrorCode.NOT_FOUND, f"asset answered {asset.status}")
    return asset
