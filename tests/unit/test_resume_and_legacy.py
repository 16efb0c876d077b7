"""Resume on patch/merge streams, and the plain-GET side of a channel (ETag, linger), on a
virtual clock."""

from __future__ import annotations

import itertools
import json

import jsonpatch
import pytest

from bridge import settings
from bridge.hub.diff import apply_merge_patch
from tests.unit.hubfakes import Harness, route, run


@pytest.mark.parametrize("emit", ["patch", "merge"])
def test_patch_stream_resume_replays_diffs_or_sends_a_new_snapshot(emit: str) -> None:
    async def body() -> None:
        h = Harness()
        r = route(emit=emit, history=3)
        _, keeper = h.subscribe(r)
        await h.advance(0)
        for v in range(2, 7):
            h.upstream.set({"v": v, "k": "same"})
            await h.advance(1.2)
        events = keeper.events()
        assert [e.event for e in events] == ["snapshot"] + [emit] * 5
        # inside history: exactly the diffs it missed, which apply to the state it has
        _, back = h.subscribe(r, last_event_id=events[3].id)
        missed = back.events()
        assert [(e.id, e.event) for e in missed] == [(e.id, emit) for e in events[4:]]
        state = {"v": 4, "k": "same"}
        for e in missed:
            doc = json.loads(e.data)
            state = (
                jsonpatch.apply_patch(state, doc)
                if emit == "patch"
                else apply_merge_patch(state, doc)
            )
        assert state == {"v": 6, "k": "same"}
        # outside history: the whole state as a new `snapshot` (never `reset`: a patch client
        # knows what a snapshot means), with the latest id so the next diff applies to it
        _, lost = h.subscribe(r, last_event_id=events[0].id)
        [again] = lost.events()
        assert (again.event, json.loads(again.data), again.id) == (
            "snapshot",
            {"v": 6, "k": "same"},
            events[-1].id,
        )
        h.upstream.set({"v": 7, "k": "same"})
        await h.advance(1.2)
        assert lost.events()[-1].event == emit

    run(body)


def test_an_unknown_id_before_any_state_gets_the_first_state_as_reset() -> None:
    async def body() -> None:
        h = Harness()
        h.upstream.latency = 0.5  # the channel has no state yet when these arrive
        _, old = h.subscribe(route(), last_event_id="0000000000001-000001")
        _, fresh = h.subscribe(route())
        await h.advance(1)
        assert [(e.event, e.data) for e in old.events()] == [("reset", '{"v": 1}')]
        assert [(e.event, e.data) for e in fresh.events()] == [("message", '{"v": 1}')]

    run(body)


def test_plain_get_starts_the_channel_which_then_lingers_and_stops() -> None:
    async def body() -> None:
        h = Harness()
        r = route()
        item = await h.hub.latest(r, {"s": "A"}, [], timeout=5)
        assert item is not None and item.state == b'{"v": 1}'
        assert h.hub.channels  # lingering
        await h.advance(settings.STREAM_LINGER + 2)
        assert not h.hub.channels
        calls = h.upstream.calls
        await h.advance(30)
        assert h.upstream.calls == calls  # stopped: a GET costs the upstream no more polls

    run(body)


def test_etag_is_the_state_so_it_survives_a_channel_restart() -> None:
    async def body() -> None:
        h = Harness()
        r = route()
        first = await h.hub.latest(r, {"s": "A"}, [], timeout=5)
        assert first is not None
        await h.advance(settings.STREAM_LINGER + 2)
        assert not h.hub.channels
        again = await h.hub.latest(r, {"s": "A"}, [], timeout=5)
        assert again is not None and again.id != first.id  # a new epoch...
        assert again.etag == first.etag  # ...but the same state, so the same validator
        h.upstream.set({"v": 2})
        await h.advance(1.2)
        changed = await h.hub.latest(r, {"s": "A"}, [], timeout=5)
        assert changed is not None and changed.etag != first.etag
        assert changed.etag.startswith(b'"') and changed.etag.endswith(b'"')

    run(body)


def test_patch_stream_etag_is_of_the_whole_state() -> None:
    async def body() -> None:
        h = Harness()
        r = route(emit="patch")
        _, sink = h.subscribe(r)
        await h.advance(0)
        h.upstream.set({"v": 2})
        await h.advance(1.2)
        assert sink.events()[-1].event == "patch"
        item = await h.hub.latest(r, {"s": "A"}, [], timeout=5)
        assert item is not None and item.state == b'{"v": 2}'
        other = Harness()
        other.upstream.set({"v": 2})
        same = await other.hub.latest(route(emit="patch"), {"s": "A"}, [], timeout=5)
        assert same is not None and same.etag == item.etag  # another process agrees

    run(body)


def test_interest_returning_during_the_linger_keeps_the_same_channel() -> None:
    async def body() -> None:
        h = Harness()
        r = route()
        sub, _ = h.subscribe(r)
        await h.advance(0)
        channel = next(iter(h.hub.channels.values()))
        sub.cancel()
        await h.advance(settings.STREAM_LINGER - 1)
        _, back = h.subscribe(r)  # the same state at once, from the same channel
        assert back.values() == [{"v": 1}]
        await h.advance(settings.STREAM_LINGER * 3)
        assert list(h.hub.channels.values()) == [channel] and not channel.stopped
        times = [q.at for q in h.upstream.requests]
        assert max(b - a for a, b in itertools.pairwise(times)) <= 1.1 + 1e-9
        # a later departure lingers again from its own moment, then stops
        back.subscription.cancel()  # type: ignore[union-attr]
        await h.advance(settings.STREAM_LINGER + 1)
        assert channel.stopped and not h.hub.channels

    run(body)
