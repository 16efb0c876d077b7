"""Query strings end to end (docs/configuration.md "Query strings"), against a real loopback upstream: a
route's query template, a jQuery-style `_=` cache-buster, and a parameter the stream does not
read, which a plain GET passes through to the app unchanged and a subscription is refused for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from bridge import settings
from bridge.demo.httpserver import ServerRequest, ServerResponse
from tests.support.harness import config_text, run, running_bridge
from tests.support.subscribers import sse, ws_http2
from tests.support.upstream import Upstream

ROOT = Path(__file__).resolve().parents[2]

ROUTES = """\
routes:
  - path: /api/quotes?symbol={symbol}
    stream:
      upstream: app
      poll: /api/quotes?symbol={symbol}
      every: 100ms
      ignore_query: [_]
  - path: /api/quotes
    stream: {upstream: app, poll: /api/quotes, every: 100ms}
  - path: /{rest*}
    upstream: app
"""


@pytest.fixture(autouse=True)
def short_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "STREAM_LINGER", 0.5)


async def quotes(request: ServerRequest) -> ServerResponse:
    """The app: a quote per symbol (all of them without one), and what it was asked."""
    symbol = request.query.get("symbol", "*")
    return ServerResponse.json({"symbol": symbol, "app_saw": request.target})


def app() -> Upstream:
    up = Upstream()
    up.route("/api/quotes", quotes)
    return up


def polled(up: Upstream) -> list[str]:
    return [r.target for r in up.requests_to("/api/quotes")]


def test_the_query_template_picks_the_stream_and_the_cache_buster_is_ignored(
    certs: Path,
) -> None:
    async def body() -> None:
        async with app() as up:
            text = config_text(ROUTES, upstream_url=up.url, certs=certs)
            async with running_bridge(text, certs) as b:
                async with httpx.AsyncClient(verify=b.client_ssl(), timeout=10) as c:
                    r = await c.get(b.url("https", "/api/quotes?symbol=ACME"))
                    assert r.status_code == 200 and r.headers.get("etag")  # from the snapshot
                    assert r.json() == {"symbol": "ACME", "app_saw": "/api/quotes?symbol=ACME"}
                    # jQuery's $.ajax({cache: false}) adds `_=<timestamp>`: same snapshot
                    busted = await c.get(b.url("https", "/api/quotes?_=1700000000123&symbol=ACME"))
                    assert busted.status_code == 200 and busted.json() == r.json()
                    assert busted.headers["etag"] == r.headers["etag"]
                    # without the parameter the next route matches: its own stream
                    every = await c.get(b.url("https", "/api/quotes"))
                    assert every.json() == {"symbol": "*", "app_saw": "/api/quotes"}
                    # the upstream was only ever polled on the stream's own targets
                    assert set(polled(up)) == {"/api/quotes?symbol=ACME", "/api/quotes"}

    run(body())


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_an_unknown_parameter_passes_a_plain_get_through_unchanged(
    certs: Path, http2: bool
) -> None:
    async def body() -> None:
        async with app() as up:
            text = config_text(ROUTES, upstream_url=up.url, certs=certs)
            async with running_bridge(text, certs) as b:
                async with httpx.AsyncClient(verify=b.client_ssl(), http2=http2, timeout=10) as c:
                    target = "/api/quotes?symbol=ACME&currency=EUR&_=17&x=a%2Bb+c"
                    r = await c.get(b.url("https", target))
                    assert r.status_code == 200
                    # the app answered this request itself, and saw the exact query
                    assert r.json() == {"symbol": "ACME", "app_saw": target}
                    assert "etag" not in r.headers
                    assert target in polled(up)
                    # a stream route without a query template: the same, nothing guessed
                    r = await c.get(b.url("https", "/api/quotes?region=eu"))
                    assert r.json() == {"symbol": "*", "app_saw": "/api/quotes?region=eu"}
                    # a parameter the route reads, given twice, is a guess too
                    twice = "/api/quotes?symbol=A&symbol=B"
                    r = await c.get(b.url("https", twice))
                    assert r.json()["app_saw"] == twice
                    head = await c.head(b.url("https", "/api/quotes?symbol=ACME&currency=EUR"))
                    assert head.status_code == 200 and "etag" not in head.headers

    run(body())


def test_subscriptions_with_an_unknown_parameter_get_400_naming_it(certs: Path) -> None:
    async def body() -> None:
        async with app() as up:
            text = config_text(ROUTES, upstream_url=up.url, certs=certs)
            async with running_bridge(text, certs) as b:
                async with httpx.AsyncClient(verify=b.client_ssl(), timeout=10) as c:
                    url = b.url("https", "/api/quotes?symbol=ACME&currency=EUR")
                    async with sse(c, url) as sub:
                        assert sub.status == 400
                    r = await c.get(url, headers={"accept": "text/event-stream"})
                    assert r.status_code == 400
                    assert '"currency"' in r.text
                ctx = b.client_ssl(("http/1.1",))
                wss = f"wss://localhost:{b.ports['https']}/api/quotes?symbol=ACME&currency=EUR"
                with pytest.raises(InvalidStatus) as info:
                    async with websockets.connect(wss, ssl=ctx, open_timeout=10):
                        pass
                assert info.value.response.status_code == 400
                assert b'"currency"' in info.value.response.body
                async with ws_http2(
                    b.ports["https"], "/api/quotes?symbol=ACME&currency=EUR", b.client_ssl(("h2",))
                ) as ws:
                    assert ws.status == 400
                # nothing was polled for them: no stream was made
                assert not any("currency" in t for t in polled(up))

    run(body())


def test_subscriptions_with_known_ignored_and_resume_parameters_stream(certs: Path) -> None:
    async def body() -> None:
        async with app() as up:
            text = config_text(ROUTES, upstream_url=up.url, certs=certs)
            async with running_bridge(text, certs) as b:
                async with httpx.AsyncClient(verify=b.client_ssl(), timeout=10) as c:
                    url = b.url("https", "/api/quotes?symbol=ACME&_=99")
                    async with sse(c, url) as sub:
                        assert sub.status == 200
                        first = await sub.next_event()
                        assert json.loads(first.data)["symbol"] == "ACME"
                    resumed = b.url("https", f"/api/quotes?symbol=ACME&last_event_id={first.id}")
                    async with sse(c, resumed) as sub:
                        assert sub.status == 200
                ctx = b.client_ssl(("http/1.1",))
                wss = f"wss://localhost:{b.ports['https']}/api/quotes?symbol=ACME&_=1"
                async with websockets.connect(wss, ssl=ctx, open_timeout=10) as ws:
                    envelope = json.loads(await ws.recv())
                    assert envelope["data"]["symbol"] == "ACME"

    run(body())


def test_bridge_check_prints_what_each_stream_reads_and_ignores(tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_text(
        'listen: {http: "127.0.0.1:0"}\n'
        'upstreams: {app: {url: "http://127.0.0.1:9"}}\n'
        + ROUTES.replace(
            "  - path: /{rest*}\n",
            "  - path: /updates\n"
            "    stream: {upstream: app, poll: /u, longpoll: {cursor: seq, param: since}}\n"
            "  - path: /{rest*}\n",
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "-c", "routes.yaml"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    routes = lines[lines.index("routes:") + 1 : -1]
    assert routes[0].startswith("   0  /api/quotes?symbol={symbol}  stream")
    assert routes[0].endswith("  query reads symbol; ignores _")
    assert routes[1].endswith("  query reads none; ignores none")
    assert routes[2].endswith("  query reads since; ignores none")
    assert routes[3].endswith("proxy   app")
