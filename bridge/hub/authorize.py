"""Who may subscribe: a stream's `authorize:` block, asked of the app itself (docs/configuration.md
"Authorization").

A subscriber (SSE, WebSocket, a plain GET answered from the stream) is let in when bridge's
`GET check` on the stream's upstream, carrying only the subscriber's `forward` headers (never
the upstream's own `headers`: the service's credentials must not vouch for anyone), answers
2xx. A 3xx or 4xx answer is a `Refused` with the app's status, its `WWW-Authenticate` (and a
redirect's `Location`); a check that cannot be made (unreachable, timed out, a 5xx) is a
`Refused` 502/504 naming the cause, and lets nobody in.

- **Decisions** (allowed, or the app's refusal) are cached per (check request, digest of the
  forwarded values) for the block's `cache`, in a bounded LRU (`settings.AUTHORIZE_CACHE_SIZE`);
  the check request is the upstream and the filled-in check target, which the stream decides,
  so a reload that keeps the block keeps its decisions. Failures are never cached. Concurrent
  subscribers with the same credentials share one check in flight.
- **Rechecks.** Live subscribers admitted with the same credentials on the same stream form
  one `Audience`; each audience is checked again every `recheck` (jittered downwards, so
  thousands drift apart), through the cache. A refusal calls every member's `deny` (the handler
  ends it: SSE `denied`, WebSocket 1008); a check that fails keeps them and tries again soon.
- **Reload.** An audience whose route lost its block stops being checked; one whose block or
  check target changed is checked again under the new block within
  `settings.AUTHORIZE_RELOAD_SPREAD`.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from .. import settings
from ..errors import ErrorCode, StreamError
from ..events import Headers
from ..routing.model import Authorize, Route, Upstream
from ..routing.paths import substitute
from .context import HubContext
from .key import NOT_FORWARDED

# What a refused subscriber gets back of the app's answer.
_PASSED_ON = (b"www-authenticate",)
_PASSED_ON_REDIRECT = (b"www-authenticate", b"location")


class Refused(Exception):
    """A subscriber is not let in: the answer to give it, whole (status, headers, short body)."""

    def __init__(self, status: int, headers: Headers, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        body = f"{status} {reason}\n".encode()
        self.headers: Headers = [
            *headers,
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
        ]
        self.body = body


CacheKey = tuple[str, str, str]  # (upstream origin + base path, check target, credentials digest)


@dataclass(frozen=True, slots=True)
class Grant:
    """An admitted subscriber's check: what its rechecks ask again."""

    route_path: str
    params: dict[str, str]
    block: Authorize
    upstream: Upstream
    target: str  # the check target, parameters filled in
    forwarded: Headers  # the subscriber's `forward` headers: its credentials
    key: CacheKey


class Audience:
    """The live subscribers of one stream admitted with the same credentials: checked again
    together, and ended together when the app stops letting them in."""

    __slots__ = ("due", "grant", "members")

    def __init__(self, grant: Grant) -> None:
        self.grant = grant
        self.members: dict[int, Callable[[Refused], None]] = {}  # token → deny
        self.due = 0.0


def forwarded_headers(block: Authorize, headers: Headers) -> Headers:
    """The subscriber's values of the block's `forward` headers, in `forward` order; several
    Cookie fields (HTTP/2 and HTTP/3 split them, RFC 9113 §8.2.3) joined into one."""
    out: Headers = []
    for name in block.forward:
        wanted = name.encode("latin-1")
        if wanted in NOT_FORWARDED:
            continue
        values = [v for n, v in headers if n == wanted]
        if wanted == b"cookie" and len(values) > 1:
            values = [b"; ".join(values)]
        out += [(wanted, v) for v in values]
    return out


def _digest(forwarded: Headers) -> str:
    hasher = hashlib.sha256()
    for name, value in forwarded:
        hasher.update(b"%d:%s=%d:%s;" % (len(name), name, len(value), value))
    return hasher.hexdigest()[:32]


def _grant(route: Route, params: dict[str, str], headers: Headers) -> Grant | None:
    spec = route.stream
    if spec is None or spec.authorize is None:
        return None
    block = spec.authorize
    target = substitute(block.check or spec.poll, params)
    forwarded = forwarded_headers(block, headers)
    upstream = spec.upstream
    origin = f"{upstream.scheme}://{upstream.authority}{upstream.base_path}"
    return Grant(
        route.path,
        dict(params),
        block,
        upstream,
        target,
        forwarded,
        (origin, target, _digest(forwarded)),
    )


