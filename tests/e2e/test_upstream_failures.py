"""Upstream failures reach the client (issue 19, part 4; docs/configuration.md "Upstream trouble is not the
subscriber's problem"). Every failure kind x {plain GET, SSE, WebSocket} x {before the stream's
first data, after it}, against a raw loopback upstream that can answer anything:

- before data, a 4xx is the requester's answer (its status, `WWW-Authenticate`, a short body)
  for every kind of client; anything else leaves subscribers to heartbeats (200 / 101) and
  gives a plain GET 502 with a one-line cause, 504 only for a real timeout;
- after data, every client gets the last snapshot as if nothing happened, and /streams and
  /metrics show the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import websockets

from bridge import settings
from tests.support.harness import Running, config_text, run, running_bridge

ROUTES = """\
limits:
  max_snapshot: 1KB
routes:
  - path: /prices/{symbol}
    stream:
      upstream: app
      poll: /api/price?s={symbol}
      every: 200ms
      heartbeat: 1s
  - path: /{rest*}
    upstream: app
"""

OK_BODY = b'{"price": 1}'


def _answer(status: str, headers: str = "", body: bytes = b"") -> bytes:
    head = f"HTTP/1.1 {status}\r\n{headers}content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    return head.encode() + body


ANSWERS = {
    "ok": _answer("200 OK", "content-type: application/json\r\n", OK_BODY),
    "401": _answer("401 Unauthorized", 'www-authenticate: Bearer realm="app"\r\n', b"no\n"),
    "404": _answer("404 Not Found", "", b"nothing here\n"),
    "500": _answer("500 Internal Server Error", "", b"boom\n"),
    "garbage": b"this is not HTTP at all\r\n\r\n",
    # Declared bigger than max_snapshot: refused before its body is read.
    "oversize": b"HTTP/1.1 200 OK\r\ncontent-length: 5000000\r\nconnection: close\r\n\r\n"
    + b"x" * 4096,
}


class RawUpstream:
    """An upstream on loopback that answers every request with `ANSWERS[mode]`; `stall` never
    answers; `refused` stops listening (connections are refused)."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.port = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def refuse(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if self.mode == "stall":
                await asyncio.sleep(30)
            writer.write(ANSWERS[self.mode])
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            writer.close()


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Expect:
    status: int  # a plain GET before data
    body: str  # ... a piece of its body
    refusal: bool  # subscribers refused with `status` too


KINDS = {
    "401": Expect(401, "401 Unauthorized", True),
    "404": Expect(404, "404 Not Found", True),
    "refused": Expect(502, "Connection refused", False),
    "500": Expect(502, "the upstream answered 500", False),
    "garbage": Expect(502, "invalid", False),
    "oversize": Expect(502, "larger than max_snapshot", False),
    "timeout": Expect(504, "did not answer in time", False),
}


@pytest.fixture(autouse=True)
def short_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "STREAM_LINGER", 0.5)


@contextlib.asynccontextmanager
async def scene(certs: Path, kind: str, before: bool) -> AsyncIterator[tuple[Running, RawUpstream]]:
    """A bridge in front of a raw upstream failing as `kind`: from the start (`before`), or
    after the stream has had data (then the failure is already recorded)."""
    up = RawUpstream()
    await up.start()
    port = up.port
    if before and kind == "refused":
        await up.refuse()
        port = closed_port()
    elif before:
        up.mode = "stall" if kind == "timeout" else kind
    text = config_text(
        ROUTES,
        upstream_url=f"http://127.0.0.1:{port}",
        certs=certs,
        extra_listen='admin: "127.0.0.1:0"',
    ).replace("timeout: 5s", "timeout: 1s")
    try:
        async with (
            running_bridge(text, certs) as b,
            httpx.AsyncClient(verify=b.client_ssl(), timeout=10) as c,
        ):
            if before:
                yield b, up
                return
            url = b.url("https", "/prices/A")
            # A subscriber keeps the stream running while it fails (a plain GET alone would
            # let it stop soon after).
            async with c.stream("GET", url, headers={"accept": "text/event-stream"}) as keep:
                assert keep.status_code == 200
                assert (await c.get(url)).content == OK_BODY
                if kind == "refused":
                    await up.refuse()
                else:
                    up.mode = "stall" if kind == "timeout" else kind
                await _recorded_error(b)
                yield b, up
    finally:
        if up.server is not None:
            up.server.close()


