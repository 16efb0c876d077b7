"""The hub's `Authorizer` on a virtual clock: one check in flight per credentials, decisions
cached for `cache` and bounded in number, refusals passed on, failures never cached."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from bridge import settings
from bridge.hub.authorize import Refused
from bridge.hub.clock import VirtualClock
from bridge.hub.hub import Hub
from bridge.routing.model import Authorize
from bridge.settings import Limits
from tests.unit.hubfakes import ScriptedUpstream, refused, route

ROUTE = route(authorize=Authorize(check="/can?s={s}", cache=10.0, recheck=60.0))


def cookie(name: str) -> list[tuple[bytes, bytes]]:
    return [(b"cookie", b"session=" + name.encode()), (b"user-agent", b"x")]


def setup() -> tuple[Hub, ScriptedUpstream, VirtualClock]:
    clock = VirtualClock()
    script = ScriptedUpstream(clock)
    script.latency = 0.1
    return Hub(script, limits=Limits(), clock=clock), script, clock


def test_subscribers_with_the_same_credentials_share_one_check_and_its_decision() -> None:
    async def body() -> None:
        hub, script, clock = setup()
        admits = [
            asyncio.ensure_future(hub.admit(ROUTE, {"s": "A"}, cookie(name)))
            for name in ["alice"] * 10 + ["bob"] * 5
        ]
        await clock.advance(0.2)
        grants = await asyncio.gather(*admits)
        assert all(grant is not None for grant in grants)
        assert script.calls == 2
        [check, _] = script.requests
        assert check.target == "/can?s=A"
        # Only the forwarded headers, never the user agent, and no service headers.
        assert [n for n, _ in check.headers] == [b"host", b"cookie", b"accept"]
        other = asyncio.ensure_future(hub.admit(ROUTE, {"s": "B"}, cookie("alice")))
        await clock.advance(0.2)
        await other  # another stream: its own check
        assert script.calls == 3
        await clock.advance(10.0)  # the decision expired
        task = asyncio.ensure_future(hub.admit(ROUTE, {"s": "A"}, cookie("alice")))
        await clock.advance(0.2)
        await task
        assert script.calls == 4
        await hub.close()

    asyncio.run(body())


def test_a_refusal_is_the_apps_answer_and_a_failure_is_not_cached() -> None:
    async def body() -> None:
        hub, script, clock = setup()
        script.answer = (401, [(b"www-authenticate", b"Bearer"), (b"x-other", b"1")], b"no")
        task = asyncio.ensure_future(hub.admit(ROUTE, {"s": "A"}, cookie("eve")))
        await clock.advance(0.2)
        with pytest.raises(Refused) as caught:
            await task
        assert caught.value.status == 401
        assert (b"www-authenticate", b"Bearer") in caught.value.headers
        assert (b"x-other", b"1") not in caught.value.headers
        script.answer = None
        script.error = refused()
        for _ in range(2):
            task = asyncio.ensure_future(hub.admit(ROUTE, {"s": "A"}, cookie("carol")))
            await clock.advance(0.2)
            with pytest.raises(Refused) as caught:
                await task
            assert caught.value.status == 502
        assert script.calls == 3  # each failure asked again
        await hub.close()

    asyncio.run(body())


def test_the_decision_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "AUTHORIZE_CACHE_SIZE", 5)

    async def body() -> None:
        hub, script, _ = setup()
        script.latency = 0.0
        for n in range(20):
            await hub.admit(ROUTE, {"s": "A"}, cookie(f"u{n}"))
        assert len(hub.authorizer._cache) == 5
        await hub.admit(ROUTE, {"s": "A"}, cookie("u19"))  # recent: still cached
        assert script.calls == 20
        await hub.admit(ROUTE, {"s": "A"}, cookie("u0"))  # evicted: asked again
        assert script.calls == 21
        await hub.close()

    asyncio.run(body())


def test_a_stream_without_authorize_is_not_checked() -> None:
    async def body() -> None:
        hub, script, _ = setup()
        plain = dataclasses.replace(ROUTE, stream=dataclasses.replace(ROUTE.stream, authorize=None))  # type: ignore[arg-type]
        assert await hub.admit(plain, {"s": "A"}, cookie("x")) is None
        assert script.calls == 0
        await hub.close()

    asyncio.run(body())
