"""One stream, any protocol: the same events reach SSE and WebSocket subscribers over HTTP/1.1,
HTTP/2 and HTTP/3 (docs/configuration.md "Same stream, any protocol")."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge import settings
from tests.support.h3client import h3_connect, h3_sse, h3_websocket
from tests.support.harness import config_text, run, running_bridge
from tests.support.origin import Origin
from tests.support.subscribers import H2SseConnection, sse, ws_http1, ws_http2

ROUTES = """\
routes:
  - path: /feed/{name}
    stream:
      upstream: app
      poll: /api/feed?n={name}
      every: 200ms
      emit: patch
      event: feed
"""


@contextlib.asynccontextmanager
async def subscriber(b: Any, version: str, kind: str, path: str) -> AsyncIterator[Any]:
    if kind == "sse" and version == "1.1":
        async with (
            httpx.AsyncClient(verify=b.client_ssl(("http/1.1",))) as c,
            sse(c, b.url("https", path)) as s,
        ):
            yield s
    elif version == "3":
        async with h3_connect(b.ports["http3"], b.ca) as client:
            if kind == "sse":
                async with h3_sse(client, path) as s:
                    yield s
            else:
                async with h3_websocket(client, path) as ws:
                    yield ws.sub
    elif kind == "sse":
        mux = H2SseConnection()
        await mux.open(b.ports["https"], b.client_ssl(("h2",)))
        try:
            yield await mux.subscribe(path)
        finally:
            await mux.close()
    elif version == "1.1":
        async with ws_http1(
            f"wss://localhost:{b.ports['https']}{path}", b.client_ssl(("http/1.1",))
        ) as s:
            yield s
    else:
        async with ws_http2(b.ports["https"], path, b.client_ssl(("h2",))) as ws:
            yield ws.sub


@pytest.fixture(autouse=True)
def short_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "STREAM_LINGER", 0.5)


@pytest.mark.parametrize("version", ["1.1", "2", "3"], ids=["http1", "http2", "http3"])
@pytest.mark.parametrize("kind", ["sse", "websocket"])
def test_same_events_over_every_protocol(certs: Path, version: str, kind: str) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/feed", {"n": 0, "items": []})
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs, http3=version == "3")
            async with running_bridge(text, certs) as b:
                # a reference SSE/HTTP1.1 subscriber next to the one under test
                async with (
                    subscriber(b, "1.1", "sse", "/feed/x") as ref,
                    subscriber(b, version, kind, "/feed/x") as sub,
                ):
                    seen_ref, seen = [await ref.next_event()], [await sub.next_event()]
                    for n in range(1, 4):
                        origin.set("/api/feed", {"n": n, "items": list(range(n))})
                        seen_ref.append(await ref.next_event())
                        seen.append(await sub.next_event())
                    as_tuples = lambda events: [(e.id, e.event, json.loads(e.data)) for e in events]  # noqa: E731
                    assert as_tuples(seen) == as_tuples(seen_ref)
                    assert [e.event for e in seen] == ["snapshot", "patch", "patch", "patch"]
                    await asyncio.sleep(0)

    run(body())