async def _streams(b: Running) -> list[dict]:  # type: ignore[type-arg]
    async with httpx.AsyncClient(timeout=5) as admin:
        return (await admin.get(f"http://127.0.0.1:{b.ports['admin']}/streams")).json()  # type: ignore[no-any-return]


async def _recorded_error(b: Running) -> dict:  # type: ignore[type-arg]
    for _ in range(100):  # bounded: until a failed poll shows
        found = [s for s in await _streams(b) if s.get("last_error")]
        if found:
            return found[0]
        await asyncio.sleep(0.1)
    raise AssertionError("no poll error recorded")


async def plain_get(b: Running) -> tuple[int, httpx.Headers, str]:
    async with httpx.AsyncClient(verify=b.client_ssl(), timeout=20) as c:
        r = await c.get(b.url("https", "/prices/A"))
        return r.status_code, r.headers, r.text


async def sse_get(b: Running) -> tuple[int, httpx.Headers, str]:
    async with (
        httpx.AsyncClient(verify=b.client_ssl(), timeout=20) as c,
        c.stream("GET", b.url("https", "/prices/A"), headers={"accept": "text/event-stream"}) as r,
    ):
        if r.status_code != 200:
            return r.status_code, r.headers, (await r.aread()).decode()
        text = ""
        async for piece in r.aiter_text():  # bounded by the pieces of one event or heartbeat
            text += piece
            if "data:" in text or "\n:" in text:  # an event, or a heartbeat comment
                break
        return r.status_code, r.headers, text


async def ws_get(b: Running) -> tuple[int, httpx.Headers, str]:
    url = f"wss://localhost:{b.ports['https']}/prices/A"
    try:
        async with websockets.connect(url, ssl=b.client_ssl(("http/1.1",)), open_timeout=20) as ws:
            message = ""
            with contextlib.suppress(TimeoutError):  # no state yet: nothing but pings
                message = str(await asyncio.wait_for(ws.recv(), 3))
            return 101, httpx.Headers(), message
    except websockets.exceptions.InvalidStatus as exc:
        response = exc.response
        headers = httpx.Headers(list(response.headers.raw_items()))
        return response.status_code, headers, response.body.decode()


CLIENTS = {"get": plain_get, "sse": sse_get, "websocket": ws_get}


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_failure_before_the_first_data(certs: Path, kind: str, client: str) -> None:
    expect = KINDS[kind]

    async def body() -> None:
        async with scene(certs, kind, before=True) as (b, _):
            status, headers, text = await CLIENTS[client](b)
            if client == "get" or expect.refusal:
                assert status == expect.status, (status, text)
                assert expect.body in text, text
                assert "Error(" not in text and "<" not in text  # no Python repr
                assert len(text.splitlines()) == 1
                if kind == "401":
                    assert headers["www-authenticate"] == 'Bearer realm="app"'
            elif client == "sse":
                # The upstream's trouble: the subscriber stays, on heartbeats.
                assert status == 200 and text.lstrip().startswith((":", "retry:")), text
            else:
                # Accepted; what it first hears is the hub's heartbeat ping, not an error.
                assert status == 101
            if expect.refusal:
                # The channel did not linger on a 4xx nobody subscribed to.
                for _ in range(50):  # bounded
                    if not await _streams(b):
                        break
                    await asyncio.sleep(0.1)
                assert await _streams(b) == []

    run(body())


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("kind", list(KINDS))
def test_failure_after_data_keeps_the_last_snapshot(certs: Path, kind: str, client: str) -> None:
    async def body() -> None:
        async with scene(certs, kind, before=False) as (b, _):
            status, _, text = await CLIENTS[client](b)
            assert status in (200, 101)
            assert '"price": 1' in text or '"price":1' in text, text
            stream = await _recorded_error(b)
            assert stream["state"] == "backoff" and stream["errors"] >= 1
            assert stream["last_error"]
            async with httpx.AsyncClient(timeout=5) as admin:
                metrics = (await admin.get(f"http://127.0.0.1:{b.ports['admin']}/metrics")).text
            errors = [
                line
                for line in metrics.splitlines()
                if line.startswith("bridge_upstream_errors_total{")
            ]
            assert errors and float(errors[0].rsplit(" ", 1)[1]) >= 1, errors

    run(body())
