"""The admin listener: /metrics parsed by prometheus_client's own parser, /streams against what
the test itself set up, /readyz and /healthz."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge import settings
from tests.support.harness import config_text, run, running_bridge
from tests.support.origin import Origin
from tests.support.subscribers import H2SseConnection, sse, ws_http1

ROUTES = """\
routes:
  - path: /prices/{symbol}
    stream:
      upstream: app
      poll: /api/price?s={symbol}
      every: 100ms
  - path: /down
    stream:
      upstream: app
      poll: /api/down
      every: 100ms
  - path: /{rest*}
    upstream: app
"""


@pytest.fixture(autouse=True)
def short_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "STREAM_LINGER", 0.3)


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(admin: httpx.AsyncClient) -> Samples:
    response = await admin.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    out: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def eventually(check: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    assert await check()


def test_metrics_and_streams_match_what_is_connected(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            origin.status("/api/down", 500)
            text = config_text(
                ROUTES, upstream_url=origin.url, certs=certs, extra_listen='admin: "127.0.0.1:0"'
            )
            async with running_bridge(text, certs) as b:
                admin = httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{b.ports['admin']}", timeout=5
                )
                client = httpx.AsyncClient(verify=b.client_ssl(), http2=True, timeout=5)
                assert (await admin.get("/healthz")).text == "ok\n"
                assert (await admin.get("/readyz")).status_code == 200
                for _ in range(3):
                    assert (await client.get(b.url("https", "/echo"))).status_code == 200
                assert (await client.get(b.url("http", "/echo"))).status_code == 200
                mux = H2SseConnection()
                await mux.open(b.ports["https"], b.client_ssl(("h2",)))
                h2_subs = [await mux.subscribe("/prices/A") for _ in range(2)]
                for sub in h2_subs:
                    await sub.next_event()
                ws_url = b.url("https", "/prices/A").replace("https", "wss")
                async with (
                    ws_http1(ws_url, b.client_ssl(("http/1.1",))) as ws,
                    httpx.AsyncClient(verify=b.client_ssl(), http2=False, timeout=5) as h1,
                    sse(h1, b.url("https", "/down")),
                ):
                    await ws.next_event()
                    origin.set("/api/price", {"p": 2})
                    for sub in h2_subs:
                        await sub.next_event()
                    await ws.next_event()

                    async def down_failed() -> bool:
                        found = await admin.get("/streams")
                        return any(c["errors"] > 0 for c in found.json() if c["route"] == "/down")

                    await eventually(down_failed)
                    streams = {c["route"]: c for c in (await admin.get("/streams")).json()}
                    samples = await scrape(admin)

                prices, down = streams["/prices/{symbol}"], streams["/down"]
                assert prices["target"] == "/api/price?s=A" and prices["leader"] is True
                assert prices["params"] == {"symbol": "A"}
                assert prices["subscribers"] == 3
                assert prices["by_protocol"] == {"sse/h2": 2, "websocket/http/1.1": 1}
                assert prices["history"] == 2 and prices["state"] == "polling"
                # Times are ISO 8601 with their zone (UTC), to the millisecond.
                polled = datetime.fromisoformat(prices["last_poll_at"])
                assert polled.utcoffset() == timedelta(0)
                assert abs(polled.timestamp() - time.time()) < 60
                # A change is published just after the answer of the poll that brought it is
                # counted (the poller observes, then publishes): so at most a moment after
                # the last poll, and never long before the newest ones.
                changed = datetime.fromisoformat(prices["last_change_at"])
                assert changed - polled < timedelta(seconds=1)
                assert polled - changed < timedelta(seconds=30)
                assert prices["last_error"] is None and prices["backoff"]["failures"] == 0
                assert down["subscribers"] == 1 and down["by_protocol"] == {"sse/http/1.1": 1}
                assert down["state"] == "backoff" and down["history"] == 0
                assert down["last_error"] == "upstream answered 500"
                assert down["backoff"]["retry_at"] >= down["last_error_at"] > "2026"

                route = "/prices/{symbol}"
                assert value(samples, "bridge_requests_total", route="/{rest*}", kind="http",
                             code="2xx") == 4  # fmt: skip
                assert value(samples, "bridge_request_duration_seconds_count",
                             route="/{rest*}") == 4  # fmt: skip
                assert value(samples, "bridge_stream_subscribers", route=route, kind="sse",
                             protocol="h2") == 2  # fmt: skip
                assert value(samples, "bridge_stream_subscribers", route=route,
                             kind="websocket", protocol="http/1.1") == 1  # fmt: skip
                assert value(samples, "bridge_stream_channels") == 2
                assert value(samples, "bridge_stream_events_total", route=route) == 2
                # the second change reached all three subscribers; the first state reached each
                # as its catch-up, not from the fan-out (a new stream's subscribers are let in
                # once its first poll has answered)
                assert value(samples, "bridge_stream_deliveries_total", route=route) == 3
                polls = value(samples, "bridge_upstream_polls_total", route=route)
                assert polls >= 2
                assert value(samples, "bridge_upstream_poll_duration_seconds_count",
                             route=route) == polls  # fmt: skip
                assert value(samples, "bridge_upstream_errors_total", route="/down") >= 1
                assert value(samples, "bridge_upstream_errors_total", route=route) == 0
                assert value(samples, "bridge_connections", protocol="h2") >= 2
                assert value(samples, "bridge_connections", protocol="http/1.1") >= 2
                assert value(samples, "bridge_reloads_total", outcome="ok") == 0
                assert value(samples, "bridge_process_resident_memory_bytes") > 0
                assert value(samples, "bridge_process_open_fds") > 0

                # Everyone leaves; the channels stop, and the counters do not go down.
                await mux.close()
                await client.aclose()

                async def stopped() -> bool:
                    return (await admin.get("/streams")).json() == []

                await eventually(stopped)
                after = await scrape(admin)
                assert value(after, "bridge_stream_channels") == 0
                assert value(after, "bridge_stream_subscribers", route=route, kind="sse",
                             protocol="h2") == 0  # fmt: skip
                assert value(after, "bridge_upstream_polls_total", route=route) >= polls
                assert value(after, "bridge_stream_events_total", route=route) == 2
                assert value(after, "bridge_requests_total", route=route, kind="sse",
                             code="2xx") == 2  # fmt: skip
                # The HTTP/1.1 upgrade ended 101: its own label, not "1xx" (interim answers).
                assert value(after, "bridge_requests_total", route=route, kind="websocket",
                             code="101") == 1  # fmt: skip
                await admin.aclose()

    run(body())


def test_admin_refuses_other_methods_and_paths(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            text = config_text(
                ROUTES, upstream_url=origin.url, certs=certs, extra_listen='admin: "127.0.0.1:0"'
            )
            async with running_bridge(text, certs) as b:
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{b.ports['admin']}", timeout=5
                ) as admin:
                    assert (await admin.post("/metrics")).status_code == 405
                    assert (await admin.get("/nope")).status_code == 404
                    assert json.loads((await admin.get("/streams")).text) == []
                    b.bridge.ready = False  # what stop() does first
                    assert (await admin.get("/readyz")).status_code == 503

    run(body())


def test_push_counters_survive_a_reload(certs: Path) -> None:
    from tests.e2e.test_push import H2Page, push_site

    async def body() -> None:
        async with push_site(certs) as (_, b):
            page = H2Page()
            await page.load(b.ports["https"], b.client_ssl(("h2",)))
            assert len(page.pushed_paths) == 2
            bridge = b.bridge
            from bridge.ops.metrics import registry_for, render

            registry = registry_for(bridge, bridge.site)
            text = render(registry).decode()
            assert "bridge_pushes_promised_total 2.0" in text, text
            assert await bridge.reload()  # a new page handler, starting at zero
            text = render(registry).decode()
            assert "bridge_pushes_promised_total 2.0" in text, text

    run(body())
