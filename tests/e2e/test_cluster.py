"""Three `bridge serve` processes sharing one real redis-server (broker: redis://): one poller
per stream for the whole cluster, a killed leader replaced without a gap, a Redis restart
without a lost event, and a client resuming on another process by its Last-Event-ID.

Short intervals and leases (every 0.2 s, lease 0.6 s) keep it fast; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge import settings
from tests.support.cluster import BridgeNode, RedisServer, node_config
from tests.support.harness import config_text, run, running_bridge
from tests.support.sse import SseEvent
from tests.support.subscribers import SseSubscriber, sse
from tests.support.upstream import Upstream, retry_after

LEASE = 0.6
EVERY = 0.2


class Feed:
    """A JSON resource on the upstream whose poll arrivals are timed."""

    def __init__(self, upstream: Upstream, path: str) -> None:
        self.upstream = upstream
        self.path = path
        self.arrivals: list[float] = []
        self.value = 0
        self.set(0)

    def set(self, value: int) -> None:
        self.value = value
        self.upstream.set_json(self.path, {"n": value})
        inner = self.upstream.routes[self.path]

        async def timed(request: Any) -> Any:
            self.arrivals.append(time.monotonic())
            return await inner(request)

        self.upstream.route(self.path, timed)

    def polls_between(self, start: float, end: float) -> int:
        return sum(1 for t in self.arrivals if start <= t < end)


@contextlib.asynccontextmanager
async def cluster(count: int) -> AsyncIterator[tuple[RedisServer, Upstream, list[BridgeNode]]]:
    redis = RedisServer()
    await asyncio.to_thread(redis.start)
    nodes: list[BridgeNode] = []
    try:
        async with Upstream() as upstream:
            config = node_config(redis.url, upstream.port, lease=f"{LEASE}s")
            for _ in range(count):
                nodes.append(await asyncio.to_thread(BridgeNode, config))
            yield redis, upstream, nodes
    finally:
        for node in nodes:
            await asyncio.to_thread(node.stop)
        await asyncio.to_thread(redis.stop)


async def subscribe_all(
    stack: contextlib.AsyncExitStack, client: httpx.AsyncClient, nodes: list[BridgeNode], path: str
) -> list[SseSubscriber]:
    """One SSE subscriber of `path` on each process, closed with `stack`."""
    return [await stack.enter_async_context(sse(client, node.url(path))) for node in nodes]


def value(event: SseEvent) -> int:
    return int(json.loads(event.data)["n"])


async def until(sub: SseSubscriber, wanted: int, timeout: float = 15.0) -> list[SseEvent]:
    """Events up to and including the one carrying n == wanted."""
    seen: list[SseEvent] = []
    deadline = time.monotonic() + timeout
    while True:
        event = await sub.next_event(timeout=max(0.1, deadline - time.monotonic()))
        seen.append(event)
        if value(event) == wanted:
            return seen


async def leader(nodes: list[BridgeNode], timeout: float = 10.0) -> BridgeNode:
    deadline = time.monotonic() + timeout
    while True:
        leading = [n for n in nodes if await asyncio.to_thread(n.leads)]
        if len(leading) == 1:
            return leading[0]
        assert len(leading) <= 1, "two processes lead one stream"
        if time.monotonic() > deadline:
            raise TimeoutError("no leader")
        await asyncio.sleep(0.1)


def test_one_poller_for_the_cluster_and_a_killed_leader_is_replaced_without_a_gap() -> None:
    async def body() -> None:
        async with cluster(3) as (_redis, upstream, nodes), httpx.AsyncClient(timeout=10) as client:
            feed = Feed(upstream, "/feed/a")
            async with contextlib.AsyncExitStack() as stack:
                subs = await subscribe_all(stack, client, nodes, "/feed/a")
                firsts = [await sub.next_event() for sub in subs]
                assert {value(e) for e in firsts} == {0}
                assert len({e.id for e in firsts}) == 1  # one id, whichever process served it
                assert len({e.event for e in firsts}) == 1 and firsts[0].event != "reset"

                # Steady state: one poller for three processes, at the route's interval.
                lead = await leader(nodes)
                start = time.monotonic()
                await asyncio.sleep(2.0)
                polls = feed.polls_between(start, time.monotonic())
                # Three pollers would make ~30 requests here; one makes at most ~12 (the
                # interval is 0.2 s, jittered ±10 %), fewer when the machine is busy.
                assert 1 <= polls <= 2.0 / (EVERY * 0.9) + 2, polls

                feed.set(1)
                for sub in subs:
                    got = await until(sub, 1)
                    assert [(value(e), e.event) for e in got] == [(1, firsts[0].event)]

                # kill -9 the leader: its lease runs out, a survivor takes over.
                survivors = [n for n in nodes if n is not lead]
                live = [s for s, n in zip(subs, nodes, strict=True) if n is not lead]
                killed_at = time.monotonic()
                await asyncio.to_thread(lead.kill)
                feed.set(2)
                for sub in live:
                    got = await until(sub, 2)
                    assert [(value(e), e.event) for e in got] == [(2, firsts[0].event)]  # no reset
                    assert got[0].id > firsts[0].id
                took_over = [t for t in feed.arrivals if t > killed_at]
                assert took_over, "nobody polled after the leader died"
                # Generous (a correctness bound, not a speed figure): the lease and one retry.
                assert took_over[0] - killed_at < 4 * LEASE + 2.0
                new_lead = await leader(survivors)
                assert new_lead is not lead
                # Still one poller.
                start = time.monotonic()
                await asyncio.sleep(1.5)
                polls = feed.polls_between(start, time.monotonic())
                assert 1 <= polls <= 1.5 / (EVERY * 0.9) + 2, polls
                feed.set(3)
                ids = []
                for sub in live:
                    got = await until(sub, 3)
                    assert [value(e) for e in got] == [3]
                    ids.append(got[0].id)
                assert len(set(ids)) == 1

    run(body(), timeout=90)


def test_a_redis_restart_loses_no_event_after_recovery() -> None:
    async def body() -> None:
        async with cluster(2) as (redis, upstream, nodes), httpx.AsyncClient(timeout=10) as client:
            feed = Feed(upstream, "/feed/r")
            async with contextlib.AsyncExitStack() as stack:
                subs = await subscribe_all(stack, client, nodes, "/feed/r")
                first = [await sub.next_event() for sub in subs]
                assert {value(e) for e in first} == {0}
                # Redis goes away (no persistence: it comes back empty).
                await asyncio.to_thread(redis.stop)
                beats = [len(sub.parser.comments) for sub in subs]
                feed.set(1)  # a change while Redis is down: published once it is back
                await asyncio.sleep(1.5)
                # Subscribers stay connected and get heartbeats (heartbeat is 0.5 s).
                assert all(not sub.closed.is_set() for sub in subs)
                now = [len(sub.parser.comments) for sub in subs]
                assert all(a > b for a, b in zip(now, beats, strict=True)), (beats, now)
                await asyncio.to_thread(redis.start)
                got = [await until(sub, 1, timeout=20) for sub in subs]
                for events in got:
                    assert [value(e) for e in events] == [1]
                    assert events[0].id > first[0].id
                # Every change after recovery reaches everyone, once, in order.
                seen: list[list[SseEvent]] = [[] for _ in subs]
                for n in (2, 3, 4):
                    feed.set(n)
                    for i, sub in enumerate(subs):
                        seen[i] += await until(sub, n)
                for events in seen:
                    assert [value(e) for e in events] == [2, 3, 4]
                    ids = [e.id for e in events]
                    assert ids == sorted(ids) and len(set(ids)) == 3
                assert [e.id for e in seen[0]] == [e.id for e in seen[1]]
                assert all("unreachable" in node.log() for node in nodes)

    run(body(), timeout=90)


def test_a_client_resumes_on_another_process_with_its_last_event_id() -> None:
    async def body() -> None:
        async with cluster(2) as (_redis, upstream, nodes), httpx.AsyncClient(timeout=10) as client:
            feed = Feed(upstream, "/feed/m")
            first, second = nodes
            async with sse(client, first.url("/feed/m")) as keeper:  # keeps the stream polled
                e0 = await keeper.next_event()
                async with sse(client, first.url("/feed/m")) as sub:
                    assert (await sub.next_event()).id == e0.id
                    feed.set(1)
                    (e1,) = await until(sub, 1)
                # The client went away; the stream keeps changing.
                for n in (2, 3):
                    feed.set(n)
                    await until(keeper, n)
                # It comes back on the other process, which has never had this stream.
                assert not await asyncio.to_thread(second.streams)
                headers = {"last-event-id": e1.id}
                async with sse(client, second.url("/feed/m"), headers) as back:
                    missed = [await back.next_event(), await back.next_event()]
                    assert [value(e) for e in missed] == [2, 3]
                    assert all(e.event == e0.event != "reset" for e in missed), missed
                    assert missed[0].id > e1.id > e0.id
                    assert await back.no_event(0.6)  # exactly the missed ones, no repeat
                    feed.set(4)
                    assert [value(e) for e in await until(back, 4)] == [4]

    run(body(), timeout=60)


def test_redis_unreachable_at_start_serves_logs_and_recovers(
    certs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body() -> None:
        redis = RedisServer()  # its port, not started yet
        caplog.set_level(logging.INFO, logger="bridge.broker")
        try:
            async with Upstream() as upstream, httpx.AsyncClient(timeout=10) as client:
                feed = Feed(upstream, "/feed/u")
                routes = f"""\
