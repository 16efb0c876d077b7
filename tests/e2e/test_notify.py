"""Notify (issue 22): `POST /notify` on the admin listener and the `Bridge-Notify` response
header make a slow-polling stream's change reach its subscribers at once; `data` makes a value
the next state without a poll. Real bridge, real loopback origin, real clients; "before the
interval" is asserted by counting the origin's polls, never by the wall clock."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge import settings
from tests.support.harness import config_text, run, running_bridge
from tests.support.origin import Origin, OriginRequest
from tests.support.subscribers import sse, ws_http1

TOKEN = "notify-token-0123456789abcdef"
AUTH = {"authorization": f"Bearer {TOKEN}"}
ROUTES = """\
routes:
  - path: /prices/{symbol}
    stream:
      upstream: app
      poll: /api/price?s={symbol}
      every: 30s
  - path: /mine
    stream:
      upstream: app
      poll: /api/mine
      every: 30s
      vary: [x-user]
  - path: /{rest*}
    upstream: app
"""
NOTIFY = """\
notify:
  token: "${BRIDGE_TEST_NOTIFY_TOKEN}"
"""


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_TEST_NOTIFY_TOKEN", TOKEN)


def bridge_text(origin: Origin, certs: Path, notify: bool = True) -> str:
    body = ROUTES + (NOTIFY if notify else "")
    return config_text(
        body, upstream_url=origin.url, certs=certs, extra_listen='admin: "127.0.0.1:0"'
    )


def client(b: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(verify=b.client_ssl(), timeout=20)


def admin(b: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{b.ports['admin']}", timeout=20)


def prices(origin: Origin) -> int:
    return origin.count("/api/price")


def test_notify_brings_the_change_before_the_interval(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            async with (
                running_bridge(bridge_text(origin, certs), certs) as b,
                client(b) as c,
                admin(b) as a,
            ):
                async with sse(c, b.url("https", "/prices/ACME")) as s:
                    assert (await s.next_event()).data == '{"p": 1}'
                    assert prices(origin) == 1  # every: 30s: the next poll is far off
                    origin.set("/api/price", {"p": 2})
                    # Without the token: refused, and nothing polls.
                    refused = await a.post("/notify", json={"path": "/prices/ACME"})
                    assert refused.status_code == 401
                    assert refused.headers["www-authenticate"].startswith("Bearer")
                    wrong = await a.post(
                        "/notify",
                        json={"path": "/prices/ACME"},
                        headers={"authorization": "Bearer " + TOKEN[:-1] + "x"},
                    )
                    assert wrong.status_code == 401
                    assert prices(origin) == 1
                    answer = await a.post("/notify", json={"path": "/prices/ACME"}, headers=AUTH)
                    assert answer.status_code == 202, answer.text
                    assert answer.json() == {"channels": 1}
                    event = await s.next_event(timeout=10)
                    assert event.data == '{"p": 2}'
                    # One poll brought it: the second, not an interval poll 30 s later.
                    assert prices(origin) == 2
                    # The route form reaches it too.
                    origin.set("/api/price", {"p": 3})
                    answer = await a.post(
                        "/notify", json={"route": "/prices/{symbol}"}, headers=AUTH
                    )
                    assert answer.json() == {"channels": 1}
                    assert (await s.next_event(timeout=10)).data == '{"p": 3}'
                    assert prices(origin) <= 3
                    # Visible: /streams and /metrics.
                    streams = (await a.get("/streams")).json()
                    assert streams[0]["last_notify_at"].endswith("+00:00")
                    samples = await scrape(a)
                    assert samples[("bridge_notifies_total", "endpoint", "accepted")] == 2
                    assert samples[("bridge_notifies_total", "endpoint", "unauthorized")] == 2
                    assert samples[("bridge_notify_polls_total", "/prices/{symbol}")] == 2
                    # Bad bodies: the reason, 400; nothing matching: 404.
                    for bad, why in (
                        (b"not json", "not JSON"),
                        (b"[1]", "object"),
                        (b'{"path": "/a", "route": "/b"}', "one of"),
                        (b'{"path": 7}', "string"),
                        (b'{"pathh": "/a"}', "unknown"),
                        (b'{"route": "/prices/{symbol}", "data": 1}', "data needs"),
                    ):
                        answer = await a.post("/notify", content=bad, headers=AUTH)
                        assert answer.status_code == 400, bad
                        assert why in answer.json()["error"], answer.json()
                    for missing in ({"path": "/prices/NONE"}, {"path": "/nowhere"}):
                        answer = await a.post("/notify", json=missing, headers=AUTH)
                        assert answer.status_code == 404, missing
                    huge = b'{"path": "/prices/ACME", "data": "' + b"x" * 2_000_000 + b'"}'
                    answer = await a.post("/notify", content=huge, headers=AUTH)
                    assert answer.status_code == 413
                    assert (await a.get("/notify")).status_code == 405
                log = [
                    json.loads(line)
                    for line in (b.directory / "access.log").read_text().splitlines()
                ]
                notes = [e for e in log if e["route"] == "/notify"]
                assert {e["status"] for e in notes} >= {202, 401, 400, 404, 413}
                assert all(e["note"].startswith("notify ") for e in notes)

    run(body())


async def scrape(a: httpx.AsyncClient) -> dict[tuple[str, ...], float]:
    """Samples by (name, label values in the order the family declares them)."""
    out: dict[tuple[str, ...], float] = {}
    order = ("route", "source", "outcome")
    for family in text_string_to_metric_families((await a.get("/metrics")).text):
        for sample in family.samples:
            values = [sample.labels[k] for k in order if k in sample.labels]
            out[(sample.name, *values)] = sample.value
    return out


def test_data_publish_reaches_sse_and_websocket_and_resumes(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            origin.json("/api/mine", {"m": 1})
            async with (
                running_bridge(bridge_text(origin, certs), certs) as b,
                client(b) as c,
                admin(b) as a,
            ):
                url = b.url("https", "/prices/ACME")
                ws_url = f"wss://127.0.0.1:{b.ports['https']}/prices/ACME"
                async with sse(c, url) as s, ws_http1(ws_url, b.client_ssl(("http/1.1",))) as w:
                    first = await s.next_event()
                    assert (await w.next_event()).id == first.id
                    answer = await a.post(
                        "/notify", json={"path": "/prices/ACME", "data": {"p": 7}}, headers=AUTH
                    )
                    assert answer.status_code == 202
                    pushed = await s.next_event(timeout=10)
                    assert json.loads(pushed.data) == {"p": 7}
                    by_ws = await w.next_event(timeout=10)
                    assert (by_ws.id, json.loads(by_ws.data)) == (pushed.id, {"p": 7})
                    assert pushed.id > first.id
                    # A string is the state as it is.
                    await a.post(
                        "/notify", json={"path": "/prices/ACME", "data": "closed"}, headers=AUTH
                    )
                    text = await s.next_event(timeout=10)
                    assert text.data == "closed"
                    assert (await w.next_event(timeout=10)).data == "closed"
                    assert prices(origin) == 1  # no poll for either
                # Resume by Last-Event-ID: what came after `first`, as for a polled change.
                headers = {"last-event-id": first.id}
                async with sse(c, url, headers=headers) as again:
                    assert json.loads((await again.next_event()).data) == {"p": 7}
                    assert (await again.next_event()).data == "closed"
                # `data` on a vary route: refused, one value would reach every user.
                async with sse(c, b.url("https", "/mine"), headers={"x-user": "u1"}) as mine:
                    await mine.next_event()
                    answer = await a.post(
                        "/notify", json={"path": "/mine", "data": {"m": 2}}, headers=AUTH
                    )
                    assert answer.status_code == 409
                    answer = await a.post("/notify", json={"path": "/mine"}, headers=AUTH)
                    assert answer.json() == {"channels": 1}

    run(body())


def test_response_header_notifies_and_never_reaches_the_client(certs: Path) -> None:
    async def orders(request: OriginRequest) -> Any:
        origin.set("/api/price", {"p": 2})
        headers = [(b"content-type", b"application/json"), (b"Bridge-Notify", b"/prices/ACME")]
        return 201, headers, b'{"order": 1}'

    async def body() -> None:
        nonlocal origin
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            origin.route("/api/orders", orders)
            async with (
                running_bridge(bridge_text(origin, certs), certs) as b,
                client(b) as c,
            ):
                async with sse(c, b.url("https", "/prices/ACME")) as s:
                    assert (await s.next_event()).data == '{"p": 1}'
                    posted = await c.post(b.url("https", "/api/orders"), json={"buy": "ACME"})
                    assert posted.status_code == 201
                    assert "bridge-notify" not in posted.headers
                    assert (await s.next_event(timeout=10)).data == '{"p": 2}'
                    assert prices(origin) == 2

    origin: Origin
    run(body())


def test_header_is_stripped_and_ignored_with_notify_off(certs: Path) -> None:
    async def orders(request: OriginRequest) -> Any:
        return 200, [(b"bridge-notify", b"/prices/ACME")], b"ok"

    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            origin.route("/api/orders", orders)
            text = bridge_text(origin, certs, notify=False)
            async with running_bridge(text, certs) as b, client(b) as c, admin(b) as a:
                async with sse(c, b.url("https", "/prices/ACME")) as s:
                    await s.next_event()
                    posted = await c.post(b.url("https", "/api/orders"))
                    assert "bridge-notify" not in posted.headers
                    answer = await a.post("/notify", json={"path": "/prices/ACME"}, headers=AUTH)
                    assert answer.status_code == 404  # notify is off: no such resource
                    assert await s.no_event(0.5)
                    assert prices(origin) == 1

    run(body())


def test_a_flood_of_notifies_is_coalesced(certs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gap = 0.1
    monkeypatch.setattr(settings, "NOTIFY_MIN_GAP", gap)

    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 0})
            async with (
                running_bridge(bridge_text(origin, certs), certs) as b,
                client(b) as c,
                admin(b) as a,
            ):
                async with sse(c, b.url("https", "/prices/ACME")) as s:
                    await s.next_event()
                    before = prices(origin)
                    loop = asyncio.get_running_loop()
                    started = loop.time()

                    async def sender(n: int) -> None:
                        for i in range(n):
                            origin.set("/api/price", {"p": i})
                            answer = await a.post(
                                "/notify", json={"path": "/prices/ACME"}, headers=AUTH
                            )
                            assert answer.status_code == 202

                    await asyncio.gather(*(sender(100) for _ in range(10)))  # 1,000 notifies
                    elapsed = loop.time() - started
                    await asyncio.sleep(gap * 3)  # the last coalesced poll, if one was owed
                    polls = prices(origin) - before
                    # One poll per gap at most, plus the one owed at the end.
                    assert 1 <= polls <= int(elapsed / gap) + 2, (polls, elapsed)
                    samples = await scrape(a)
                    assert samples[("bridge_notifies_total", "endpoint", "accepted")] == 1000

    run(body(), timeout=120)


CLUSTER_ROUTE = """\
  - path: /slow/{name}
    stream:
      upstream: app
      poll: /slow/{name}
      every: 30s
      heartbeat: 0.5s
