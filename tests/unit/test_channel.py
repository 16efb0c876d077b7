"""The poller and its change detection, on a virtual clock: conditional GETs, long-poll cursors,
backoff with Retry-After, heartbeats, ids, and patch/merge streams. No real sleeping: time
moves only through `VirtualClock.advance`."""

from __future__ import annotations

import itertools
import json
import logging
import random
from typing import Any

import jsonpatch
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from bridge import settings
from bridge.errors import ErrorCode, StreamError
from bridge.hub import poller as poller_module
from bridge.hub.backoff import Backoff, parse_retry_after
from bridge.hub.diff import apply_merge_patch, json_equal
from bridge.hub.item import HEARTBEAT, Format, Item
from bridge.hub.state import Health, Lifetime
from bridge.hub.subscription import Subscription
from tests.unit.hubfakes import UP, Harness, MemorySink, longpoll_route, refused, route, run

# --- every: conditional GETs and change detection -------------------------------------------------


def test_polls_at_the_interval_with_jitter() -> None:
    async def body() -> None:
        h = Harness()
        h.subscribe(route(every=2.0))
        await h.advance(0)
        assert h.upstream.calls == 1
        await h.advance(60)
        times = [r.at for r in h.upstream.requests]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(1.8 - 1e-9 <= g <= 2.2 + 1e-9 for g in gaps), gaps
        assert len(set(round(g, 6) for g in gaps)) > 1  # jittered, not a fixed beat
        assert 27 <= h.upstream.calls <= 34

    run(body)


def test_conditional_requests_and_unchanged_answers_emit_nothing() -> None:
    async def body() -> None:
        h = Harness()
        h.upstream.last_modified = b"Wed, 21 Oct 2015 07:28:00 GMT"
        _, sink = h.subscribe(route())
        await h.advance(0)
        first = h.upstream.requests[0]
        assert first.header(b"if-none-match") is None
        await h.advance(3.5)
        again = h.upstream.requests[-1]
        assert again.header(b"if-none-match") == h.upstream.etag
        assert again.header(b"if-modified-since") == b"Wed, 21 Oct 2015 07:28:00 GMT"
        assert len(sink.events()) == 1  # every later answer was a 304
        # Without validators, an identical body is no change either.
        h.upstream.etags = False
        h.upstream.last_modified = None
        await h.advance(3.5)
        assert len(sink.events()) == 1
        assert h.upstream.requests[-1].header(b"if-none-match") is None  # validators forgotten
        h.upstream.set({"v": 2})
        await h.advance(1.2)
        assert sink.values() == [{"v": 1}, {"v": 2}]

    run(body)


def test_if_modified_since_alone_gives_304s() -> None:
    async def body() -> None:
        h = Harness()
        h.upstream.etags = False
        h.upstream.last_modified = b"Wed, 21 Oct 2015 07:28:00 GMT"
        _, sink = h.subscribe(route())
        await h.advance(5.5)
        assert h.upstream.requests[-1].header(b"if-modified-since") is not None
        assert h.upstream.requests[-1].header(b"if-none-match") is None
        assert len(sink.events()) == 1

    run(body)


def test_poll_request_headers() -> None:
    async def body() -> None:
        h = Harness()
        h.subscribe(route(), "a b/c?d")
        await h.advance(0)
        [request] = h.upstream.requests
        assert request.target == "/api?s=a%20b%2Fc%3Fd"  # a value can't add a parameter
        assert request.header(b"host") == b"127.0.0.1:9"
        assert b"application/json" in (request.header(b"accept") or b"")
        assert request.timeout == UP.timeout  # `every` polls use the upstream's own timeout
        assert request.max_bytes == h.hub.context.limits.max_snapshot

    run(body)


