"""A `vary` stream's new value gets a channel only once its first poll answered 2xx.

`vary` values come from the client (often a credential), so without this gate every distinct
bogus `Authorization` would start a poller that keeps asking the upstream, refused, until it
lingers out. Instead the first poll of a value no live channel has is made here, with exactly
the headers the poller would send: a 2xx lets the request go on to make the channel; a 401, 403
or 404 goes back to the requester as the app's answer (with its `WWW-Authenticate`), and
nothing stays behind, so each distinct bogus value costs one upstream request. Any other
outcome (unreachable, a timeout, 5xx) says nothing about the value: it is the upstream's
trouble, so the request goes on as on any stream (docs/configuration.md "Upstream trouble": subscribers
wait on heartbeats, a plain GET gets 502/504 with the cause), and the channel's own cap
(`limits.max_channels_per_route`) bounds what such values can start. Requests for the same new value share one first poll, and
at most `settings.VARY_MAX_FIRST_POLLS` run per route at once (beyond: 503 + Retry-After).
"""

from __future__ import annotations

import asyncio

from .. import settings
from ..errors import ErrorCode, StreamError
from ..events import Headers
from ..routing.model import Route
from ..routing.paths import substitute
from .authorize import Refused
from .context import HubContext
from .poller import poll_headers

# The app's own answer about the credential itself: passed on. Other statuses are failures.
_PASSED_ON = (401, 403, 404)


class FirstPolls:
    def __init__(self, context: HubContext) -> None:
        self.context = context
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._per_route: dict[int, int] = {}

    async def probe(
        self, route: Route, params: dict[str, str], vary: Headers, key: str, retry: Headers
    ) -> None:
        """Returns when the first poll for stream `key` answered 2xx; raises `Refused` with
        the answer for the requester otherwise (`retry`: the Retry-After of a refusal for
        too many first polls at once)."""
        future = self._inflight.get(key)
        if future is None:
            live = self._per_route.get(route.index, 0)
            if live >= settings.VARY_MAX_FIRST_POLLS:
                raise StreamError(ErrorCode.OVERLOADED, "too many new streams at once", retry)
            self._per_route[route.index] = live + 1
            future = asyncio.get_running_loop().create_future()
            self._inflight[key] = future
            task = asyncio.ensure_future(self._first(route, params, vary, key, future))
            task.add_done_callback(lambda _: self._done(route.index, key))
        await asyncio.shield(future)

    def pending(self, index: int) -> int:
        """First polls in flight for the route at `index`."""
        return self._per_route.get(index, 0)

    def _done(self, index: int, key: str) -> None:
        self._inflight.pop(key, None)
        self._per_route[index] = self._per_route.get(index, 1) - 1

    async def _first(
        self,
        route: Route,
        params: dict[str, str],
        vary: Headers,
        key: str,
        future: asyncio.Future[None],
    ) -> None:
        try:
            await self._ask(route, params, vary)
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc if isinstance(exc, Refused) else _failed("cancelled"))
                future.exception()  # retrieved: nobody waiting is not an error
            if not isinstance(exc, Exception):
                raise
            return
        if not future.done():
            future.set_result(None)

    async def _ask(self, route: Route, params: dict[str, str], vary: Headers) -> None:
        spec = route.stream
        assert spec is not None
        timeout = spec.upstream.timeout
        if spec.longpoll is not None:
            timeout = spec.longpoll.timeout + settings.LONGPOLL_MARGIN
        target = substitute(spec.poll, params)
        try:
            status, answer, _ = await self.context.fetcher.fetch(
                spec.upstream,
                target,
                poll_headers(spec, vary),
                timeout=timeout,
                max_bytes=self.context.limits.max_snapshot,
            )
        except StreamError:
            return  # the upstream's trouble, not the value's: the channel reports it
        if status in _PASSED_ON:
            passed = [(n, v) for n, v in answer if n == b"www-authenticate"]
            raise Refused(status, passed, "refused by the upstream")


def _failed(why: str) -> Refused:
    return Refused(502, [], f"first poll failed: {why}")
