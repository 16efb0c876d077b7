"""The hub seam: Poller → Broker → Channel. Stream keys every process agrees on, a publish that
fails leaves the change to be found again, duplicate and out-of-sequence records, and a new
poller continuing from the channel's state (what a new cluster leader does)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from bridge.broker import LocalBroker, Record
from bridge.hub.channel import Channel
from bridge.hub.hub import Hub
from bridge.hub.key import stream_key
from bridge.settings import Limits
from tests.unit.hubfakes import UP, Harness, longpoll_route, route, run


def test_the_key_is_what_the_upstream_sees_not_the_route() -> None:
    async def body() -> None:
        h = Harness()
        first, second = route(index=0), route(index=7)
        _, a = h.subscribe(first, "A")
        _, b = h.subscribe(second, "A")
        await h.advance(2.5)
        assert len(h.hub.channels) == 1  # two routes, one upstream URL: one poller
        assert h.upstream.calls == 3
        assert a.values() == b.values() == [{"v": 1}]
        # Another URL, another vary value, another emit: other keys.
        spec = first.stream
        assert spec is not None
        key = stream_key(spec, "/api?s=A", [])
        assert key == Hub.key(second, {"s": "A"}, []) and len(key) == 32
        assert key != stream_key(spec, "/api?s=B", [])
        assert key != stream_key(spec, "/api?s=A", [(b"x-user", b"alice")])
        patch = route(emit="patch").stream
        assert patch is not None and key != stream_key(patch, "/api?s=A", [])
        other = route(upstream=replace(UP, port=10)).stream
        assert other is not None and key != stream_key(other, "/api?s=A", [])
        longer = route(history=7).stream  # a channel keeps one history bound
        assert longer is not None and key != stream_key(longer, "/api?s=A", [])

    run(body)


def test_the_key_is_the_same_digest_older_versions_compute() -> None:
    """Processes of two versions share Redis during a rolling upgrade: the digest's input must
    not change shape when its computation is made cheaper."""
    import hashlib

    for spec in (route().stream, route(emit="patch", history=7).stream, longpoll_route().stream):
        assert spec is not None
        longpoll = spec.longpoll
        mode = f"every={spec.every}" if longpoll is None else repr(longpoll)
        vary = [(b"x-user", b"alice")]
        text = repr(
            (
                spec.upstream.scheme,
                spec.upstream.host,
                spec.upstream.port,
                spec.upstream.base_path,
                "/api?s=A",
                tuple(vary),
                spec.emit,
                spec.event,
                mode,
                spec.history,
                spec.heartbeat,
            )
        )
        assert stream_key(spec, "/api?s=A", vary) == hashlib.sha256(text.encode()).hexdigest()[:32]


class FlakyBroker(LocalBroker):
    """A LocalBroker whose store is down for the next `down` publishes (as Redis can be)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = 0
        self.refused: list[str] = []

    async def publish(self, key: str, record: Record) -> None:
        if self.down:
            self.down -= 1
            self.refused.append(record.id)
            raise ConnectionError("store unreachable")
        await super().publish(key, record)


def test_a_change_that_could_not_be_published_is_found_again() -> None:
    async def body() -> None:
        h = Harness()
        broker = FlakyBroker()
        h.hub = Hub(h.upstream, limits=Limits(), clock=h.clock, broker=broker)
        _, sink = h.subscribe(route(emit="patch"))
        await h.advance(0.5)
        assert sink.values() == [{"v": 1}]
        broker.down = 2
        h.upstream.set({"v": 2})
        for _ in range(200):  # until the poll sees v2 and its publish fails
            await h.advance(0.01)
            if broker.refused:
                break
        assert len(broker.refused) == 1 and sink.values() == [{"v": 1}]
        await h.advance(60)  # backoff, a second refusal, then published
        assert len(broker.refused) == 2
        events = sink.events()
        assert [e.event for e in events] == ["snapshot", "patch"]
        assert [r.query for r in h.upstream.requests if r.header(b"if-none-match")]
        channel = next(iter(h.hub.channels.values()))
        assert channel.errors == 2 and channel.latest is not None
        assert channel.latest.state == b'{"v": 2}'
        # Ids keep growing past the refused ones: none of them was ever seen by a reader.
        assert events[1].id > events[0].id

    run(body)


def _record(rid: str, prev: str | None, body: bytes) -> Record:
    return Record(rid, "snapshot", body, None, "application/json", prev)


def test_duplicate_records_are_dropped_and_a_hole_resets() -> None:
    async def body() -> None:
        h = Harness()
        r = route(history=10)
        _, sink = h.subscribe(r)
        await h.advance(0.5)
        channel: Channel = next(iter(h.hub.channels.values()))
        first = sink.events()[0].id
        nxt = first[:-6] + "000002"
        channel.on_record(_record(nxt, first, b'{"v": 2}'))
        channel.on_record(_record(nxt, first, b'{"v": 2}'))  # a re-read after a reconnect
        channel.on_record(_record(first, None, b'{"v": 1}'))  # older than the latest
        assert [e.id for e in sink.events()] == [first, nxt]
        assert len(channel.history) == 2
        # A record that does not follow the latest: something was missed in between.
        later = first[:-6] + "000009"
        channel.on_record(_record(later, first[:-6] + "000008", b'{"v": 9}'))
        events = sink.events()
        assert [e.event for e in events][-1] == "reset" and events[-1].id == later
        assert list(channel.history) == [channel.latest]
        # A client resuming from before the hole gets the reset, not a replay across it.
        _, resumed = h.subscribe(r, last_event_id=nxt)
        assert [(e.event, e.id) for e in resumed.events()] == [("reset", later)]

    run(body)


def test_a_new_poller_continues_from_the_channel_state() -> None:
    async def body() -> None:
        h = Harness()
        _, sink = h.subscribe(route(emit="merge"))
        await h.advance(0.5)
        channel: Channel = next(iter(h.hub.channels.values()))
        first = sink.events()[0].id
        # Leadership moves (here: the lead task restarts, as after a lost lease).
        old = channel.poller
        lead = next(t for t in channel.tasks() if t.get_name().startswith("lead"))
        lead.cancel()
        await h.advance(0)
        assert channel.poller is None
        channel._tasks[channel._tasks.index(lead)] = asyncio.create_task(channel.leadership.run())
        await h.advance(1.5)
        assert channel.poller is not None and channel.poller is not old
        assert [e.id for e in sink.events()] == [first]  # the same body: nothing republished
        h.upstream.set({"v": 2})
        await h.advance(1.5)
        events = sink.events()
        assert [e.event for e in events] == ["snapshot", "merge"]  # a diff against the seed
        assert events[1].id.split("-")[0] > first.split("-")[0]  # a later epoch
        assert channel.polls >= 3

    run(body)