notify:
  token: "${BRIDGE_TEST_NOTIFY_TOKEN}"
"""


def test_a_notify_to_a_follower_makes_the_leader_poll_once() -> None:
    from tests.support.cluster import BridgeNode, RedisServer, node_config
    from tests.support.upstream import Upstream

    async def leader(nodes: list[BridgeNode]) -> BridgeNode:
        for _ in range(200):  # bounded: 20 s
            leading = [n for n in nodes if await asyncio.to_thread(n.leads)]
            if len(leading) == 1:
                return leading[0]
            await asyncio.sleep(0.1)
        raise TimeoutError("no leader")

    async def body() -> None:
        redis = RedisServer()
        await asyncio.to_thread(redis.start)
        nodes: list[BridgeNode] = []
        try:
            async with Upstream() as upstream, httpx.AsyncClient(timeout=20) as c:
                upstream.set_json("/slow/a", {"n": 0})
                config = node_config(redis.url, upstream.port, extra=CLUSTER_ROUTE)
                for _ in range(3):
                    nodes.append(await asyncio.to_thread(BridgeNode, config))
                async with contextlib.AsyncExitStack() as stack:
                    subs = [
                        await stack.enter_async_context(sse(c, n.url("/slow/a"))) for n in nodes
                    ]
                    for s in subs:
                        assert json.loads((await s.next_event()).data) == {"n": 0}
                    lead = await leader(nodes)
                    follower = next(n for n in nodes if n is not lead)
                    notify = f"http://127.0.0.1:{follower.ports['admin']}/notify"
                    before = upstream.count("/slow/a")
                    upstream.set_json("/slow/a", {"n": 1})
                    answer = await c.post(notify, json={"path": "/slow/a"}, headers=AUTH)
                    assert answer.status_code == 202
                    assert answer.json() == {"channels": 1}
                    for s in subs:
                        assert json.loads((await s.next_event()).data) == {"n": 1}
                    assert upstream.count("/slow/a") == before + 1  # the leader, once
                    # `data` through a follower: the leader makes it the state, for everyone.
                    answer = await c.post(
                        notify, json={"path": "/slow/a", "data": {"n": 2}}, headers=AUTH
                    )
                    assert answer.status_code == 202
                    ids = set()
                    for s in subs:
                        event = await s.next_event()
                        assert json.loads(event.data) == {"n": 2}
                        ids.add(event.id)
                    assert len(ids) == 1
                    for s in subs:  # once: nothing more follows
                        assert await s.no_event(0.5)
                    assert upstream.count("/slow/a") == before + 1
        finally:
            for node in nodes:
                await asyncio.to_thread(node.stop)
            await asyncio.to_thread(redis.stop)

    run(body(), timeout=120)
