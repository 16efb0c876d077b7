"""Absorbed long-poll clients wait (issue 19, part 1): a legacy client's `GET /updates?since=N`
on a `longpoll:` stream is answered at once only when the stream's cursor has passed N;
otherwise bridge holds it until the next change or `longpoll.timeout`, bounded like
subscribers, and a shutdown answers what it holds."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
import urllib.request
from pathlib import Path

import httpx
import pytest

from bridge import settings
from tests.support.harness import config_text, run, running_bridge
from tests.support.upstream import Upstream


def routes(timeout: int, limits: str = "") -> str:
    return f"""\
{limits}routes:
  - path: /updates
    stream:
      upstream: app
      poll: /updates?timeout={timeout}
      longpoll: {{cursor: seq, param: since, timeout: {timeout}s}}
  - path: /{{rest*}}
    upstream: app
"""


@pytest.fixture(autouse=True)
def short_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "STREAM_LINGER", 0.5)


def legacy_client(url: str, seconds: float) -> tuple[int, list[int]]:
    """The app's own long-poll loop, stdlib only: ask with the last cursor seen, at once
    again after each answer, for `seconds`. Returns (requests made, cursors seen)."""
    requests = 0
    seen: list[int] = []
    since: int | None = None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and requests < 10_000:
        target = url if since is None else f"{url}?since={since}"
        requests += 1
        with urllib.request.urlopen(target, timeout=30) as answer:
            since = json.loads(answer.read())["seq"]
        seen.append(since)
    return requests, seen


def test_a_legacy_long_poll_loop_costs_requests_by_changes(certs: Path) -> None:
    async def body() -> None:
        async with Upstream() as up:
            up.longpoll("/updates", initial={"v": 0})
            text = config_text(routes(2), upstream_url=up.url, certs=certs)
            async with running_bridge(text, certs) as b:

                async def changes() -> None:
                    for v in (1, 2):
                        await asyncio.sleep(0.8)
                        up.publish("/updates", {"v": v})

                changer = asyncio.create_task(changes())
                url = b.url("http", "/updates")
                requests, seen = await asyncio.to_thread(legacy_client, url, 3.0)
                await changer
                assert requests <= 2 + 2, (requests, seen)  # changes + 2, not a spin
                assert seen[:3] == [0, 1, 2], seen  # and every change reached it
                # Upstream, the stream's own long-poll: the first request, one per change, and
                # one per 2 s timeout held without news; nothing per client request.
                assert up.count("/updates") <= 1 + 2 + 2, [r.target for r in up.requests]

    run(body())


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_a_held_get_answers_with_the_change(certs: Path, http2: bool) -> None:
    async def body() -> None:
        async with Upstream() as up:
            up.longpoll("/updates", initial={"v": 0})
            text = config_text(routes(20), upstream_url=up.url, certs=certs)
            async with (
                running_bridge(text, certs) as b,
                httpx.AsyncClient(verify=b.client_ssl(), http2=http2, timeout=30) as c,
            ):
                url = b.url("https", "/updates")
                first = await c.get(url)
                assert first.status_code == 200 and first.json()["seq"] == 0
                # A client behind the cursor is answered at once, with the current state.
                up.publish("/updates", {"v": 1})
                for _ in range(100):  # bounded: until the stream has the change
                    if (await c.get(url)).json()["seq"] == 1:
                        break
                    await asyncio.sleep(0.05)
                behind = await asyncio.wait_for(c.get(url, params={"since": "0"}), 5)
                assert behind.json() == {"seq": 1, "v": 1}
                # A client at the cursor is held: the change answers it, long before the
                # stream's 20 s long-poll timeout could.
                held = asyncio.create_task(c.get(url, params={"since": "1"}))
                await asyncio.sleep(0.5)
                assert not held.done()
                up.publish("/updates", {"v": 2})
                answer = await asyncio.wait_for(held, 10)
                assert answer.status_code == 200
                assert answer.json() == {"seq": 2, "v": 2}
                assert answer.headers["etag"]

    run(body())


def test_a_held_get_times_out_with_the_current_state(certs: Path) -> None:
    async def body() -> None:
        async with Upstream() as up:
            up.longpoll("/updates", initial={"v": 0})
            text = config_text(routes(1), upstream_url=up.url, certs=certs)
            async with (
                running_bridge(text, certs) as b,
                httpx.AsyncClient(verify=b.client_ssl(), timeout=30) as c,
            ):
                url = b.url("https", "/updates")
                held = asyncio.create_task(c.get(url, params={"since": "0"}))
                await asyncio.sleep(0.5)
                assert not held.done()  # held, not answered at once
                answer = await asyncio.wait_for(held, 10)
                assert answer.status_code == 200 and answer.json() == {"seq": 0, "v": 0}

    run(body())


def test_held_gets_are_bounded_and_a_shutdown_answers_them(certs: Path) -> None:
    async def body() -> None:
        async with Upstream() as up:
            up.longpoll("/updates", initial={"v": 0})
            limits = "limits:\n  max_subscribers: 2\n"
            text = config_text(routes(20, limits), upstream_url=up.url, certs=certs)
            trust = ssl.create_default_context(cafile=str(certs / "ca.crt"))
            async with httpx.AsyncClient(verify=trust, timeout=30) as c:
                async with running_bridge(text, certs) as b:
                    url = b.url("https", "/updates")
                    assert (await c.get(url)).status_code == 200
                    held = [
                        asyncio.create_task(c.get(url, params={"since": "0"})) for _ in range(2)
                    ]
                    await asyncio.sleep(0.5)
                    assert not any(task.done() for task in held)
                    refused = await c.get(url, params={"since": "0"})
                    assert refused.status_code == 503
                    assert int(refused.headers["retry-after"]) > 0
                    # A client the stream can answer at once is not held, so not refused.
                    up.publish("/updates", {"v": 1})
                    answers = await asyncio.wait_for(asyncio.gather(*held), 10)
                    assert [a.json()["seq"] for a in answers] == [1, 1]
                    held = [asyncio.create_task(c.get(url, params={"since": "1"}))]
                    await asyncio.sleep(0.5)
                    assert not held[0].done()
                # Shutdown: what bridge held is answered with the current state, not dropped.
                answer = await asyncio.wait_for(held[0], 10)
                assert answer.status_code == 200 and answer.json() == {"seq": 1, "v": 1}

    run(body())