def test_ids_grow_sort_as_strings_and_survive_restarts() -> None:
    async def body() -> None:
        h = Harness()
        r = route()
        sub, sink = h.subscribe(r)
        for v in range(2, 13):
            await h.advance(1.2)
            h.upstream.set({"v": v})
        await h.advance(1.2)
        ids = [e.id for e in sink.events()]
        assert len(ids) == 12
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert all(len(i) == len(ids[0]) for i in ids)
        sub.cancel()
        await h.advance(settings.STREAM_LINGER + 1)  # the channel stops
        assert not h.hub.channels
        h.clock.set_wall(h.clock.wall() - 3600)  # the wall clock steps back an hour
        _, later = h.subscribe(r)
        await h.advance(0)
        [fresh] = later.events()
        assert fresh.id > ids[-1]  # a new epoch, still above every id handed out before

    run(body)


def test_sequence_overflow_moves_to_a_new_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(poller_module, "SEQ_MAX", 3)

    async def body() -> None:
        h = Harness()
        _, sink = h.subscribe(route(history=10))
        for v in range(2, 9):
            await h.advance(1.2)
            h.upstream.set({"v": v})
        await h.advance(1.2)
        ids = [e.id for e in sink.events()]
        assert len(ids) == 8 and ids == sorted(ids)
        assert len({i.split("-")[0] for i in ids}) == 3  # 3 + 3 + 2
        # resume works across the epoch change
        _, back = h.subscribe(route(history=10), last_event_id=ids[2])
        assert [e.id for e in back.events()] == ids[3:]

    run(body)


# --- long-poll ------------------------------------------------------------------------------------


def test_longpoll_sends_the_cursor_back_and_asks_again_at_once() -> None:
    async def body() -> None:
        h = Harness()
        h.upstream.set({"seq": 41, "x": 1})
        _, sink = h.subscribe(longpoll_route(timeout=20.0))
        await h.advance(0)
        assert h.upstream.targets() == ["/api?s=A", "/api?s=A&since=41"]  # second one held
        assert h.upstream.requests[0].timeout == 20.0 + settings.LONGPOLL_MARGIN
        await h.advance(5)
        assert h.upstream.calls == 2  # still held: long-polls are not repeated
        h.upstream.set({"seq": 42, "x": 2})
        await h.advance(0)
        assert sink.values() == [{"seq": 41, "x": 1}, {"seq": 42, "x": 2}]
        assert h.upstream.targets()[-1] == "/api?s=A&since=42"
        assert not any(r.header(b"if-none-match") for r in h.upstream.requests)

    run(body)


def test_longpoll_cursor_paths_and_query_joining() -> None:
    async def body() -> None:
        h = Harness()
        h.upstream.seq_field = "unused"
        h.upstream.set({"meta": {"pos": "a&b=c"}, "items": [{"id": 7}]})
        r1 = longpoll_route(cursor="meta.pos", param="after", poll="/feed/{s}")
        r2 = longpoll_route(index=1, cursor="items.0.id", param="p q", poll="/feed?x=1&")
        h.subscribe(r1)
        h.subscribe(r2)
        await h.advance(0.5)
        targets = h.upstream.targets()
        assert "/feed/A?after=a%26b%3Dc" in targets  # `?` when there is no query yet
        assert "/feed?x=1&p%20q=7" in targets  # no doubled `&`

    run(body)


def test_longpoll_timeout_after_holding_is_normal() -> None:
    async def body() -> None:
        h = Harness()
        h.upstream.set({"seq": 1})
        h.upstream.hold = 1000  # holds longer than our patience
        _, sink = h.subscribe(longpoll_route(timeout=10.0))
        await h.advance(0)
        await h.advance(10 + settings.LONGPOLL_MARGIN + 0.1)
        channel = next(iter(h.hub.channels.values()))
        assert channel.errors == 0 and channel.state.value == "polling"
        assert h.upstream.calls == 3  # the first, one that timed out, and its immediate successor
        # an upstream that answers "no change" at its own timeout is just as normal
        h.upstream.hold = 8
        await h.advance(40)
        assert channel.errors == 0
        assert len(sink.events()) == 1

    run(body)


def test_longpoll_answers_without_news_never_spin() -> None:
    async def body() -> None:
        h = Harness()
        h.upstream.set({"no_cursor_here": 1})  # nothing to hold on: answers at once, unchanged
        h.subscribe(longpoll_route())
        await h.advance(10)
        # the first answer is news (published, asked again at once); every later one is not
        assert h.upstream.calls <= 10 / settings.LONGPOLL_MIN_GAP + 2
        times = [r.at for r in h.upstream.requests]
        assert all(
            b - a >= settings.LONGPOLL_MIN_GAP - 1e-9 for a, b in itertools.pairwise(times[1:])
        )

    run(body)


