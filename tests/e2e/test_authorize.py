"""In front of an authenticated app (docs/configuration.md "Authorization", `upstreams.*.headers`).

The upstream here is a real loopback app that checks its own session cookies: `/api/prices`
answers 401 with `WWW-Authenticate` unless the request carries a live session cookie (a
subscriber's check) or the service token (bridge's poll). bridge polls it once per interval
with the token from the environment, and asks it, with each subscriber's cookie, whether that
subscriber may see the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
import websockets.exceptions

from bridge import settings
from tests.support.h3client import h3_connect, h3_sse
from tests.support.harness import config_text, run, running_bridge
from tests.support.origin import Origin, OriginRequest, etag_of
from tests.support.subscribers import H2SseConnection, H2WebSocket, sse, ws_http1

TOKEN = "svc-7f3a9c1e5b2d4608"
CHALLENGE = b'Cookie realm="app"'
REPO = Path(__file__).resolve().parents[2]

ROUTES = """\
routes:
  - path: /prices/{symbol}
    stream:
      upstream: app
      poll: /api/prices?symbol={symbol}
      every: 200ms
      event: price
      authorize:
        cache: CACHE
        recheck: RECHECK
"""


class App:
    """The authenticated app: sessions by cookie, the service by its bearer token."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.sessions = {"alice", "bob"}
        self.price = 100
        self.polls = 0  # requests with the service token
        self.checks: dict[str, int] = {}  # requests with a session cookie, by session
        origin.route("/api/prices", self.prices)

    def session(self, request: OriginRequest) -> str | None:
        for name, value in request.headers:
            if name == b"cookie":
                for part in value.decode().split(";"):
                    key, _, found = part.strip().partition("=")
                    if key == "session":
                        return found
        return None

    async def prices(self, request: OriginRequest) -> Any:
        authorization = dict(request.headers).get(b"authorization")
        session = self.session(request)
        if authorization == f"Bearer {TOKEN}".encode():
            assert session is None, "a poll carried a subscriber's cookie"
            self.polls += 1
        elif session is not None:
            assert authorization is None, "a check carried the service token"
            self.checks[session] = self.checks.get(session, 0) + 1
            if session not in self.sessions:
                return 401, [(b"www-authenticate", CHALLENGE)], b"log in\n"
        else:
            return 401, [(b"www-authenticate", CHALLENGE)], b"log in\n"
        body = json.dumps({"symbol": request.query.get("symbol"), "p": self.price}).encode()
        tag = etag_of(body)
        if request.header("if-none-match") == tag.decode():
            return 304, [(b"etag", tag)], b""
        return 200, [(b"content-type", b"application/json"), (b"etag", tag)], body


def routes(cache: str = "30s", recheck: str = "5m") -> str:
    return ROUTES.replace("CACHE", cache).replace("RECHECK", recheck)


def bridge_config(origin: Origin, certs: Path, body: str, **kwargs: Any) -> str:
    text = config_text(body, upstream_url=origin.url, certs=certs, **kwargs)
    return text.replace(
        "    timeout: 5s\n",
        '    timeout: 5s\n    headers:\n      Authorization: "Bearer ${APP_TOKEN}"\n',
    )


@pytest.fixture(autouse=True)
def service_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_TOKEN", TOKEN)
    monkeypatch.setattr(settings, "STREAM_LINGER", 0.5)
    monkeypatch.setattr(settings, "AUTHORIZE_TICK", 0.05)


def cookie(session: str) -> dict[str, str]:
    return {"cookie": f"theme=dark; session={session}"}


@contextlib.asynccontextmanager
async def app_and_bridge(
    certs: Path, body: str, *, http3: bool = False
) -> AsyncIterator[tuple[App, Any]]:
    async with Origin() as origin:
        app = App(origin)
        text = bridge_config(origin, certs, body, http3=http3)
        async with running_bridge(text, certs) as b:
            yield app, b


# --- who may subscribe ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["sse-http1", "sse-http2", "sse-http3", "ws-http1", "ws-http2", "get"]
)
def test_no_session_gets_the_apps_401_on_every_protocol(certs: Path, kind: str) -> None:
    async def body() -> None:
        async with app_and_bridge(certs, routes(), http3=kind == "sse-http3") as (app, b):
            status, challenge = await refused(b, kind, "/prices/ACME", {})
            assert (status, challenge) == (401, CHALLENGE)
            # A stale session is refused the same way, by the app's own check.
            status, challenge = await refused(b, kind, "/prices/ACME", cookie("mallory"))
            assert (status, challenge) == (401, CHALLENGE)
            assert app.checks == {"mallory": 1}
            assert b.bridge.site.hub.subscriber_count == 0

    run(body())


