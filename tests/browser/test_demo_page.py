"""The demo page in a real browser: headless Chromium from the distribution's packages, driven by
Playwright for Python at the system binary (no browser download).

Skipped locally, with the reason, when Chromium or Playwright is absent; under
`BRIDGE_REQUIRE_TOOLS=1` (CI, `.ci/run` installs the `chromium` package) that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

from bridge.app import create_bridge
from bridge.demo.app import start_demo_app
from bridge.demo.run import demo_config_text, demo_viewers
from bridge.routing.config import load_config
from bridge.server.run import Bridge
from tests.support.harness import run

CHROMIUM = ("chromium", "chromium-browser")


def chromium() -> str:
    found = next((p for p in map(shutil.which, CHROMIUM) if p), None)
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing = "the playwright package (pip install -e '.[test]')"
    else:
        missing = "" if found else "chromium (apt-get install chromium)"
    if not missing:
        assert found is not None
        return found
    if os.environ.get("BRIDGE_REQUIRE_TOOLS"):
        pytest.fail(f"{missing} is required in CI but not installed")
    pytest.skip(f"browser test needs {missing}")
    raise AssertionError("unreachable")


async def wait_for(page: Any, expression: str, timeout: float = 15.0) -> Any:
    handle = await page.wait_for_function(expression, timeout=timeout * 1000)
    return await handle.json_value()


def test_demo_page_in_chromium(certs: Path) -> None:
    executable = chromium()

    async def body() -> None:
        from playwright.async_api import async_playwright

        holder: list[Bridge] = []
        app = await start_demo_app(viewers=lambda: demo_viewers(holder[0]) if holder else 0)
        tmp = Path(tempfile.mkdtemp(prefix="bridge-browser-"))
        try:
            path = tmp / "routes.yaml"
            path.write_text(demo_config_text(port=0, app_port=app.port, certs=certs))
            bridge = create_bridge(load_config(path))
            holder.append(bridge)
            await bridge.start()
            url = f"https://localhost:{bridge.ports['https']}/"
            try:
                async with async_playwright() as p:
                    browser = await p.chromium.launch(executable_path=executable, headless=True)
                    try:
                        context = await browser.new_context(ignore_https_errors=True)
                        page = await context.new_page()
                        await page.goto(url, timeout=15000)
                        # The first stats: no rate yet (no interval), never "for 0 viewers".
                        first = await wait_for(
                            page, "document.getElementById('fanout').textContent"
                        )
                        assert "0.0 a second" not in first and "0 viewers" not in first, first
                        # At least three price updates through EventSource.
                        await wait_for(page, "window.bridgeDemo && bridgeDemo.events >= 3")
                        demo = await page.evaluate("window.bridgeDemo")
                        assert demo["transport"] == "sse"
                        assert demo["mode"] == "pushed by bridge (SSE)"
                        assert demo["protocol"] == "h2"
                        assert await page.inner_text("#protocol") == "h2"
                        sse_ids = demo["ids"]
                        assert sse_ids == sorted(set(sse_ids)), sse_ids
                        # How its assets came (whichever way this browser took them).
                        assets = await page.inner_text("#assets")
                        assert "app.css: " in assets and "app.js: " in assets, assets
                        assert "none measured" not in assets
                        # The page says how many viewers one poll serves.
                        await wait_for(page, "bridgeDemo.viewers === 1")
                        fanout = await page.inner_text("#fanout")
                        assert "for 1 viewer: one poll for all of them" in fanout, fanout
                        # Reload: it resumes with the last id, so no event comes twice.
                        before = (await page.evaluate("bridgeDemo.ids"))[-1]
                        await page.reload(timeout=15000)
                        await wait_for(page, "window.bridgeDemo && bridgeDemo.events >= 1")
                        after = await page.evaluate("window.bridgeDemo")
                        assert after["resumedFrom"] == before
                        assert after["ids"][0] > before, (before, after["ids"])
                        assert after["ids"] == sorted(set(after["ids"]))
                        # The toggle: a message through WebSocket.
                        await page.check("input[value=websocket]")
                        events = after["events"]
                        await wait_for(
                            page,
                            f"bridgeDemo.transport === 'websocket' && bridgeDemo.events > {events}",
                        )
                        ws = await page.evaluate("window.bridgeDemo")
                        assert ws["mode"] == "pushed by bridge (WebSocket)"
                        assert ws["ids"] == sorted(set(ws["ids"])), ws["ids"]
                        assert "admin" in bridge.ports
                    finally:
                        await browser.close()
            finally:
                await bridge.stop(grace=1.0)
        finally:
            await app.stop()
            shutil.rmtree(tmp, ignore_errors=True)

    run(asyncio.wait_for(body(), 90), timeout=120)