def test_longpoll_connect_failures_back_off() -> None:
    async def body() -> None:
        h = Harness(seed=3)
        h.upstream.error = refused()
        h.subscribe(longpoll_route())
        await h.advance(30)
        assert h.upstream.calls <= 15  # backoff, not a tight loop of long-polls

    run(body)


# --- errors and backoff ---------------------------------------------------------------------------


def test_backoff_doubles_to_the_cap_with_full_jitter() -> None:
    rng = random.Random(7)
    delays: dict[int, list[float]] = {}
    for _ in range(300):
        backoff = Backoff(rng=rng)
        for failure in range(1, 9):
            delays.setdefault(failure, []).append(backoff.next())
    for failure, seen in delays.items():
        ceiling = min(settings.BACKOFF_MAX, settings.BACKOFF_BASE * 2 ** (failure - 1))
        assert all(0 < d <= ceiling for d in seen)
        # full jitter: spread over the whole range, not clustered near the ceiling
        assert min(seen) < ceiling * 0.1 + 0.1 and max(seen) > ceiling * 0.85
    backoff = Backoff()
    for _ in range(40):
        backoff.next()
    assert backoff.ceiling() == settings.BACKOFF_MAX
    assert backoff.next(7.0) == 7.0  # Retry-After replaces the delay
    # a Retry-After of 0 (or a date already past) is no hint: not a retry storm
    assert all(0 < Backoff(rng=rng).next(0.0) <= settings.BACKOFF_BASE for _ in range(50))
    many = Backoff(rng=random.Random(1))
    for _ in range(10):
        many.next()
    assert max(many.next(0.0) for _ in range(50)) > settings.BACKOFF_BASE * 4
    backoff.reset()
    assert backoff.ceiling() == settings.BACKOFF_BASE


def test_retry_after_values() -> None:
    assert parse_retry_after(b"12", 0) == 12
    assert parse_retry_after(b" 3 ", 0) == 3
    assert parse_retry_after(b"999999", 0) == settings.RETRY_AFTER_MAX
    when = 1445412480  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT", when - 60) == 60
    assert parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 -0000", when - 60) == 60
    assert parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT", when + 60) == 0  # past
    assert parse_retry_after(b"soon", 0) is None
    assert parse_retry_after(b"\xd9\xa1", 0) is None  # not ASCII digits
    assert parse_retry_after(None, 0) is None


def test_failures_back_off_and_subscribers_only_see_heartbeats() -> None:
    async def body() -> None:
        h = Harness(seed=5)
        sub, sink = h.subscribe(route(heartbeat=2.0))
        await h.advance(0)
        h.upstream.error = refused()
        start = h.upstream.calls
        await h.advance(120)
        times = [r.at for r in h.upstream.requests[start:]]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        # from 1 s doubling to 30 s with full jitter: each gap within its ceiling
        for n, gap in enumerate(gaps, start=1):
            assert gap <= min(30.0, 2.0 ** (n - 1)) + 1e-9
        assert len(gaps) < 25  # far fewer than 120 one-second polls
        assert not sink.closed and not sub.closed
        assert [e.data for e in sink.events()] == ['{"v": 1}']  # no error events
        assert sink.comments() >= 50  # heartbeats kept flowing
        channel = next(iter(h.hub.channels.values()))
        assert channel.state.value == "backoff" and channel.errors == h.upstream.calls - start
        h.upstream.error = None
        h.upstream.set({"v": 2})
        await h.advance(31)
        assert sink.values() == [{"v": 1}, {"v": 2}]
        assert channel.state.value == "polling"
        before = h.upstream.calls
        await h.advance(10)
        assert 8 <= h.upstream.calls - before <= 12  # the normal interval again

    run(body)