async def refused(b: Any, kind: str, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """The status and WWW-Authenticate a request of `kind` gets when refused."""
    raw = [(k.encode(), v.encode()) for k, v in headers.items()]
    if kind == "sse-http1" or kind == "get":
        accept = {"accept": "text/event-stream"} if kind == "sse-http1" else {}
        async with httpx.AsyncClient(verify=b.client_ssl(("http/1.1",))) as client:
            response = await client.get(b.url("https", path), headers={**accept, **headers})
        return response.status_code, response.headers.get("www-authenticate", "").encode()
    if kind == "sse-http2":
        mux = H2SseConnection()
        await mux.open(b.ports["https"], b.client_ssl(("h2",)))
        try:
            sub = await mux.subscribe(path, headers)
            await asyncio.wait_for(sub.closed.wait(), 10)
            assert sub.headers is not None
            return sub.status, sub.headers.get("www-authenticate", "").encode()
        finally:
            await mux.close()
    if kind == "sse-http3":
        async with h3_connect(b.ports["http3"], b.ca) as client, h3_sse(client, path, raw) as s:
            return s.status, dict(s.stream.headers).get(b"www-authenticate", b"")  # type: ignore[attr-defined]
    if kind == "ws-http1":
        url = f"wss://localhost:{b.ports['https']}{path}"
        with pytest.raises(websockets.exceptions.InvalidStatus) as caught:
            async with websockets.connect(
                url, ssl=b.client_ssl(("http/1.1",)), open_timeout=10, additional_headers=headers
            ):
                pass
        response = caught.value.response
        return response.status_code, response.headers.get("www-authenticate", "").encode()
    assert kind == "ws-http2"
    ws = H2WebSocket()
    try:
        await ws.open(b.ports["https"], path, b.client_ssl(("h2",)), raw)
        await asyncio.wait_for(ws.stream_ended.wait(), 10)
        return ws.status or 0, ws.first.headers.get(b"www-authenticate", b"")
    finally:
        await ws.close()


def test_alice_and_bob_get_every_event_from_one_shared_poll(certs: Path) -> None:
    async def body() -> None:
        async with app_and_bridge(certs, routes()) as (app, b):
            async with (
                httpx.AsyncClient(verify=b.client_ssl(("http/1.1",))) as client,
                sse(client, b.url("https", "/prices/ACME"), cookie("alice")) as alice,
                ws_http1(
                    f"wss://localhost:{b.ports['https']}/prices/ACME",
                    b.client_ssl(("http/1.1",)),
                    additional_headers=cookie("bob"),
                ) as bob,
            ):
                assert alice.status == 200
                for sub in (alice, bob):
                    assert json.loads((await sub.next_event()).data)["p"] == 100
                app.price = 101
                for sub in (alice, bob):
                    assert json.loads((await sub.next_event()).data)["p"] == 101
                # A plain GET with a session is answered from the same stream.
                got = await client.get(b.url("https", "/prices/ACME"), headers=cookie("alice"))
                assert (got.status_code, got.json()["p"]) == (200, 101)
            assert app.checks == {"alice": 1, "bob": 1}  # the GET reused alice's decision
            assert len(b.bridge.site.hub.channels) <= 1

    run(body())


def test_fifty_sessions_share_one_poll_and_are_each_checked_once(certs: Path) -> None:
    async def body() -> None:
        async with app_and_bridge(certs, routes()) as (app, b):
            names = [f"user{i}" for i in range(50)]
            app.sessions.update(names)
            mux = H2SseConnection()
            await mux.open(b.ports["https"], b.client_ssl(("h2",)))
            try:
                subs = [await mux.subscribe("/prices/ACME", cookie(name)) for name in names]
                # Each again: the cached decision, no second check.
                again = [await mux.subscribe("/prices/ACME", cookie(name)) for name in names]
                for sub in subs + again:
                    assert sub.status == 200
                    await sub.next_event()
                hub = b.bridge.site.hub
                assert len(hub.channels) == 1
                polls = app.polls
                app.price = 200
                for sub in subs + again:
                    assert json.loads((await sub.next_event()).data)["p"] == 200
                # Polls go on at the stream's interval, not per subscriber: the change was
                # found by one poll, and a hundred subscribers added no request of their own.
                await asyncio.sleep(0.5)
                assert app.polls - polls < 50
                assert app.checks == {name: 1 for name in names}
            finally:
                await mux.close()

    run(body())


def test_a_revoked_session_is_ended_within_recheck_and_alice_goes_on(certs: Path) -> None:
    async def body() -> None:
        async with app_and_bridge(certs, routes(cache="100ms", recheck="500ms")) as (app, b):
            url = f"wss://localhost:{b.ports['https']}/prices/ACME"
            ctx = b.client_ssl(("http/1.1",))
            async with (
                httpx.AsyncClient(verify=ctx) as client,
                sse(client, b.url("https", "/prices/ACME"), cookie("alice")) as alice,
                sse(client, b.url("https", "/prices/ACME"), cookie("bob")) as bob,
                ws_http1(url, ctx, additional_headers=cookie("bob")) as bob_ws,
                ws_http1(url, ctx, additional_headers=cookie("alice")) as alice_ws,
            ):
                for sub in (alice, bob, bob_ws, alice_ws):
                    await sub.next_event()
                hint = bob.parser.retry  # the stream's opening reconnect hint
                app.sessions.discard("bob")
                denied = await bob.next_event()
                assert denied.event == "denied"
                assert json.loads(denied.data) == {"status": 401}
                await asyncio.wait_for(bob.closed.wait(), 10)
                assert bob.parser.retry == hint  # ended for good: no new reconnect hint
                await asyncio.wait_for(bob_ws.ws.wait_closed(), 10)
                assert bob_ws.ws.close_code == 1008
                app.price = 102
                for sub in (alice, alice_ws):
                    assert json.loads((await sub.next_event()).data)["p"] == 102
                assert not alice.closed.is_set()
                assert app.checks["alice"] >= 2  # alice was checked again, and let stay

    run(body())


def test_an_unreachable_check_lets_nobody_in_until_the_app_is_back(certs: Path) -> None:
    async def body() -> None:
        origin = Origin()
        await origin.__aenter__()
        app = App(origin)
        port = origin.port
        text = bridge_config(origin, certs, routes(cache="100ms"))
        async with running_bridge(text, certs) as b:
            async with httpx.AsyncClient(verify=b.client_ssl(("http/1.1",))) as client:
                await origin.close()
                for kind in ({"accept": "text/event-stream"}, {}):
                    got = await client.get(
                        b.url("https", "/prices/ACME"), headers={**kind, **cookie("alice")}
                    )
                    assert got.status_code == 502
                    assert "authorization check failed" in got.text
                assert b.bridge.site.hub.subscriber_count == 0
                async with Origin(port=port) as back:
                    back.route("/api/prices", app.prices)
                    async with sse(
                        client, b.url("https", "/prices/ACME"), cookie("alice")
                    ) as alice:
                        assert alice.status == 200
                        assert json.loads((await alice.next_event()).data)["p"] == 100

    run(body())


# --- the service's credentials -----------------------------------------------------------------


def test_the_poll_carries_the_token_from_the_environment_and_nothing_shows_it(
    certs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bridge")

    async def body() -> None:
        async with app_and_bridge(certs, routes() + FAILING, http3=False) as (app, b):
            async with httpx.AsyncClient(verify=b.client_ssl(("http/1.1",))) as client:
                got = await client.get(b.url("https", "/prices/ACME"), headers=cookie("alice"))
                assert got.status_code == 200
                assert app.polls >= 1
                # A poll that fails (logged) and a GET that gets the app's 404 (before a
                # stream's first good poll, a 4xx is the requester's answer).
                bad = await client.get(b.url("https", "/broken"))
                assert bad.status_code == 404
                assert TOKEN not in bad.text
            stats = json.dumps(b.bridge.site.hub.stats(), default=str)
            assert TOKEN not in stats
            logged = (b.directory / "access.log").read_text()
            assert TOKEN not in logged

    run(body())
    assert caplog.records
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


FAILING = """\
  - path: /broken
    stream:
      upstream: app
      poll: /api/missing
      every: 200ms
"""


def test_bridge_check_names_an_unset_variable_at_its_line_and_never_prints_a_value(
    certs: Path, tmp_path: Path
) -> None:
    path = tmp_path / "routes.yaml"
    path.write_text(bridge_config(Origin(port=9), certs, routes()))
    line = path.read_text().splitlines().index('      Authorization: "Bearer ${APP_TOKEN}"') + 1
    env = {k: v for k, v in os.environ.items() if k != "APP_TOKEN"}
    env["PYTHONPATH"] = str(REPO)
    unset = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "-c", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unset.returncode == 1
    assert f"routes.yaml:{line}:22: upstreams.app.headers.Authorization: ${{APP_TOKEN}}" in (
        unset.stderr + unset.stdout
    )
    env["APP_TOKEN"] = TOKEN
    printed = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "--print", "-c", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    assert "authorization: Bearer ${APP_TOKEN}" in printed.stdout
    assert TOKEN not in printed.stdout + printed.stderr


# --- vary -------------------------------------------------------------------------------------


VARY = """\
routes:
  - path: /mine
    stream:
      upstream: app
      poll: /api/mine
      every: 200ms
      vary: [authorization]
"""


def test_three_hundred_bogus_credentials_cost_one_request_each_and_leave_no_channel(
    certs: Path,
) -> None:
    async def body() -> None:
        async with Origin() as origin:

            async def mine(request: OriginRequest) -> Any:
                if dict(request.headers).get(b"authorization") == b"Bearer good":
                    return 200, [(b"content-type", b"application/json")], b'{"mine": 1}'
                return 401, [(b"www-authenticate", b"Bearer")], b"no\n"

            origin.route("/api/mine", mine)
            text = config_text(VARY, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                hub = b.bridge.site.hub
                async with httpx.AsyncClient(verify=b.client_ssl(("http/1.1",))) as client:
                    for i in range(300):
                        accept = {"accept": "text/event-stream"} if i % 2 else {}
                        got = await client.get(
                            b.url("https", "/mine"),
                            headers={**accept, "authorization": f"Bearer bogus{i}"},
                        )
                        assert got.status_code == 401
                        assert got.headers["www-authenticate"] == "Bearer"
                    assert origin.count("/api/mine") <= 300
                    assert hub.channels == {}
                    await asyncio.sleep(0.5)  # nothing polls on afterwards
                    assert origin.count("/api/mine") <= 300
                    good = await client.get(
                        b.url("https", "/mine"), headers={"authorization": "Bearer good"}
                    )
                    assert (good.status_code, good.json()) == (200, {"mine": 1})
                    assert len(hub.channels) == 1

    run(body())


# --- reload -------------------------------------------------------------------------------------


OPEN = """\
routes:
  - path: /prices/{symbol}
    stream:
      upstream: app
      poll: /api/prices?symbol={symbol}
      every: 200ms
      event: price
"""


def test_reload_adds_changes_and_removes_authorize_under_live_subscribers(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            app = App(origin)
            app.sessions.add("carol")
            async with running_bridge(bridge_config(origin, certs, OPEN), certs) as b:

                def reload_to(text: str) -> Any:
                    (b.directory / "routes.yaml").write_text(bridge_config(origin, certs, text))
                    return b.bridge.reload()

                ctx = b.client_ssl(("http/1.1",))
                async with httpx.AsyncClient(verify=ctx) as client:
                    url = b.url("https", "/prices/ACME")
                    # Open: anyone; the app is polled with the token.
                    async with sse(client, url) as anon, sse(client, url, cookie("bob")) as bob:
                        await anon.next_event()
                        await bob.next_event()
                        # Added: subscribers never checked reconnect to be checked.
                        assert await reload_to(routes(cache="100ms", recheck="300ms"))
                        await asyncio.wait_for(anon.closed.wait(), 10)
                        await asyncio.wait_for(bob.closed.wait(), 10)
                    refused = await client.get(url, headers={"accept": "text/event-stream"})
                    assert refused.status_code == 401
                    async with (
                        sse(client, url, cookie("bob")) as bob,
                        sse(client, url, cookie("carol")) as carol,
                    ):
                        await bob.next_event()
                        await carol.next_event()
                        # Changed: a check target only carol passes; bob is ended under it.
                        origin.route("/api/carol-only", carol_only(app))
                        changed = routes(cache="100ms", recheck="300ms").replace(
                            "      authorize:\n",
                            "      authorize:\n        check: /api/carol-only\n",
                        )
                        assert await reload_to(changed)
                        denied = await bob.next_event()
                        assert denied.event == "denied"
                        await asyncio.wait_for(bob.closed.wait(), 10)
                        assert not carol.closed.is_set()
                        # Removed: carol stays, unchecked from now on; anyone may join.
                        assert await reload_to(OPEN)
                        checks = dict(app.checks)
                        app.price = 300
                        assert json.loads((await carol.next_event()).data)["p"] == 300
                        async with sse(client, url) as anyone:
                            assert anyone.status == 200
                        await asyncio.sleep(0.6)  # two recheck periods of the old block
                        assert app.checks == checks
                        assert not carol.closed.is_set()

    run(body())


def carol_only(app: App) -> Any:
    async def handler(request: OriginRequest) -> Any:
        if app.session(request) == "carol":
            return 204, [], b""
        return 403, [], b"not you\n"

    return handler
