"""Access-log fields an operator reads: the kind (http / sse / websocket), the WebSocket close
code, and the request id, which also reaches the upstream as X-Request-Id."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge import settings
from tests.support.harness import config_text, run, running_bridge
from tests.support.origin import Origin
from tests.support.subscribers import sse, ws_http1

ROUTES = """\
routes:
  - path: /prices/{symbol}
    stream:
      upstream: app
      poll: /api/price?s={symbol}
      every: 200ms
  - path: /{rest*}
    upstream: app
"""


@pytest.fixture(autouse=True)
def short_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "STREAM_LINGER", 0.5)


async def log_lines(b: Any, count: int) -> list[dict[str, Any]]:
    path = b.directory / "access.log"
    for _ in range(100):
        lines = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
        if len(lines) >= count:
            return lines
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {count} access-log lines")


def test_kind_close_code_and_request_id(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                async with httpx.AsyncClient(
                    verify=b.client_ssl(), http2=True, timeout=5
                ) as client:
                    await client.get(b.url("https", "/echo"))
                    await client.get(b.url("https", "/echo"), headers={"x-request-id": "abc-123"})
                    bad = "has space"
                    await client.get(b.url("https", "/echo"), headers={"x-request-id": bad})
                    async with sse(client, b.url("https", "/prices/A")) as sub:
                        await sub.next_event()
                ws_url = b.url("https", "/prices/B").replace("https", "wss")
                async with ws_http1(ws_url, b.client_ssl(("http/1.1",))) as ws:
                    await ws.next_event()
                    await ws.ws.close(code=4001)
                lines = await log_lines(b, 5)
        by_kind = sorted(line["kind"] for line in lines)
        assert by_kind == ["http", "http", "http", "sse", "websocket"]
        http = [line for line in lines if line["kind"] == "http"]
        sent = [r.header("x-request-id") for r in origin.requests if r.path == "/echo"]
        # every request has an id; the upstream got the same one the log shows
        assert [line["request_id"] for line in http] == sent
        assert sent[1] == "abc-123"
        assert sent[0] and sent[2] and sent[2] != bad and sent[0] != sent[2]
        [websocket] = [line for line in lines if line["kind"] == "websocket"]
        assert websocket["close_code"] == 4001
        assert websocket["events"] >= 1
        [stream] = [line for line in lines if line["kind"] == "sse"]
        assert "close_code" not in stream and stream["request_id"]

    run(body())


def test_combined_format_says_kind_close_and_id(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs)
            text = text.replace("format: json", "format: combined")
            async with running_bridge(text, certs) as b:
                ws_url = b.url("https", "/prices/B").replace("https", "wss")
                async with ws_http1(ws_url, b.client_ssl(("http/1.1",))) as ws:
                    await ws.next_event()
                    await ws.ws.close(code=1000)
                path = b.directory / "access.log"
                for _ in range(100):
                    if path.exists() and path.read_text():
                        break
                    await asyncio.sleep(0.05)
                line = path.read_text().splitlines()[0]
        assert " websocket events=1 close=1000" in line, line
        assert " id=" in line, line

    run(body())
