"""`Hub.reconfigure`, a reload's new route table, with an injected clock: which channels are
kept (and re-keyed), restarted or ended, and what their subscribers see."""

from __future__ import annotations

import dataclasses

from bridge.hub.item import Format
from bridge.settings import Limits
from tests.unit.hubfakes import Harness, route, run


def moved(r, index: int, **spec):  # type: ignore[no-untyped-def]
    stream = dataclasses.replace(r.stream, **spec) if spec else r.stream
    return dataclasses.replace(r, index=index, stream=stream)


def test_two_streams_that_swap_places_keep_their_channels() -> None:
    async def body() -> None:
        h = Harness(seed=1)
        first = route(0)
        second = dataclasses.replace(route(1, poll="/q?s={s}"), path="/q/{s}")  # same params
        _, a_sink = h.subscribe(first)
        _, b_sink = h.subscribe(second)
        await h.advance(0.1)
        channels = {c.route.path: c for c in h.hub.channels.values()}
        kept, restarted, ended = h.hub.reconfigure(
            [moved(second, 0), moved(first, 1)], Limits(max_subscribers=7)
        )
        assert (kept, restarted, ended) == (2, 0, 0)
        now = {c.route.path: c for c in h.hub.channels.values()}
        assert now == channels  # the same channel objects, under their new keys
        assert now["/p/{s}"].route.index == 1 and now["/q/{s}"].route.index == 0
        assert set(h.hub.channels) == {c.key for c in now.values()}
        assert not a_sink.closed and not b_sink.closed
        assert h.hub.context.limits.max_subscribers == 7
        # a newcomer on the moved route joins the kept channel
        late, _ = h.subscribe(moved(first, 1))
        assert late.channel is now["/p/{s}"]

    run(body)


def test_a_changed_poll_restarts_and_an_audience_change_ends() -> None:
    async def body() -> None:
        h = Harness(seed=1)
        r = route(0)
        sub, sink = h.subscribe(r)
        ws_route = dataclasses.replace(route(1, poll="/w?s={s}"), path="/w/{s}")
        _, ws_sink = h.subscribe(ws_route, fmt=Format.WS_ENVELOPE)
        await h.advance(0.1)
        before = [e.id for e in sink.events()]
        channel = sub.channel
        kept, restarted, ended = h.hub.reconfigure(
            [moved(r, 0, poll="/v2?s={s}"), moved(ws_route, 1, protocols=frozenset({"sse"}))],
            Limits(),
        )
        assert (kept, restarted, ended) == (0, 1, 1)
        assert not sink.closed and sub.channel is channel and channel.spec.target == "/v2?s=A"
        # The broker hears the restarted channel under its new key only.
        assert h.hub.context.broker._listeners == {channel.key: channel}  # type: ignore[attr-defined]
        assert ws_sink.closed and ws_sink.final == b""  # WebSocket: closed 1013, reconnect
        h.upstream.set({"v": 2})  # what the new poll target answers
        await h.advance(1.5)
        assert h.upstream.requests[-1].target == "/v2?s=A"
        after = [e.id for e in sink.events()]
        # the restarted poller's first new state is published; ids keep growing
        assert after[: len(before)] == before and len(after) == len(before) + 1
        assert after[-1] > before[-1]

    run(body)


def test_a_removed_stream_tells_sse_subscribers_when_to_come_back() -> None:
    async def body() -> None:
        h = Harness(seed=1)
        _, sink = h.subscribe(route(0))
        await h.advance(0.1)
        assert h.hub.reconfigure([], Limits()) == (0, 0, 1)
        assert sink.closed and sink.final is not None and sink.final.startswith(b"retry: ")
        assert h.hub.channels == {} and h.hub.subscriber_count == 0
        assert h.hub.retired["/p/{s}"].counts["polls"] >= 1  # its counts live on

    run(body)


def test_the_per_route_channel_cap_follows_routes_that_moved() -> None:
    import pytest

    from bridge.errors import StreamError

    async def body() -> None:
        h = Harness(seed=1, max_channels_per_route=1)
        first = route(0)
        h.subscribe(first, "A")
        await h.advance(0.1)
        other = dataclasses.replace(route(0), path="/q/{s}")
        h.hub.reconfigure([other, moved(first, 1)], Limits(max_channels_per_route=1))
        h.subscribe(other, "B")  # route 0 is another route now: its cap is free
        with pytest.raises(StreamError):
            h.subscribe(moved(first, 1), "C")  # the moved route still holds its one channel

    run(body)
