"""Notify in the hub, on a virtual clock: pokes coalesce, notify-triggered polls keep the
minimum gap, the interval poll keeps its schedule, and `data` becomes the next state like a
polled body (diffed on a patch stream). Matching by path and by route through `Notifier`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import jsonpatch
import pytest

from bridge import settings
from bridge.hub.item import Format
from bridge.hub.notify import Notifier
from bridge.routing.table import RouteTable
from tests.unit.test_hub import Sink, harness, route, run


def test_a_thousand_pokes_in_a_second_cost_at_most_one_poll_per_gap() -> None:
    async def body() -> None:
        hub, script, clock = harness()
        r = route(every=30.0)
        sink = Sink()
        hub.subscribe(r, {"s": "A"}, [], sink, Format.SSE, None)
        await clock.advance(0)
        assert len(script.calls) == 1
        channel = next(iter(hub.channels.values()))
        for _ in range(1000):  # one per millisecond
            channel.leadership.poke()
            await clock.advance(0.001)
        await clock.advance(settings.NOTIFY_MIN_GAP)  # the one owed after the last poke
        polls = len(script.calls) - 1
        assert 2 <= polls <= int(1 / settings.NOTIFY_MIN_GAP) + 1, polls
        assert channel.notify_polls == polls
        # Quiet now: nothing more until the interval, which kept its schedule (30 s ±10 %).
        await clock.advance(26.0 - 1.2)
        assert len(script.calls) - 1 == polls
        await clock.advance(8.0)
        assert len(script.calls) - 1 == polls + 1
        assert channel.notify_polls == polls

    run(body)


def test_a_poke_during_a_poll_asks_for_one_more_and_a_failing_upstream_keeps_its_backoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def body() -> None:
        hub, script, clock = harness()
        sink = Sink()
        hub.subscribe(route(every=30.0), {"s": "A"}, [], sink, Format.SSE, None)
        channel = next(iter(hub.channels.values()))
        await clock.advance(0)
        gate = asyncio.Event()
        answer = script.fetch

        async def held(*args: Any, **kwargs: Any) -> Any:
            await gate.wait()
            return await answer(*args, **kwargs)

        script.fetch = held  # type: ignore[method-assign]
        channel.leadership.poke()
        await clock.advance(0)  # the notify poll is out, held
        for _ in range(5):
            channel.leadership.poke()  # it may have left before the change: one more after it
        gate.set()
        await clock.advance(settings.NOTIFY_MIN_GAP * 3)
        assert len(script.calls) == 3
        script.fail = lambda: (500, [], b"")
        channel.leadership.poke()
        # Less than the shortest backoff (a full-jitter delay may be exactly BACKOFF_MIN):
        # every step below stays strictly inside it, so only the pokes could poll.
        await clock.advance(settings.BACKOFF_MIN / 2)
        assert len(script.calls) == 4  # failed: now backoff decides
        step = settings.BACKOFF_MIN / 40  # every poke lands inside the shortest backoff
        monkeypatch.setattr(settings, "NOTIFY_MIN_GAP", step / 2)  # the gap would let them
        for _ in range(15):
            channel.leadership.poke()
            await clock.advance(step)
        assert len(script.calls) == 4

    run(body)


def test_data_is_the_next_state_diffed_like_a_poll() -> None:
    async def body() -> None:
        hub, script, clock = harness()
        r = route(every=30.0, emit="patch")
        notifier = Notifier(hub, RouteTable([r]))
        sink = Sink()
        hub.subscribe(r, {"s": "A"}, [], sink, Format.SSE, None)
        await clock.advance(0)
        assert notifier.publish(r, {"s": "A"}, b'{"v": 5}', "application/json") == 1
        await clock.advance(0)
        events = sink.events()
        assert [e.event for e in events] == ["snapshot", "patch"]
        assert jsonpatch.apply_patch({"v": 1}, json.loads(events[1].data)) == {"v": 5}
        assert len(script.calls) == 1  # no poll
        # The same state again: nothing to tell.
        notifier.publish(r, {"s": "A"}, b'{"v": 5}', "application/json")
        await clock.advance(0)
        assert len(sink.events()) == 2
        # Other parameters: no channel here, so nothing matched.
        assert notifier.publish(r, {"s": "B"}, b"{}", "application/json") == 0
        found = notifier.resolve("/p/A?x=1")
        assert found is not None and found[1] == {"s": "A"}
        assert notifier.resolve("/elsewhere") is None
        assert notifier.header(b"/p/A, /nowhere, nonsense") == 1
        assert notifier.tally.counts == {("header", "accepted"): 1}

    run(body)