@pytest.mark.parametrize(
    "retry_after",
    [b"120", b"Tue, 14 Nov 2023 22:15:20 GMT"],  # the virtual wall clock starts at 22:13:20
)
def test_retry_after_replaces_the_next_delay(retry_after: bytes) -> None:
    async def body() -> None:
        h = Harness()
        h.upstream.answer = (503, [(b"retry-after", retry_after)], b"busy")
        h.subscribe(route())
        await h.advance(0)
        await h.advance(119)
        assert h.upstream.calls == 1
        await h.advance(1.5)
        first, second = h.upstream.requests[:2]
        assert 120 - 1e-9 <= second.at - first.at <= 120.5

    run(body)


def test_retry_after_is_capped() -> None:
    async def body() -> None:
        h = Harness()
        h.upstream.answer = (429, [(b"retry-after", b"86400")], b"")
        h.subscribe(route())
        await h.advance(settings.RETRY_AFTER_MAX + 1)
        assert h.upstream.calls == 2

    run(body)


@pytest.mark.parametrize(
    "failure",
    [
        "status",
        "timeout",
        "too_big",
        "too_big_unenforced",
        "bug",
    ],
)
def test_every_kind_of_failure_keeps_the_last_snapshot(failure: str) -> None:
    async def body() -> None:
        h = Harness(max_snapshot=1000)
        _, sink = h.subscribe(route())
        await h.advance(0)
        up = h.upstream
        if failure == "status":
            up.answer = (500, [], b"oops")
        elif failure == "timeout":
            up.stall = True
        elif failure in ("too_big", "too_big_unenforced"):
            up.enforce_max_bytes = failure == "too_big"
            up.set({"blob": "x" * 2000})
        else:
            up.error = RuntimeError("a bug in the fetcher")
        await h.advance(20)
        channel = next(iter(h.hub.channels.values()))
        assert channel.errors >= 2 and channel.state.value == "backoff"
        assert sink.values() == [{"v": 1}]
        assert channel.latest is not None and channel.latest.state == b'{"v": 1}'

    run(body)


def test_failures_are_logged_at_most_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        h = Harness()
        h.upstream.answer = (503, [(b"retry-after", b"1")], b"")
        h.subscribe(route())
        await h.advance(600)
        assert h.upstream.calls > 300
        h.upstream.answer = None
        await h.advance(2)

    with caplog.at_level(logging.INFO, logger="bridge.hub"):
        run(body)
    failures = [r for r in caplog.records if "poll failed" in r.getMessage()]
    assert 5 <= len(failures) <= 11
    assert "more failures not logged" in failures[-1].getMessage()
    assert any("recovered" in r.getMessage() for r in caplog.records)


def test_unexpected_errors_are_logged_with_a_traceback(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        h = Harness()
        h.upstream.error = ValueError("surprise")
        h.subscribe(route())
        await h.advance(0)

    with caplog.at_level(logging.WARNING, logger="bridge.hub"):
        run(body)
    [record] = [r for r in caplog.records if "poll failed" in r.getMessage()]
    assert record.exc_info is not None and "surprise" in record.getMessage()


def test_stream_errors_are_not_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        h = Harness()
        h.upstream.error = StreamError(ErrorCode.UPSTREAM_TIMEOUT, "took too long")
        h.subscribe(route())
        await h.advance(0)

    with caplog.at_level(logging.WARNING, logger="bridge.hub"):
        run(body)
    [record] = [r for r in caplog.records if "poll failed" in r.getMessage()]
    assert record.exc_info is None and "took too long" in record.getMessage()


# --- heartbeats -----------------------------------------------------------------------------------


def test_one_heartbeat_per_idle_period() -> None:
    async def body() -> None:
        h = Harness()
        _, a = h.subscribe(route(heartbeat=10.0))
        _, b = h.subscribe(route(heartbeat=10.0), fmt=Format.WS_ENVELOPE)
        await h.advance(0)
        await h.advance(8.4)
        assert a.comments() == 0  # never before heartbeat * 0.85
        await h.advance(1.7)
        assert a.comments() == 1  # and not later than the heartbeat itself
        await h.advance(100)
        assert 10 <= a.comments() <= 12
        # the same pre-rendered bytes every time, for every subscriber of a format
        assert a.writes[-1] is HEARTBEAT.render(Format.SSE)
        assert b.writes[-1] is HEARTBEAT.render(Format.WS_ENVELOPE)
        assert b.writes[-2] is b.writes[-1]
        channel = next(iter(h.hub.channels.values()))
        assert len(channel.history) == 1

    run(body)


def test_no_heartbeat_while_events_flow() -> None:
    async def body() -> None:
        h = Harness()
        _, sink = h.subscribe(route(heartbeat=3.0, every=1.0))
        await h.advance(0)  # the first answer, {"v": 1}
        for v in range(2, 30):
            h.upstream.set({"v": v})
            await h.advance(1.2)
        assert sink.comments() == 0
        assert len(sink.events()) == 29

    run(body)


# --- patch and merge streams ----------------------------------------------------------------------


def replay(events: list[Any]) -> list[Any]:
    """Apply a patch/merge stream's events as a client would; the state after each one."""
    state: Any = None
    states = []
    for event in events:
        value = json.loads(event.data)
        if event.event == "snapshot":
            state = value
        elif event.event == "patch":
            state = jsonpatch.apply_patch(state, value)
        else:
            assert event.event == "merge", event.event
            state = apply_merge_patch(state, value)
        states.append(state)
    return states


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=3),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=2), children, max_size=3)
    ),
    max_leaves=10,
)


