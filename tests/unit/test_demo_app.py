"""The embedded demo app (`bridge demo`'s upstream), over real loopback HTTP."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import httpx

from bridge.demo.app import price, start_demo_app

STEP = 5.0


def run(body: Callable[[httpx.AsyncClient], Awaitable[None]], timeout: float = 30.0) -> None:
    async def main() -> None:
        async with demo() as http:
            await body(http)

    asyncio.run(asyncio.wait_for(main(), timeout))


@asynccontextmanager
async def demo() -> AsyncIterator[httpx.AsyncClient]:
    server = await start_demo_app()
    try:
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base, timeout=STEP) as http:
            yield http
    finally:
        await server.stop()


def test_page_links_its_assets() -> None:
    async def body(http: httpx.AsyncClient) -> None:
        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "<title>bridge demo</title>" in page.text
        assert 'href="/static/app.css"' in page.text
        assert 'src="/static/app.js"' in page.text
        again = await http.get("/", headers={"if-none-match": page.headers["etag"]})
        assert again.status_code == 304 and again.content == b""
        head = await http.head("/")
        assert head.content == b"" and head.headers["content-length"] == str(len(page.content))

    run(body)


def test_static_assets_have_types_and_etags() -> None:
    async def body(http: httpx.AsyncClient) -> None:
        css = await http.get("/static/app.css")
        assert css.status_code == 200
        assert css.headers["content-type"] == "text/css; charset=utf-8"
        assert ".price" in css.text
        js = await http.get("/static/app.js")
        assert js.headers["content-type"] == "text/javascript; charset=utf-8"
        # The page's logic: the stream behind bridge, polling as the fallback.
        assert "EventSource" in js.text and '"/prices/DEMO"' in js.text
        assert '"/api/prices?symbol=DEMO"' in js.text
        for asset in (css, js):
            tag = asset.headers["etag"]
            url = str(asset.request.url)
            assert (await http.get(url, headers={"if-none-match": tag})).status_code == 304
            assert (await http.get(url, headers={"if-none-match": '"x"'})).status_code == 200
        assert (await http.get("/static/missing.js")).status_code == 404
        assert (await http.get("/static/%2e%2e/app.py")).status_code == 404
        assert (await http.get("/static/../app.py")).status_code == 404

    run(body)


def test_price_is_deterministic_and_moves_every_second() -> None:
    assert price("DEMO", 1_700_000_000.2) == price("DEMO", 1_700_000_000.9)
    assert price("DEMO", 1_700_000_000) != price("ACME", 1_700_000_000)
    values = [price("DEMO", 1_700_000_000 + s) for s in range(2000)]
    assert all(a != b for a, b in itertools.pairwise(values))
    assert all(90 < v < 220 for v in values)


def test_prices_change_over_time_with_304_between() -> None:
    async def body(http: httpx.AsyncClient) -> None:
        first = await http.get("/api/prices", params={"symbol": "DEMO"})
        assert first.status_code == 200
        data = first.json()
        assert data["symbol"] == "DEMO" and isinstance(data["price"], float)
        datetime.fromisoformat(data["time"])
        assert first.headers["content-type"] == "application/json"

        # Within one second the answer is the same representation: 304. The second may turn
        # between two requests, so try a few times.
        statuses = []
        for _ in range(5):
            current = await http.get("/api/prices?symbol=DEMO")
            conditional = await http.get(
                "/api/prices?symbol=DEMO", headers={"if-none-match": current.headers["etag"]}
            )
            statuses.append(conditional.status_code)
            if conditional.status_code == 304:
                break
        assert 304 in statuses

        # A bounded wait until the price moves (it does every second).
        changed = None
        for _ in range(40):
            await asyncio.sleep(0.1)
            later = (await http.get("/api/prices?symbol=DEMO")).json()
            if later["time"] != data["time"]:
                changed = later
                break
        assert changed is not None, "the price did not change within 4 s"
        assert changed["price"] != data["price"]
        stale = await http.get(
            "/api/prices?symbol=DEMO", headers={"if-none-match": first.headers["etag"]}
        )
        assert stale.status_code == 200
        other = (await http.get("/api/prices?symbol=ACME")).json()
        assert other["symbol"] == "ACME"

    run(body)


def test_updates_long_poll_cursor() -> None:
    async def body(http: httpx.AsyncClient) -> None:
        now = (await http.get("/api/updates")).json()
        seq = now["seq"]
        assert isinstance(seq, int) and "DEMO" in now["prices"]

        behind = (await http.get(f"/api/updates?since={seq - 5}")).json()
        assert behind["seq"] >= seq  # at once: the cursor is already past `since`

        moved = (await http.get(f"/api/updates?since={seq}&timeout=4")).json()
        assert moved["seq"] > seq  # held until the second turned

        ahead = seq + 1000
        quiet = await http.get(f"/api/updates?since={ahead}&timeout=0.2")
        assert quiet.status_code == 200 and quiet.json()["seq"] < ahead  # timed out, no change
        assert (await http.get("/api/updates?since=soon")).status_code == 400

    run(body)


def test_health_and_errors() -> None:
    async def body(http: httpx.AsyncClient) -> None:
        health = await http.get("/healthz")
        assert (health.status_code, health.text) == (200, "ok\n")
        assert (await http.get("/nope")).status_code == 404
        posted = await http.post("/api/prices", content=b"{}")
        assert posted.status_code == 405 and posted.headers["allow"] == "GET, HEAD"

    run(body)


def test_json_answers_are_compact_objects() -> None:
    async def body(http: httpx.AsyncClient) -> None:
        raw: Any = json.loads((await http.get("/api/prices")).content)
        assert set(raw) == {"symbol", "price", "time", "trades"}

    run(body)


def test_a_trade_moves_the_price_and_names_the_stream_it_changed() -> None:
    async def body(http: httpx.AsyncClient) -> None:
        before = (await http.get("/api/prices?symbol=ACME")).json()
        traded = await http.post("/api/trade?symbol=ACME")
        assert traded.status_code == 200 and traded.json() == {"symbol": "ACME", "trades": 1}
        assert traded.headers["bridge-notify"] == "/prices/ACME"
        after = (await http.get("/api/prices?symbol=ACME")).json()
        assert (before["trades"], after["trades"]) == (0, 1)
        assert (await http.get("/api/trade")).status_code == 405
        assert (await http.post("/api/trade?symbol=a/b")).status_code == 400

    run(body)
