"""niquests (qh3) over HTTP/3 fetching a `push:` page as the first request of new connections
(issue 19, part 5). qh3 resumes a QPACK-blocked field section as if it were HEADERS, so a
PUSH_PROMISE whose section referred to dynamic-table entries still on their way hung the page
until the client's timeout; bridge now encodes promises without the dynamic table."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.e2e.test_http3 import ROUTES, serve
from tests.support.harness import config_text, run, running_bridge
from tests.support.origin import Origin, OriginRequest

ASSETS = [f"/static/a{i}.css" for i in range(3)]


def test_niquests_push_page_first_on_new_connections(certs: Path) -> None:
    import niquests

    routes = ROUTES.replace("push: [/static/app.css]", f"push: [{', '.join(ASSETS)}]")

    def fetch(https: int, h3: int) -> list[tuple[int, int, bytes]]:
        seen = []
        # Each session is a new QUIC connection whose first request is the page; Alt-Svc is
        # given up front so that it goes over HTTP/3 at once.
        for _ in range(4):
            with niquests.Session(quic_cache_layer={("127.0.0.1", https): ("127.0.0.1", h3)}) as s:
                r = s.get(
                    f"https://127.0.0.1:{https}/page", verify=str(certs / "ca.crt"), timeout=10
                )
                seen.append((r.status_code, r.http_version, r.content))
        return seen

    async def body() -> None:
        async with Origin() as origin:
            serve(origin)

            async def css(request: OriginRequest) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
                return 200, [(b"content-type", b"text/css")], b"p { margin: 0 }\n" * 50

            for path in ASSETS:
                origin.route(path, css)
            text = config_text(routes, upstream_url=origin.url, certs=certs, http3=True)
            async with running_bridge(text, certs) as b:
                ports = (b.ports["https"], b.ports["http3"])
                seen = await asyncio.wait_for(asyncio.to_thread(fetch, *ports), 60)
                assert seen == [(200, 30, b"<html>page</html>")] * 4
                log = (b.directory / "access.log").read_text().splitlines()
                pushed = [json.loads(line) for line in log if line.strip()]
                pushed = [e for e in pushed if e.get("pushed")]
                assert len(pushed) == 4 * len(ASSETS)  # the pushes did go, and first

    run(body())