@hsettings(max_examples=40, deadline=None)
@given(st.lists(json_values, min_size=1, max_size=6))
def test_patch_and_merge_streams_reproduce_every_body(docs: list[Any]) -> None:
    for emit in ("patch", "merge"):

        async def body(emit: str = emit) -> None:
            h = Harness()
            h.upstream.set(docs[0])
            _, sink = h.subscribe(route(emit=emit))
            await h.advance(0)
            for doc in docs[1:]:
                h.upstream.set(doc)
                await h.advance(1.2)
            events = sink.events()
            assert events[0].event == "snapshot"
            assert {e.event for e in events} <= {"snapshot", emit}
            distinct = [d for i, d in enumerate(docs) if i == 0 or not json_equal(d, docs[i - 1])]
            states = replay(events)
            assert len(states) == len(distinct)
            assert all(json_equal(s, d) for s, d in zip(states, distinct, strict=True))

        run(body)


def test_patch_stream_falls_back_to_snapshots_where_a_diff_cannot_say_it() -> None:
    async def body() -> None:
        h = Harness()
        _, merge = h.subscribe(route(emit="merge"))
        _, patch = h.subscribe(route(index=1, emit="patch"))
        docs = ({"a": 1}, {"a": None}, {"a": [1]}, {"a": [True]})
        for doc in docs:
            h.upstream.set(doc)
            await h.advance(1.2)
        # A merge patch can't set a member to null: that change goes out as a snapshot.
        assert [e.event for e in merge.events()] == ["snapshot", "snapshot", "merge", "merge"]
        # jsonpatch before 1.40 or so saw no difference between [1] and [true] (1 == True in
        # Python) and produced an empty patch; bridge checks every diff and sends a snapshot
        # where it does not reproduce the new body. Newer jsonpatch diffs it correctly.
        events = [e.event for e in patch.events()]
        assert events[:3] == ["snapshot", "patch", "patch"] and events[3] in ("patch", "snapshot")
        for sink in (merge, patch):
            states = replay(sink.events())
            assert all(json_equal(a, b) for a, b in zip(states, docs, strict=True))

    run(body)


def test_reformatted_json_is_no_change_on_a_patch_stream() -> None:
    async def body() -> None:
        h = Harness()
        h.upstream.etags = False
        _, sink = h.subscribe(route(emit="patch"))
        await h.advance(0)
        h.upstream.set(b'{ "v" : 1 }')
        await h.advance(3.5)
        assert [e.event for e in sink.events()] == ["snapshot"]

    run(body)