broker: "{redis.url}?lease={LEASE}s"
routes:
  - path: /feed/{{name}}
    stream: {{upstream: app, poll: "/feed/{{name}}", every: 0.2s, heartbeat: 0.3s}}
  - path: /plain
    upstream: app
"""
                text = config_text(routes, upstream_url=upstream.url, certs=certs)
                async with running_bridge(text, certs) as b:
                    async with sse(client, b.url("http", "/feed/u")) as sub:
                        assert sub.status == 200
                        assert await sub.no_event(1.0)  # nobody may lead without Redis
                        assert len(sub.parser.comments) >= 2  # but heartbeats keep it open
                        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
                        assert any("unreachable" in r.getMessage() for r in errors)
                        upstream.set_json("/plain", {"ok": 1})
                        plain = await client.get(b.url("http", "/plain"))
                        assert plain.status_code == 200  # the proxy serves meanwhile
                        await asyncio.to_thread(redis.start)
                        event = await sub.next_event(timeout=20)
                        assert value(event) == 0
                        feed.set(1)
                        assert [value(e) for e in await until(sub, 1)] == [1]
                    messages = [r.getMessage() for r in caplog.records]
                    assert any("reachable again" in m or "connected" in m for m in messages)
        finally:
            await asyncio.to_thread(redis.stop)

    run(body(), timeout=60)


def test_poll_failures_reach_plain_gets_on_every_process() -> None:
    async def body() -> None:
        async with cluster(2) as (_redis, upstream, nodes), httpx.AsyncClient(timeout=30) as client:
            # Retry-After: the leader's next attempt is far off; only what it already told
            # Redis can reach the follower in time.
            upstream.set_status("/feed/f", 503, headers=[retry_after(30)])
            leader_node, follower = nodes
            first = await client.get(leader_node.url("/feed/f"))
            assert first.status_code in (502, 504)  # the leader's own poll failed
            assert await asyncio.to_thread(leader_node.leads)
            # The follower does not poll; it hears of the failure through Redis and answers
            # at once, not after waiting out its 10 s for a first state.
            started = time.monotonic()
            second = await client.get(follower.url("/feed/f"))
            assert second.status_code == first.status_code
            assert time.monotonic() - started < 5.0
            assert not await asyncio.to_thread(follower.leads)
            assert upstream.count("/feed/f") >= 1

    run(body(), timeout=60)


def test_the_leader_keeps_polling_while_another_process_is_interested() -> None:
    async def body() -> None:
        async with cluster(2) as (_redis, upstream, nodes), httpx.AsyncClient(timeout=10) as client:
            feed = Feed(upstream, "/feed/l")
            first, second = nodes
            async with sse(client, first.url("/feed/l")) as sub:
                await sub.next_event()
                assert await asyncio.to_thread(first.leads)
                async with sse(client, second.url("/feed/l")) as other:
                    await other.next_event()
                # Only the leader's process has a subscriber left, then none: its own linger
                # (5 s) ends, but the other process's interest entry has not expired yet...
            async with sse(client, second.url("/feed/l")) as other:
                await other.next_event()
                await asyncio.sleep(settings.STREAM_LINGER + 1.0)
                # ...and is refreshed while it has a subscriber: the leader keeps polling for
                # it instead of handing the stream over.
                assert await asyncio.to_thread(first.leads)
                assert not await asyncio.to_thread(second.leads)
                feed.set(1)
                assert [value(e) for e in await until(other, 1)] == [1]

    run(body(), timeout=60)


def test_a_stalled_process_catches_up_from_the_stream_on_a_patch_stream() -> None:
    async def body() -> None:
        async with cluster(2) as (_redis, upstream, nodes), httpx.AsyncClient(timeout=10) as client:
            feed = Feed(upstream, "/feed/p")
            async with contextlib.AsyncExitStack() as stack:
                subs = await subscribe_all(stack, client, nodes, "/patch/p")
                assert [(await s.next_event()).event for s in subs] == ["snapshot", "snapshot"]
                lead = await leader(nodes)
                index = 1 - nodes.index(lead)
                follower, late = nodes[index], subs[index]
                assert follower.proc is not None
                # The follower stops reading Redis for a while (SIGSTOP) as the stream moves on.
                follower.proc.send_signal(signal.SIGSTOP)
                try:
                    for n in (1, 2, 3):
                        feed.set(n)
                        await until_patch(subs[1 - index], n)
                finally:
                    follower.proc.send_signal(signal.SIGCONT)
                # It catches up from the stream: every patch, in order, none repeated or lost.
                events = [await late.next_event(timeout=15) for _ in range(3)]
                assert [e.event for e in events] == ["patch"] * 3
                ids = [e.id for e in events]
                assert ids == sorted(ids) and len(set(ids)) == 3
                assert [json.loads(e.data) for e in events] == [
                    [{"op": "replace", "path": "/n", "value": n}] for n in (1, 2, 3)
                ]
                assert await late.no_event(0.5)
                # A plain GET on the follower answers the whole state the leader computed.
                plain = await client.get(follower.url("/patch/p"))
                assert plain.status_code == 200 and plain.json() == {"n": 3}

    run(body(), timeout=60)


async def until_patch(sub: SseSubscriber, wanted: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        event = await sub.next_event(timeout=max(0.1, deadline - time.monotonic()))
        if event.event == "patch" and json.loads(event.data)[-1].get("value") == wanted:
            return


def test_a_foreign_entry_in_the_stream_is_skipped_and_the_stream_goes_on() -> None:
    async def body() -> None:
        async with cluster(2) as (redis, upstream, nodes), httpx.AsyncClient(timeout=10) as client:
            feed = Feed(upstream, "/feed/j")
            async with contextlib.AsyncExitStack() as stack:
                subs = await subscribe_all(stack, client, nodes, "/feed/j")
                first = [await s.next_event() for s in subs]
                (stream,) = await asyncio.to_thread(nodes[0].streams)
                # Something else writes to bridge's stream, with a later id than bridge's own.
                reply = redis.command("XADD", f"bridge:{{{stream['key']}}}:items", "*", "junk", "1")
                assert not reply.startswith("-"), reply
                feed.set(1)
                for sub in subs:
                    got = await until(sub, 1, timeout=20)
                    assert [value(e) for e in got] == [1]
                    assert got[0].id > first[0].id
                assert all("malformed stream entry" in node.log() for node in nodes)

    run(body(), timeout=60)
