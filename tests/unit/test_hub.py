"""The hub with an injected clock: polling, change detection, linger, backoff, heartbeats and
lagging subscribers, tested without sleeping. The fetcher here is a scripted in-process
object (the upstream client itself is exercised against real servers in tests/e2e)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import jsonpatch
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, TextMessage

from bridge import settings
from bridge.errors import ErrorCode, StreamError
from bridge.framing import UNFRAMED
from bridge.hub.backoff import Backoff, parse_retry_after
from bridge.hub.clock import VirtualClock
from bridge.hub.diff import apply_merge_patch, merge_patch
from bridge.hub.hub import Hub
from bridge.hub.item import Format, Item, slot
from bridge.hub.render import sse_frame
from bridge.protocol.http1 import CHUNKED
from bridge.routing.model import LongPoll, Route, StreamSpec, Upstream
from bridge.settings import Limits
from tests.support.sse import SseParser

UP = Upstream("app", "http://127.0.0.1:9", "http", "127.0.0.1", 9, "", 5.0)


def route(**spec: Any) -> Route:
    fields = {"upstream": UP, "poll": "/api?s={s}", "every": 1.0, "longpoll": None}
    fields.update(spec)
    return Route(
        index=0, path="/p/{s}", line=1, upstream=None, stream=StreamSpec(**fields), params=("s",)
    )


class Script:
    """Answers polls from a mutable state; records every request."""

    def __init__(self) -> None:
        self.body: bytes = b'{"v": 1}'
        self.calls: list[tuple[str, list[tuple[bytes, bytes]]]] = []
        self.fail: Callable[[], tuple[int, list[tuple[bytes, bytes]], bytes]] | None = None
        self.error: StreamError | None = None

    async def fetch(
        self, upstream: Upstream, target: str, headers, *, timeout: float, max_bytes: int
    ):  # type: ignore[no-untyped-def]
        self.calls.append((target, list(headers)))
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        if self.fail is not None:
            return self.fail()
        etag = b'"%d"' % hash(self.body)
        if (b"if-none-match", etag) in headers:
            return 304, [(b"etag", etag)], b""
        return 200, [(b"etag", etag), (b"content-type", b"application/json")], self.body


class Sink:
    framing = UNFRAMED

    def __init__(self, limit_stuck: bool = False) -> None:
        self.data = bytearray()
        self.stuck = limit_stuck
        self.closed: bytes | None = None

    def write(self, data: bytes) -> None:
        self.data += data

    def buffered(self) -> int:
        return len(self.data) if self.stuck else 0

    def close(self, final: bytes = b"") -> None:
        self.closed = final

    def events(self) -> list[Any]:
        return SseParser().feed(bytes(self.data))


def harness(**limits: Any) -> tuple[Hub, Script, VirtualClock]:
    clock = VirtualClock()
    script = Script()
    return Hub(script, limits=Limits(**limits), clock=clock), script, clock


def run(body: Callable[[], Any]) -> None:
    asyncio.run(asyncio.wait_for(body(), 20))


def test_one_poll_per_interval_for_many_subscribers() -> None:
    async def body() -> None:
        hub, script, clock = harness()
        r = route()
        sinks = [Sink() for _ in range(50)]
        subs = [hub.subscribe(r, {"s": "A"}, [], s, Format.SSE, None) for s in sinks]
        await clock.advance(0)
        assert len(script.calls) == 1
        assert script.calls[0][0] == "/api?s=A"
        assert all(len(s.events()) == 1 for s in sinks)
        await clock.advance(5.5)
        assert 5 <= len(script.calls) <= 7  # every 1 s (±10 % jitter), whatever the audience
        assert all(len(s.events()) == 1 for s in sinks)  # 304s emit nothing
        assert (b"if-none-match", b'"%d"' % hash(script.body)) in script.calls[-1][1]
        script.body = b'{"v": 2}'
        await clock.advance(1.2)
        assert all([e.data for e in s.events()] == ['{"v": 1}', '{"v": 2}'] for s in sinks)
        newcomer = Sink()
        last = hub.subscribe(r, {"s": "A"}, [], newcomer, Format.SSE, None)
        assert [e.data for e in newcomer.events()] == ['{"v": 2}']  # at once, no poll needed
        for sub in subs:
            sub.cancel()
        await clock.advance(settings.STREAM_LINGER + 2)
        assert hub.channels  # one subscriber is left: no linger, still polling
        last.cancel()
        await clock.advance(settings.STREAM_LINGER - 1)
        assert hub.channels  # lingering
        await clock.advance(3)
        assert not hub.channels
        calls = len(script.calls)
        await clock.advance(10)
        assert len(script.calls) == calls  # stopped: no more polls

    run(body)


def test_identical_body_emits_nothing_and_ids_grow() -> None:
    async def body() -> None:
        hub, script, clock = harness()
        sink = Sink()
        hub.subscribe(route(), {"s": "A"}, [], sink, Format.SSE, None)
        await clock.advance(0)
        script.fail = lambda: (200, [], b'{"v": 1}')  # no validators: same bytes again
        await clock.advance(3.5)
        assert len(sink.events()) == 1
        ids = []
        for v in range(2, 6):
            script.fail = lambda v=v: (200, [], b'{"v": %d}' % v)
            await clock.advance(1.2)
            ids.append(sink.events()[-1].id)
        epoch = {i.split("-")[0] for i in ids}
        assert len(epoch) == 1
        assert [int(i.split("-")[1]) for i in ids] == sorted(int(i.split("-")[1]) for i in ids)

    run(body)


def test_resume_inside_and_outside_history() -> None:
    async def body() -> None:
        hub, script, clock = harness()
        r = route(history=3)
        keeper = Sink()
        hub.subscribe(r, {"s": "A"}, [], keeper, Format.SSE, None)
        await clock.advance(0)
        for v in range(2, 7):
            script.body = b'{"v": %d}' % v
            await clock.advance(1.2)
        events = keeper.events()
        assert [json.loads(e.data)["v"] for e in events] == [1, 2, 3, 4, 5, 6]
        back = Sink()
        hub.subscribe(r, {"s": "A"}, [], back, Format.SSE, events[3].id)
        assert [json.loads(e.data)["v"] for e in back.events()] == [5, 6]
        up_to_date = Sink()
        hub.subscribe(r, {"s": "A"}, [], up_to_date, Format.SSE, events[-1].id)
        assert up_to_date.events() == []
        lost = Sink()
        hub.subscribe(r, {"s": "A"}, [], lost, Format.SSE, events[0].id)
        [reset] = lost.events()
        assert (reset.event, reset.data, reset.id) == ("reset", '{"v": 6}', events[-1].id)

    run(body)


def test_longpoll_sends_the_cursor_and_never_waits() -> None:
    async def body() -> None:
        hub, script, clock = harness()
        r = route(every=None, longpoll=LongPoll(cursor="meta.seq", param="since", timeout=30.0))
        script.body = b'{"meta": {"seq": 41}, "x": 1}'
        hub.subscribe(r, {"s": "A"}, [], Sink(), Format.SSE, None)
        await clock.advance(0)
        targets = [c[0] for c in script.calls]
        assert targets[0] == "/api?s=A"
        assert "/api?s=A&since=41" in targets  # re-issued at once, with the cursor
        assert not any(
            h for _, headers in script.calls for h in headers if h[0] == b"if-none-match"
        )

    run(body)


def test_errors_back_off_with_retry_after_and_keep_subscribers() -> None:
    async def body() -> None:
        hub, script, clock = harness()
        sink = Sink()
        hub.subscribe(route(heartbeat=2.0), {"s": "A"}, [], sink, Format.SSE, None)
        await clock.advance(0)
        script.error = StreamError(ErrorCode.UPSTREAM_UNREACHABLE, "refused")
        start = len(script.calls)
        await clock.advance(60)
        # 1 + 2 + 4 + 8 + 16 + 30 ... with full jitter: far fewer than 60 one-second polls
        assert len(script.calls) - start < 30
        assert sink.closed is None
        assert bytes(sink.data).count(b":\n\n") >= 10  # heartbeats kept flowing
        script.error = None
        script.fail = lambda: (503, [(b"retry-after", b"120")], b"")
        await clock.advance(35)  # let the current backoff sleep end
        before = len(script.calls)
        await clock.advance(100)
        assert len(script.calls) - before <= 1  # Retry-After: 120 s honoured

    run(body)


def test_backoff_bounds() -> None:
    backoff = Backoff()
    for failure in range(1, 12):
        delay = backoff.next()
        assert 0 < delay <= min(30.0, 2 ** (failure - 1))
    assert backoff.ceiling() == 30.0
    assert backoff.next(7.0) == 7.0
    backoff.reset()
    assert backoff.ceiling() == 1.0
    assert parse_retry_after(b"12", 0) == 12
    assert parse_retry_after(b"999999", 0) == settings.RETRY_AFTER_MAX
    assert parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT", 1445412480 - 60) == 60
    assert parse_retry_after(b"soon", 0) is None


def test_vary_headers_split_channels_and_credentials_stay_home() -> None:
    async def body() -> None:
        hub, script, clock = harness()
        r = route(vary=("x-user",))
        secret = [(b"cookie", b"s=1"), (b"authorization", b"Bearer x")]
        hub.subscribe(r, {"s": "A"}, [(b"x-user", b"alice"), *secret], Sink(), Format.SSE, None)
        hub.subscribe(r, {"s": "A"}, [(b"x-user", b"bob"), *secret], Sink(), Format.SSE, None)
        hub.subscribe(r, {"s": "A"}, [(b"x-user", b"bob")], Sink(), Format.SSE, None)
        await clock.advance(0)
        assert len(hub.channels) == 2
        sent = [dict(h) for _, h in script.calls]
        assert {h[b"x-user"] for h in sent} == {b"alice", b"bob"}
        assert not any(b"cookie" in h or b"authorization" in h for h in sent)

    run(body)


def test_limits_refuse_with_503() -> None:
    async def body() -> None:
        hub, _script, _clock = harness(max_subscribers_per_stream=2, max_subscribers=3)
        r = route()
        hub.subscribe(r, {"s": "A"}, [], Sink(), Format.SSE, None)
        hub.subscribe(r, {"s": "A"}, [], Sink(), Format.SSE, None)
        with pytest.raises(StreamError) as info:
            hub.subscribe(r, {"s": "A"}, [], Sink(), Format.SSE, None)
        assert info.value.code is ErrorCode.OVERLOADED
        assert dict(info.value.headers)[b"retry-after"].isdigit()
        hub.subscribe(r, {"s": "B"}, [], Sink(), Format.SSE, None)
        with pytest.raises(StreamError):
            hub.subscribe(r, {"s": "C"}, [], Sink(), Format.SSE, None)

    run(body)


def test_lagging_subscriber_is_conflated_then_closed() -> None:
    async def body() -> None:
        hub, script, clock = harness(subscriber_buffer=10)
        r = route(emit="patch")
        slow, fast = Sink(limit_stuck=True), Sink()
        slow_sub = hub.subscribe(r, {"s": "A"}, [], slow, Format.SSE, None)
        hub.subscribe(r, {"s": "A"}, [], fast, Format.SSE, None)
        await clock.advance(0)
        for v in range(2, 6):
            script.body = b'{"v": %d}' % v
            await clock.advance(1.2)
        assert [e.event for e in fast.events()] == ["snapshot", "patch", "patch", "patch", "patch"]
        assert len(slow.events()) == 1 and slow_sub.lagging and slow_sub.lagged
        size = len(slow.data)
        slow.stuck = False
        slow_sub.on_drain()  # caught up with ONE fresh snapshot, not the queued patches
        [_first, catch_up] = slow.events()
        assert (catch_up.event, json.loads(catch_up.data)) == ("snapshot", {"v": 5})
        assert len(slow.data) > size
        slow.stuck = True
        script.body = b'{"v": 6}'
        await clock.advance(1.2)
        assert slow_sub.lagging
        await clock.advance(settings.LAG_CLOSE_AFTER + 10)
        assert slow.closed is not None and slow.closed.startswith(b"retry: ")
        assert slow_sub.stuck  # the access log line says it was closed for lagging
        assert slow_sub not in next(iter(hub.channels.values())).subscribers

    run(body)


def test_plain_get_waits_for_first_poll_and_for_changes() -> None:
    async def body() -> None:
        hub, script, clock = harness()
        r = route()
        item = await hub.latest(r, {"s": "A"}, [], timeout=5)
        assert item is not None and item.state == b'{"v": 1}'
        waiter = asyncio.ensure_future(
            hub.wait_change(r, {"s": "A"}, [], after=item.id, timeout=10)
        )
        await clock.advance(2.2)
        assert not waiter.done()
        script.body = b'{"v": 2}'
        await clock.advance(1.2)
        changed = await waiter
        assert changed is not None and changed.state == b'{"v": 2}'
        assert await hub.wait_change(r, {"s": "A"}, [], after=changed.id, timeout=0) is None

    run(body)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=2), children, max_size=3)
    ),
    max_leaves=8,
)


@hsettings(max_examples=60, deadline=None)
@given(
    st.lists(st.dictionaries(st.text(max_size=2), json_values, max_size=4), min_size=1, max_size=5)
)
def test_patch_and_merge_streams_reproduce_every_body(docs: list[dict[str, Any]]) -> None:
    for emit in ("patch", "merge"):

        async def body(emit: str = emit) -> None:
            hub, script, clock = harness()
            sink = Sink()
            script.body = json.dumps(docs[0]).encode()
            hub.subscribe(route(emit=emit), {"s": "A"}, [], sink, Format.SSE, None)
            await clock.advance(0)
            for doc in docs[1:]:
                script.body = json.dumps(doc).encode()
                await clock.advance(1.2)
            state: Any = None
            seen = []
            for event in sink.events():
                value = json.loads(event.data)
                if event.event == "snapshot":
                    state = value
                elif event.event == "patch":
                    state = jsonpatch.apply_patch(state, value)
                else:
                    assert event.event == "merge"
                    state = apply_merge_patch(state, value)
                seen.append(state)
            distinct = [d for i, d in enumerate(docs) if i == 0 or d != docs[i - 1]]
            assert seen == distinct

        asyncio.run(body())


@given(
    st.dictionaries(st.text(max_size=3), json_values, max_size=4),
    st.dictionaries(st.text(max_size=3), json_values, max_size=4),
)
def test_merge_patch_round_trip_or_detected(old: dict[str, Any], new: dict[str, Any]) -> None:
    patch = merge_patch(old, new)
    if apply_merge_patch(old, patch) != new:
        # only a null member value can make it fail: the channel sends a snapshot then
        assert "null" in json.dumps(new)


@given(
    st.text(),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=10),
)
def test_sse_framing_round_trips(data: str, event: str) -> None:
    frame = sse_frame("7-1", event, data.encode("utf-8", "surrogatepass"))
    parsed = SseParser().feed(frame)
    assert len(parsed) == 1
    expected = data.replace("\r\n", "\n").replace("\r", "\n")
    assert parsed[0].data == expected
    assert parsed[0].id == "7-1"
    wanted = event.replace("\r\n", " ").replace("\r", " ").replace("\n", " ").replace("\0", "")
    assert parsed[0].event == (wanted or "message")


@given(st.text(max_size=10))
def test_data_can_never_inject_a_field(evil: str) -> None:
    payload = f"x\nid: forged\r\nevent: forged\rretry: 1\n\n{evil}".encode()
    parsed = SseParser().feed(sse_frame("1-1", "price", payload))
    assert [(e.id, e.event) for e in parsed] == [("1-1", "price")]


@given(st.binary(max_size=70000) | st.text(max_size=300).map(str.encode))
def test_websocket_frames_parse_back(body: bytes) -> None:
    item = Item("3-4", "price", body)
    for fmt in (Format.WS_RAW, Format.WS_ENVELOPE):
        client = Connection(ConnectionType.CLIENT)
        client.receive_data(item.render(fmt))
        [message] = list(client.events())
        if fmt is Format.WS_ENVELOPE:
            assert isinstance(message, TextMessage)
            envelope = json.loads(message.data)
            assert (envelope["id"], envelope["event"]) == ("3-4", "price")
        else:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                assert isinstance(message, BytesMessage) and message.data == body
            else:
                assert isinstance(message, TextMessage) and message.data == text


def test_item_renders_once_per_format() -> None:
    item = Item("1-1", "e", b"x")
    assert item.render(Format.SSE) is item.render(Format.SSE)
    chunked = slot(Format.SSE, CHUNKED)
    assert item.render(chunked) == b"%x\r\n%s\r\n" % (
        len(item.render(Format.SSE)),
        item.render(Format.SSE),
    )


def test_a_channel_only_plain_gets_started_stops_soon_a_subscribed_one_lingers() -> None:
    async def body() -> None:
        hub, script, clock = harness()
        r = route()
        assert await hub.latest(r, {"s": "A"}, [], timeout=5) is not None
        assert await hub.latest(r, {"s": "B"}, [], timeout=5) is not None
        # B gets a subscriber, who leaves at once: from then on B lingers as usual
        sub = hub.subscribe(r, {"s": "B"}, [], Sink(), Format.SSE, None)
        sub.cancel()
        await clock.advance(settings.GET_LINGER + 0.1)
        keys = {channel.spec.params["s"] for channel in hub.channels.values()}
        assert keys == {"B"}  # A stopped after GET_LINGER, not STREAM_LINGER
        await clock.advance(settings.STREAM_LINGER)
        assert not hub.channels
        polls = len(script.calls)
        await clock.advance(10)
        assert len(script.calls) == polls  # nothing polls any more

    run(body)


def test_channels_per_route_are_capped_existing_keys_still_served() -> None:
    async def body() -> None:
        hub, _script, clock = harness(max_channels_per_route=2)
        r = route()
        subs = [hub.subscribe(r, {"s": s}, [], Sink(), Format.SSE, None) for s in "AB"]
        with pytest.raises(StreamError) as refused:
            await hub.latest(r, {"s": "C"}, [], timeout=5)
        assert refused.value.code is ErrorCode.OVERLOADED
        assert dict(refused.value.headers)[b"retry-after"].isdigit()
        with pytest.raises(StreamError):
            hub.subscribe(r, {"s": "C"}, [], Sink(), Format.SSE, None)
        assert await hub.latest(r, {"s": "A"}, [], timeout=5) is not None  # an existing key
        for sub in subs:
            sub.cancel()
        await clock.advance(settings.STREAM_LINGER + 1)
        assert await hub.latest(r, {"s": "C"}, [], timeout=5) is not None  # room again

    run(body)