def test_non_json_body_sends_snapshots_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        h = Harness()
        h.upstream.content_type = b"text/plain"
        h.upstream.set(b"plain text 1")
        _, sink = h.subscribe(route(emit="patch"))
        for n in range(2, 6):
            await h.advance(1.2)
            h.upstream.set(b"plain text %d" % n)
        h.upstream.set({"v": 1})  # JSON again: a snapshot, then patches
        await h.advance(1.2)
        h.upstream.set({"v": 2})
        await h.advance(1.2)
        events = sink.events()
        assert [e.event for e in events] == ["snapshot"] * 5 + ["patch"]
        assert events[0].data == "plain text 1"
        assert json.loads(events[-1].data) == [{"op": "replace", "path": "/v", "value": 2}]

    with caplog.at_level(logging.WARNING, logger="bridge.hub"):
        run(body)
    assert len([r for r in caplog.records if "not JSON" in r.getMessage()]) == 1


def test_history_does_not_keep_full_states_of_patch_items() -> None:
    async def body() -> None:
        h = Harness()
        _, sink = h.subscribe(route(emit="patch"))
        for v in range(2, 8):
            await h.advance(1.2)
            h.upstream.set({"v": v, "blob": "x" * 1000})
        await h.advance(1.2)
        channel = next(iter(h.hub.channels.values()))
        items = list(channel.history)
        assert [i.has_state for i in items] == [True] + [False] * (len(items) - 2) + [True]
        # (the first is a snapshot item: its state is its data)
        assert all(not any(i.rendered) for i in items[:-1])
        assert len(sink.events()) == 7

    run(body)


# --- the channel's seams: its state machines, and a subscription's owner -------------------------


def test_lifetime_and_health_move_only_forward_where_they_should() -> None:
    assert Lifetime.NEW.started() is Lifetime.JOINING
    assert Lifetime.LIVE.started() is Lifetime.LIVE  # starting twice is a no-op
    assert Lifetime.STOPPED.started() is Lifetime.STOPPED  # a stopped channel never restarts
    assert Lifetime.JOINING.joined() is Lifetime.LIVE
    assert Lifetime.LIVE.joined() is Lifetime.LIVE  # a restart's history again
    assert Lifetime.STOPPED.joined() is Lifetime.STOPPED
    assert all(life.stopped() is Lifetime.STOPPED for life in Lifetime)
    assert Health.STARTING.on_record() is Health.POLLING
    assert Health.BACKOFF.on_record() is Health.BACKOFF  # a reported failure still stands
    assert Health.BACKOFF.on_status(True) is Health.POLLING
    assert Health.POLLING.on_status(False) is Health.BACKOFF
    assert all(health.restarted() is Health.STARTING for health in Health)


class _Owner:
    """A subscription's owner that only keeps the books: no channel behind it."""

    def __init__(self) -> None:
        self.lagging: list[Subscription] = []
        self.left: list[Subscription] = []
        self.latest = Item("0000000000001-000002", "snapshot", b'{"v": 2}')

    def start_lagging(self, sub: Subscription) -> float:
        self.lagging.append(sub)
        return 42.0

    def stop_lagging(self, sub: Subscription) -> None:
        self.lagging.remove(sub)

    def catch_up(self) -> Item:
        return self.latest

    def retry_ms(self) -> int:
        return 1500

    def unsubscribe(self, sub: Subscription) -> None:
        self.left.append(sub)

    def sink_failed(self, sub: Subscription) -> None:
        pass


def test_a_subscription_tells_its_owner_and_writes_nothing_into_it() -> None:
    owner = _Owner()
    sink = MemorySink(stalled=True)
    sub = Subscription(owner, sink, Format.SSE, limit=10)
    sink.subscription = sub
    sub.offer(Item("0000000000001-000001", "snapshot", b'{"v": 1}'))
    assert sub.lagging and owner.lagging == [sub] and sub.lag_since == 42.0
    sub.offer(owner.latest)  # conflated while lagging
    sink.drain()
    assert not sub.lagging and owner.lagging == []
    assert [e.data for e in sink.events()] == ['{"v": 1}', '{"v": 2}']  # caught up at once
    sub.close_lagging()
    assert owner.left == [sub] and sink.final is not None and b"retry: 1500" in sink.final