class Authorizer:
    """The decisions of one hub, its checks in flight, and its live audiences."""

    def __init__(self, context: HubContext) -> None:
        self.context = context
        self._cache: OrderedDict[CacheKey, tuple[float, Refused | None]] = OrderedDict()
        self._inflight: dict[CacheKey, asyncio.Future[Refused | None]] = {}
        self._audiences: dict[tuple[str, CacheKey], Audience] = {}
        self._schedule: list[tuple[float, int, Audience]] = []
        self._order = itertools.count()
        self._tokens = itertools.count()
        self._loop_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Rechecks due together go to the app a few at a time, not all at once.
        self._rechecking = asyncio.Semaphore(settings.AUTHORIZE_RECHECK_CONCURRENCY)
        self._logged_at = -settings.POLL_ERROR_LOG_INTERVAL
        self._suppressed = 0
        self.checks = 0  # requests made to check upstreams (for /metrics and tests)

    # --- admission ------------------------------------------------------------------------------

    async def admit(self, route: Route, params: dict[str, str], headers: Headers) -> Grant | None:
        """None when the stream has no `authorize`; the `Grant` of an allowed subscriber;
        raises `Refused` for one that is not."""
        grant = _grant(route, params, headers)
        if grant is None:
            return None
        refusal = await self._decide(grant)
        if refusal is not None:
            raise refusal
        return grant

    async def _decide(self, grant: Grant) -> Refused | None:
        """The cached decision, the one in flight, or a new check."""
        now = self.context.clock.now()
        cached = self._cache.get(grant.key)
        if cached is not None:
            if cached[0] > now:
                self._cache.move_to_end(grant.key)
                return cached[1]
            del self._cache[grant.key]
        future = self._inflight.get(grant.key)
        if future is None:
            future = asyncio.get_running_loop().create_future()
            self._inflight[grant.key] = future
            self._spawn(self._check(grant, future))
        # Shielded: a subscriber that goes away does not cancel the others' check.
        return await asyncio.shield(future)

    async def _check(self, grant: Grant, future: asyncio.Future[Refused | None]) -> None:
        try:
            decision = await self._ask(grant)
        except Refused as failure:  # the check itself failed: not a decision, not cached
            if not future.done():
                future.set_exception(failure)
            future.exception()  # retrieved: nobody waiting is not an error
            return
        finally:
            self._inflight.pop(grant.key, None)
        self._cache[grant.key] = (self.context.clock.now() + grant.block.cache, decision)
        while len(self._cache) > settings.AUTHORIZE_CACHE_SIZE:
            self._cache.popitem(last=False)
        if not future.done():
            future.set_result(decision)

    async def _ask(self, grant: Grant) -> Refused | None:
        """One GET of the check target: None (2xx), the app's refusal, or raises the failure."""
        upstream = grant.upstream
        headers: Headers = [
            (b"host", upstream.authority.encode("ascii")),
            *grant.forwarded,
            (b"accept", b"*/*"),
        ]
        self.checks += 1
        try:
            status, answer, _ = await self.context.fetcher.fetch(
                upstream,
                grant.target,
                headers,
                timeout=upstream.timeout,
                max_bytes=self.context.limits.max_snapshot,  # read and dropped
            )
        except StreamError as exc:
            timeout = exc.code is ErrorCode.UPSTREAM_TIMEOUT
            self._warn(
                "authorize %s: check %s failed: %s", grant.route_path, grant.target, exc.detail
            )
            cause = "timed out" if timeout else "unreachable"
            raise Refused(
                504 if timeout else 502, [], f"authorization check failed: upstream {cause}"
            ) from None
        if 200 <= status < 300:
            return None
        if status >= 500 or status < 300:
            self._warn("authorize %s: check %s answered %d", grant.route_path, grant.target, status)
            raise Refused(502, [], f"authorization check failed: upstream answered {status}")
        passed = _PASSED_ON_REDIRECT if status < 400 else _PASSED_ON
        return Refused(status, [(n, v) for n, v in answer if n in passed], "not authorized")

    def _warn(self, message: str, *args: object) -> None:
        """A failed check, logged at most once per `settings.POLL_ERROR_LOG_INTERVAL`: with the
        app down, every new subscriber's check fails, and the log should say so once."""
        now = self.context.clock.now()
        if now - self._logged_at < settings.POLL_ERROR_LOG_INTERVAL:
            self._suppressed += 1
            return
        more = f" (+{self._suppressed} more failed checks not logged)" if self._suppressed else ""
        self.context.log.warning(message + more, *args)
        self._logged_at = now
        self._suppressed = 0

    # --- rechecks -------------------------------------------------------------------------------

    def watch(self, grant: Grant, deny: Callable[[Refused], None]) -> Callable[[], None]:
        """Check this live subscriber again every `recheck`; `deny` ends it if refused. Returns
        the call that stops watching it (when it leaves)."""
        where = (grant.route_path, grant.key)
        audience = self._audiences.get(where)
        if audience is None:
            audience = self._audiences[where] = Audience(grant)
            self._plan(audience, grant.block.recheck * self._jitter())
        token = next(self._tokens)
        audience.members[token] = deny

        def unwatch() -> None:
            audience.members.pop(token, None)
            if not audience.members and self._audiences.get(where) is audience:
                del self._audiences[where]

        return unwatch

    def _jitter(self) -> float:
        low = 1 - settings.AUTHORIZE_RECHECK_JITTER
        return self.context.rng.uniform(low, 1.0)

    def _plan(self, audience: Audience, delay: float) -> None:
        audience.due = self.context.clock.now() + delay
        heapq.heappush(self._schedule, (audience.due, next(self._order), audience))
        # Entries of audiences that left stay until due: rebuild before they outnumber the rest.
        if len(self._schedule) > 2 * len(self._audiences) + 64:
            live = set(map(id, self._audiences.values()))
            self._schedule = [e for e in self._schedule if id(e[2]) in live and e[0] == e[2].due]
            heapq.heapify(self._schedule)
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.create_task(self._recheck_loop(), name="authorize rechecks")

    async def _recheck_loop(self) -> None:
        clock = self.context.clock
        while self._schedule:
            await clock.sleep(settings.AUTHORIZE_TICK)
            now = clock.now()
            while self._schedule and self._schedule[0][0] <= now:
                due, _, audience = heapq.heappop(self._schedule)
                if audience.members and due == audience.due:
                    audience.due = float("inf")  # being checked: not planned twice
                    self._spawn(self._recheck(audience))

    async def _recheck(self, audience: Audience) -> None:
        grant = audience.grant
        async with self._rechecking:
            try:
                refusal = await self._decide(grant)
            except Refused:
                # The check could not be made: nobody new gets in, but live subscribers are
                # not cut off for the app's hiccup; try again soon.
                retry = min(grant.block.recheck, settings.AUTHORIZE_RETRY_FAILED)
                self._plan(audience, retry * self._jitter())
                return
        if audience.grant is not grant:
            return  # a reload changed the block meanwhile and planned its own check
        if refusal is None:
            if audience.members:
                self._plan(audience, grant.block.recheck * self._jitter())
            return
        members = list(audience.members.values())
        audience.members.clear()
        self._audiences.pop((grant.route_path, grant.key), None)
        for deny in members:
            try:
                deny(refusal)
            except Exception:
                self.context.log.exception("authorize %s: ending a subscriber", grant.route_path)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- reload and shutdown --------------------------------------------------------------------

    def reconfigure(self, routes: Sequence[Route], context: HubContext) -> None:
        """A reload: audiences follow their route's new block (see the module docstring)."""
        self.context = context
        streams = {route.path: route for route in routes if route.stream is not None}
        audiences = list(self._audiences.values())
        self._audiences.clear()
        for audience in audiences:
            old = audience.grant
            route = streams.get(old.route_path)
            block = route.stream.authorize if route and route.stream else None
            if route is None or block is None:
                continue  # no longer checked (the hub ends subscribers of a route that is gone)
            grant = _grant(route, old.params, old.forwarded)
            assert grant is not None
            where = (grant.route_path, grant.key)
            merged = self._audiences.get(where)
            if merged is not None:
                merged.members.update(audience.members)
                continue
            self._audiences[where] = audience
            if grant.block == old.block and grant.key == old.key:
                continue
            audience.grant = grant
            spread = settings.AUTHORIZE_RELOAD_SPREAD * self.context.rng.random()
            self._plan(audience, spread)

    async def close(self) -> None:
        tasks = list(self._tasks)
        if self._loop_task is not None:
            tasks.append(self._loop_task)
        for task in tasks:
            task.cancel()
        self._schedule.clear()
        self._audiences.clear()
        if tasks:
            await asyncio.wait(tasks, timeout=settings.HUB_CLOSE_WAIT)
