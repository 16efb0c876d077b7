"""Streams end to end: one upstream poll fanned out to many SSE subscribers over real TLS."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import time
from pathlib import Path

import httpx
import pytest

from bridge import settings
from tests.support.harness import config_text, require_tool, run, running_bridge
from tests.support.origin import Origin
from tests.support.subscribers import H2SseConnection, sse


def stream_routes(**fields: str) -> str:
    spec = {"upstream": "app", "poll": "/api/price?s={symbol}", "every": "300ms", "event": "price"}
    spec.update(fields)
    body = "\n".join(f"      {k}: {v}" for k, v in spec.items())
    return f"routes:\n  - path: /prices/{{symbol}}\n    stream:\n{body}\n  - path: /{{rest*}}\n    upstream: app\n"


def client(b, http2: bool) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    return httpx.AsyncClient(
        verify=b.client_ssl(),
        http2=http2,
        timeout=20,
        limits=httpx.Limits(max_connections=200),
    )


@pytest.fixture(autouse=True)
def short_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "STREAM_LINGER", 0.5)


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_fifty_subscribers_share_one_poller(certs: Path, http2: bool) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"price": 1})
            text = config_text(stream_routes(), upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b, client(b, False) as c:
                url = b.url("https", "/prices/ACME")
                mux = None
                if http2:
                    # all fifty multiplexed on one HTTP/2 connection
                    mux = H2SseConnection()
                    await mux.open(b.ports["https"], b.client_ssl(("h2",)))
                    subs = [await mux.subscribe("/prices/ACME") for _ in range(50)]
                    stack = contextlib_stack([])
                else:
                    stack = contextlib_stack(sse(c, url) for _ in range(50))
                async with stack as entered:
                    subs = subs if http2 else entered
                    assert {s.status for s in subs} == {200}
                    firsts = [await s.next_event() for s in subs]
                    assert {e.data for e in firsts} == {'{"price": 1}'}
                    assert {e.event for e in firsts} == {"price"}
                    polls_before = origin.count("/api/price")
                    await asyncio.sleep(1.5)
                    polls = origin.count("/api/price") - polls_before
                    assert 2 <= polls <= 8, polls  # ~one per 300 ms, not one per subscriber
                    origin.set("/api/price", {"price": 2})
                    seconds = [await s.next_event() for s in subs]
                    assert {e.data for e in seconds} == {'{"price": 2}'}
                    assert len({e.id for e in seconds}) == 1
                    assert seconds[0].id != firsts[0].id
                    # conditional polling: the origin saw our If-None-Match
                    assert any(r.header("if-none-match") for r in origin.requests)
                    # a newcomer gets the current state at once
                    async with sse(c, url) as late:
                        assert late.headers["content-type"].startswith("text/event-stream")
                        assert late.headers["cache-control"] == "no-cache"
                        event = await late.next_event(timeout=1.0)
                        assert event.data == '{"price": 2}'
                if mux is not None:
                    await mux.close()
                # everyone left: after the linger the poller stops
                await asyncio.sleep(1.5)
                settled = origin.count("/api/price")
                await asyncio.sleep(1.0)
                assert origin.count("/api/price") == settled
                log = [
                    json.loads(line)
                    for line in (b.directory / "access.log").read_text().splitlines()
                ]
                streams = [e for e in log if e["kind"] in ("sse", "websocket")]
                assert len(streams) == 51
                assert all(e["events"] >= 1 and e["bytes"] > 0 for e in streams)
                assert {e["protocol"] for e in streams} >= {"HTTP/1.1"}

    run(body())


class contextlib_stack:
    """Enter many async context managers, yield their values, exit them all."""

    def __init__(self, managers) -> None:  # type: ignore[no-untyped-def]
        import contextlib

        self.managers = list(managers)
        self.stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> list:  # type: ignore[type-arg]
        await self.stack.__aenter__()
        return [await self.stack.enter_async_context(m) for m in self.managers]

    async def __aexit__(self, *exc: object) -> None:
        await self.stack.__aexit__(*exc)


def test_resume_inside_and_outside_history(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"v": 0})
            text = config_text(stream_routes(history="3"), upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b, client(b, True) as c:
                url = b.url("https", "/prices/X")
                async with sse(c, url) as s:
                    first = await s.next_event()
                # two changes while away
                for v in (1, 2):
                    origin.set("/api/price", {"v": v})
                    await asyncio.sleep(0.8)
                async with sse(c, url, {"last-event-id": first.id or ""}) as s:
                    missed = [await s.next_event(), await s.next_event()]
                    assert [e.data for e in missed] == ['{"v": 1}', '{"v": 2}']
                    assert await s.no_event(0.5)  # exactly those, nothing more
                    last = missed[-1].id
                # the query form, for EventSource reconnects that cannot set headers
                async with sse(c, url + f"?last_event_id={first.id}") as s:
                    assert (await s.next_event()).data == '{"v": 1}'
                # far behind: history holds 3, so the current state arrives as `reset`
                for v in range(3, 8):
                    origin.set("/api/price", {"v": v})
                    await asyncio.sleep(0.5)
                async with sse(c, url, {"last-event-id": last or ""}) as s:
                    event = await s.next_event()
                    assert event.event == "reset"
                    assert event.data == '{"v": 7}'
                # unknown ids (another epoch) also reset
                async with sse(c, url, {"last-event-id": "1-1"}) as s:
                    assert (await s.next_event()).event == "reset"

    run(body())


def test_longpoll_passes_the_cursor_back(certs: Path) -> None:
    state = {"seq": 1, "text": "a"}
    changed = asyncio.Event()

    async def updates(request):  # type: ignore[no-untyped-def]
        since = request.query.get("since")
        if since is not None and int(since) >= state["seq"]:
            try:
                await asyncio.wait_for(changed.wait(), float(request.query.get("t", "2")))
            except TimeoutError:
                pass
        return 200, [(b"content-type", b"application/json")], json.dumps(state).encode()

    routes = """\
