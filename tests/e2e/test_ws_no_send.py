"""A WebSocket message to a stream without `send:` is refused out loud: close 1003 (RFC 6455
§7.4.1, "a type of data it cannot accept") with a reason, over HTTP/1.1 and HTTP/2."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridge import settings
from tests.support.harness import config_text, run, running_bridge
from tests.support.origin import Origin
from tests.support.subscribers import ws_http1, ws_http2

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


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_message_to_a_stream_without_send_closes_1003(certs: Path, http2: bool) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                if http2:
                    async with ws_http2(b.ports["https"], "/prices/A", b.client_ssl(("h2",))) as ws:
                        assert ws.status == 200
                        await ws.sub.next_event()
                        ws.send("hello?")
                        await asyncio.wait_for(ws.first.close_received.wait(), 10)
                        assert ws.closed == 1003
                else:
                    url = f"wss://localhost:{b.ports['https']}/prices/A"
                    async with ws_http1(url, b.client_ssl(("http/1.1",))) as sub:
                        await sub.next_event()
                        await sub.ws.send("hello?")
                        await asyncio.wait_for(sub.ws.wait_closed(), 10)
                        assert sub.ws.close_code == 1003
                        assert sub.ws.close_reason == "this stream takes no messages"
                # Nothing was sent on to the upstream: it saw polls only.
                assert {r.method for r in origin.requests} == {"GET"}

    run(body())