routes:
  - path: /updates
    stream:
      upstream: app
      poll: /updates?t=2
      longpoll: {cursor: seq, param: since, timeout: 3s}
      emit: patch
"""

    async def body() -> None:
        nonlocal changed
        async with Origin() as origin:
            origin.route("/updates", updates)
            text = config_text(routes, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b, client(b, False) as c:
                async with sse(c, b.url("https", "/updates")) as s:
                    first = await s.next_event()
                    assert first.event == "snapshot"
                    assert json.loads(first.data) == {"seq": 1, "text": "a"}
                    await asyncio.sleep(0.3)
                    state.update(seq=2, text="b")
                    changed.set()
                    changed = asyncio.Event()
                    patch = await s.next_event(timeout=5)
                    assert patch.event == "patch"
                    ops = json.loads(patch.data)
                    assert {"op": "replace", "path": "/text", "value": "b"} in ops
                targets = [r.target for r in origin.requests]
                assert targets[0] == "/updates?t=2"
                assert "/updates?t=2&since=1" in targets
                assert "/updates?t=2&since=2" in targets

    run(body())


def test_upstream_500s_back_off_and_keep_subscribers(certs: Path) -> None:
    mode = {"fail": False}

    async def flaky(request):  # type: ignore[no-untyped-def]
        if mode["fail"]:
            return 500, [(b"content-type", b"text/plain")], b"oops"
        return 200, [(b"content-type", b"application/json")], b'{"ok": 1}'

    async def body() -> None:
        async with Origin() as origin:
            origin.route("/api/price", flaky)
            text = config_text(
                stream_routes(every="100ms", heartbeat="300ms"),
                upstream_url=origin.url,
                certs=certs,
            )
            async with running_bridge(text, certs) as b, client(b, True) as c:
                async with sse(c, b.url("https", "/prices/A")) as s:
                    assert (await s.next_event()).data == '{"ok": 1}'
                    mode["fail"] = True
                    await asyncio.sleep(0.15)
                    start = origin.count("/api/price")
                    comments = len(s.parser.comments)
                    # 1 s doubling with full jitter: a handful of polls, not one per 100 ms
                    assert await s.no_event(2.5)  # and no error event either
                    assert origin.count("/api/price") - start <= 8
                    assert not s.closed.is_set()
                    assert len(s.parser.comments) - comments >= 4  # heartbeats kept flowing

    run(body())


def test_retry_after_is_honoured_and_subscribers_see_the_recovery(certs: Path) -> None:
    mode = {"fail": False, "v": 1}
    failed_at: list[float] = []

    async def flaky(request):  # type: ignore[no-untyped-def]
        if mode["fail"]:
            failed_at.append(time.monotonic())
            return 503, [(b"retry-after", b"2")], b"down"
        body = b'{"v": %d}' % mode["v"]
        return 200, [(b"content-type", b"application/json")], body

    async def body() -> None:
        async with Origin() as origin:
            origin.route("/api/price", flaky)
            text = config_text(
                stream_routes(every="100ms", heartbeat="300ms"),
                upstream_url=origin.url,
                certs=certs,
            )
            async with running_bridge(text, certs) as b, client(b, True) as c:
                async with sse(c, b.url("https", "/prices/A")) as s:
                    assert (await s.next_event()).data == '{"v": 1}'
                    mode["fail"] = True
                    assert await s.no_event(4.6)
                    # Backoff alone retries within 1 s of the first failure; Retry-After: 2
                    # replaces every delay
                    assert len(failed_at) >= 2, failed_at
                    gaps = [b - a for a, b in itertools.pairwise(failed_at)]
                    assert all(1.9 <= g <= 3.0 for g in gaps), gaps
                    assert len(s.parser.comments) >= 5 and not s.closed.is_set()
                    mode.update(fail=False, v=2)
                    event = await s.next_event(timeout=5)  # same connection, after recovery
                    assert event.data == '{"v": 2}'

    run(body())


def test_connection_refused_backs_off(certs: Path) -> None:
    async def body() -> None:
        origin = Origin()
        await origin.__aenter__()
        origin.json("/api/price", {"x": 1})
        text = config_text(
            stream_routes(every="100ms", heartbeat="200ms"), upstream_url=origin.url, certs=certs
        )
        await origin.close()
        async with running_bridge(text, certs) as b, client(b, False) as c:
            async with sse(c, b.url("https", "/prices/A")) as s:
                await asyncio.sleep(1.5)
                assert s.status == 200 and not s.closed.is_set()
                channel = next(iter(b.bridge.site.hub.channels.values()))  # type: ignore[union-attr]
                assert channel.errors >= 1
                assert channel.polls <= 5  # 1 s, 2 s ... backoff, not every 100 ms
                assert len(s.parser.comments) >= 1

    run(body())


def test_vary_isolates_users_and_credentials_never_leak(certs: Path) -> None:
    version = {"n": 1}

    async def per_user(request):  # type: ignore[no-untyped-def]
        user = request.header("x-user") or "nobody"
        body = json.dumps(
            {
                "n": version["n"],
                "user": user,
                "cookie": request.header("cookie"),
                "auth": request.header("authorization"),
            }
        )
        return 200, [(b"content-type", b"application/json")], body.encode()

    routes = stream_routes(vary="[x-user]")

    async def body() -> None:
        async with Origin() as origin:
            origin.route("/api/price", per_user)
            text = config_text(routes, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b, client(b, True) as c:
                url = b.url("https", "/prices/A")
                secret = {"cookie": "session=s3cret", "authorization": "Bearer t0ken"}
                async with (
                    sse(c, url, {"x-user": "alice", **secret}) as a,
                    sse(c, url, {"x-user": "bob", **secret}) as bob,
                ):
                    ea, eb = await a.next_event(), await bob.next_event()
                    nobody = {"cookie": None, "auth": None}
                    assert json.loads(ea.data) == {"n": 1, "user": "alice", **nobody}
                    assert json.loads(eb.data) == {"n": 1, "user": "bob", **nobody}
                    version["n"] = 2  # a change: each still sees only its own stream
                    ea, eb = await a.next_event(), await bob.next_event()
                    assert json.loads(ea.data) == {"n": 2, "user": "alice", **nobody}
                    assert json.loads(eb.data) == {"n": 2, "user": "bob", **nobody}
                    assert ea.id and eb.id
                    await asyncio.sleep(0.7)
                    assert await a.no_event(0.1) and await bob.no_event(0.1)
                    assert len(b.bridge.site.hub.channels) == 2  # type: ignore[union-attr]
                    users = {r.header("x-user") for r in origin.requests}
                    assert users == {"alice", "bob"}
                    assert all(r.header("cookie") is None for r in origin.requests)
                    assert all(r.header("authorization") is None for r in origin.requests)

    run(body())


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_plain_get_is_answered_from_the_snapshot(certs: Path, http2: bool) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 10})
            text = config_text(stream_routes(), upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b, client(b, http2) as c:
                url = b.url("https", "/prices/Z")
                r = await c.get(url)
                assert r.status_code == 200
                assert r.json() == {"p": 10}
                etag = r.headers["etag"]
                r = await c.get(url, headers={"if-none-match": etag})
                assert r.status_code == 304
                polls = origin.count("/api/price")
                for _ in range(20):
                    await c.get(url)
                assert origin.count("/api/price") - polls <= 3  # absorbed by bridge

                async def change() -> None:
                    await asyncio.sleep(0.5)
                    origin.set("/api/price", {"p": 11})

                changer = asyncio.create_task(change())
                r = await c.get(url, headers={"if-none-match": etag, "prefer": "wait=5"})
                await changer
                assert r.status_code == 200 and r.json() == {"p": 11}
                r2 = await c.get(
                    url, headers={"if-none-match": r.headers["etag"], "prefer": "wait=1"}
                )
                assert r2.status_code == 304

    run(body())


def test_slow_subscriber_is_bounded_and_does_not_delay_others(certs: Path) -> None:
    big = {"blob": "x" * 900_000}

    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {**big, "n": 0})
            text = config_text(
                "limits:\n  subscriber_buffer: 64KB\n  max_snapshot: 2MB\n"
                + stream_routes(every="100ms"),
                upstream_url=origin.url,
                certs=certs,
            )
            async with running_bridge(text, certs) as b, client(b, False) as c:
                port = b.ports["http"]
                import socket

                # a subscriber that never reads: a plain socket with a tiny receive buffer
                stalled_sock = socket.socket()
                stalled_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                stalled_sock.connect(("127.0.0.1", port))
                stalled_sock.sendall(
                    b"GET /prices/S HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
                )
                # the stalled reader never reads; a healthy subscriber alongside it
                async with sse(c, b.url("https", "/prices/S")) as healthy:
                    await healthy.next_event()
                    channel = next(iter(b.bridge.site.hub.channels.values()))  # type: ignore[union-attr]
                    for n in range(1, 15):
                        origin.set("/api/price", {**big, "n": n})
                        event = await healthy.next_event(timeout=5)
                        assert json.loads(event.data)["n"] == n
                    stalled = [s for s in channel.subscribers if s.lagged]
                    assert len(stalled) == 1
                    # bounded: at most the limit plus one item queued for the stalled client
                    assert stalled[0].sink.buffered() <= 64 * 1024 + 1_000_000
                    assert stalled[0].events < 14  # it was conflated, not sent everything
                stalled_sock.close()
                await asyncio.sleep(0.3)
                log = (b.directory / "access.log").read_text()
                assert '"lagged":true' in log

    run(body())


def test_a_change_bigger_than_the_buffer_across_one_connection_reaches_every_stream(
    certs: Path,
) -> None:
    """40 streams on one HTTP/2 connection, 2 KB events, a 16 KB `subscriber_buffer`: one
    change is 80 KB of frames written together at the end of the fan-out. That is no backlog,
    so no stream may lag for it: every stream gets every change, in order. (The streams served
    last once counted the batch as theirs, lagged at every change and missed them until the
    next heartbeat.)"""

    async def body() -> None:
        async with Origin() as origin:
            pad = "x" * 2000
            origin.json("/api/price", {"n": 0, "pad": pad})
            text = config_text(
                "limits:\n  subscriber_buffer: 16KB\n" + stream_routes(every="100ms"),
                upstream_url=origin.url,
                certs=certs,
            )
            async with running_bridge(text, certs) as b:
                mux = H2SseConnection()
                await mux.open(b.ports["https"], b.client_ssl(("h2",)))
                subs = [await mux.subscribe("/prices/A") for _ in range(40)]
                for sub in subs:
                    assert json.loads((await sub.next_event()).data)["n"] == 0
                for n in range(1, 6):
                    origin.set("/api/price", {"n": n, "pad": pad})
                    for sub in subs:
                        assert json.loads((await sub.next_event(timeout=5)).data)["n"] == n
                channel = next(iter(b.bridge.site.hub.channels.values()))  # type: ignore[union-attr]
                assert not [s for s in channel.subscribers if s.lagged]
                await mux.close()

    run(body())


def test_subscriber_limit_answers_503(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            routes = "limits:\n  max_subscribers_per_stream: 2\n" + stream_routes()
            text = config_text(routes, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b, client(b, False) as c:
                url = b.url("https", "/prices/L")
                async with sse(c, url), sse(c, url):
                    async with sse(c, url) as third:
                        assert third.status == 503
                        assert third.headers is not None and "retry-after" in third.headers
                    # the same over HTTP/2, on one multiplexed connection
                    mux = H2SseConnection()
                    await mux.open(b.ports["https"], b.client_ssl(("h2",)))
                    refused = await mux.subscribe("/prices/L")
                    assert refused.status == 503
                    await mux.close()

    run(body())


@pytest.mark.parametrize("version", ["--http1.1", "--http2"])
def test_curl_receives_the_stream(certs: Path, version: str) -> None:
    """`curl -N` sees each event while the stream is open (not at exit): the snapshot at once,
    then a change, over HTTP/1.1 (chunked) and HTTP/2."""
    curl = require_tool("curl")

    async def read_to(stdout: asyncio.StreamReader, needle: bytes, out: bytearray) -> None:
        while needle not in out:
            piece = await asyncio.wait_for(stdout.read(4096), 5)
            assert piece, f"curl ended before {needle!r}: {bytes(out)!r}"
            out += piece

    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": "curl"})
            text = config_text(stream_routes(), upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                proc = await asyncio.create_subprocess_exec(
                    curl,
                    "-sN",
                    version,
                    "--cacert",
                    str(b.ca),
                    "-H",
                    "Accept: text/event-stream",
                    "--max-time",
                    "20",  # only a safety net: the test ends curl itself
                    f"https://localhost:{b.ports['https']}/prices/C",
                    stdout=asyncio.subprocess.PIPE,
                )
                try:
                    assert proc.stdout is not None
                    out = bytearray()
                    await read_to(proc.stdout, b'event: price\ndata: {"p": "curl"}\n\n', out)
                    assert out.startswith(b"retry: ")
                    assert proc.returncode is None  # still connected
                    origin.set("/api/price", {"p": "changed"})
                    await read_to(proc.stdout, b'data: {"p": "changed"}\n\n', out)
                    assert proc.returncode is None
                finally:
                    if proc.returncode is None:
                        proc.kill()
                    await asyncio.wait_for(proc.wait(), 5)

    assert shutil.which(curl)
    run(body())
