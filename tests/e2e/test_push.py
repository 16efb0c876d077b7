"""Server push, 103 Early Hints and preload Links, seen by real clients: a raw h2 client,
an h11 client, and nghttp from Debian's nghttp2-client."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import h11

from tests.support.harness import config_text, raw_exchange, require_tool, run, running_bridge
from tests.support.origin import Origin

CSS = b"body { color: #123; }\n" * 50
JS = b"console.log('bridge');\n" * 40

ROUTES = """\
routes:
  - path: /
    upstream: app
    push: [/static/app.css, /static/app.js]
  - path: /auto
    upstream: app
    push: auto
  - path: /{rest*}
    upstream: app
"""


def serve_site(origin: Origin, think: float = 0.0) -> dict[str, bytes]:
    assets = {"/static/app.css": CSS, "/static/app.js": JS}

    async def page(request):  # type: ignore[no-untyped-def]
        await asyncio.sleep(think)
        return 200, [(b"content-type", b"text/html")], b"<html>page</html>"

    async def auto_page(request):  # type: ignore[no-untyped-def]
        link = (
            b"</static/app.css>; rel=preload; as=style, <https://other.example/x.js>; rel=preload"
        )
        return 200, [(b"content-type", b"text/html"), (b"link", link)], b"<html>auto</html>"

    def asset(path: str):  # type: ignore[no-untyped-def]
        async def handler(request):  # type: ignore[no-untyped-def]
            body = assets[path]
            kind = b"text/css" if path.endswith(".css") else b"text/javascript"
            return 200, [(b"content-type", kind), (b"cache-control", b"max-age=60")], body

        return handler

    origin.route("/", page)
    origin.route("/auto", auto_page)
    for path in assets:
        origin.route(path, asset(path))
    return assets


class H2Page:
    """Load one page over a raw h2 connection and record every frame-level event."""

    def __init__(self, *, enable_push: bool = True, cookie: str | None = None) -> None:
        self.enable_push = enable_push
        self.cookie = cookie
        self.events: list[h2.events.Event] = []
        self.bodies: dict[int, bytes] = {}
        self.promises: dict[int, dict[bytes, bytes]] = {}
        self.final_headers: dict[bytes, bytes] = {}
        self.informational: list[dict[bytes, bytes]] = []

    async def load(
        self, port: int, ctx: ssl.SSLContext, path: str = "/", *, reset_pushes: bool = False
    ) -> None:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
        )
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        conn.local_settings = h2.settings.Settings(
            client=True,
            initial_values={h2.settings.SettingCodes.ENABLE_PUSH: int(self.enable_push)},
        )
        conn.initiate_connection()
        headers = [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", f"localhost:{port}".encode()),
            (b":path", path.encode()),
            (b"accept-encoding", b"gzip"),
            (b"user-agent", b"h2-test"),
        ]
        if self.cookie:
            headers.append((b"cookie", self.cookie.encode()))
        conn.send_headers(1, headers, end_stream=True)
        writer.write(conn.data_to_send())
        open_streams = {1}
        try:
            while open_streams:
                data = await asyncio.wait_for(reader.read(65536), 10)
                if not data:
                    break
                try:
                    received = conn.receive_data(data)
                except h2.exceptions.StreamClosedError:
                    continue  # frames already in flight for a pushed stream we reset
                for event in received:
                    self.events.append(event)
                    if isinstance(event, h2.events.PushedStreamReceived):
                        self.promises[event.pushed_stream_id] = dict(event.headers)
                        if reset_pushes:
                            with contextlib.suppress(h2.exceptions.StreamClosedError):
                                conn.reset_stream(
                                    event.pushed_stream_id, h2.errors.ErrorCodes.CANCEL
                                )
                        else:
                            open_streams.add(event.pushed_stream_id)
                    elif isinstance(event, h2.events.InformationalResponseReceived):
                        self.informational.append(dict(event.headers))
                    elif isinstance(event, h2.events.ResponseReceived) and event.stream_id == 1:
                        self.final_headers = dict(event.headers)
                    elif isinstance(event, h2.events.DataReceived):
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                        self.bodies[event.stream_id] = (
                            self.bodies.get(event.stream_id, b"") + event.data
                        )
                    elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                        open_streams.discard(event.stream_id)
                writer.write(conn.data_to_send())
        finally:
            writer.close()

    @property
    def pushed_paths(self) -> list[bytes]:
        return [h[b":path"] for h in self.promises.values()]


import h2.errors  # noqa: E402


def test_http2_push_before_the_page(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            assets = serve_site(origin, think=0.2)
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                page = H2Page()
                await page.load(b.ports["https"], b.client_ssl(("h2",)))
                assert sorted(page.pushed_paths) == [b"/static/app.css", b"/static/app.js"]
                kinds = [type(e).__name__ for e in page.events]
                first_push = kinds.index("PushedStreamReceived")
                page_head = next(
                    i
                    for i, e in enumerate(page.events)
                    if isinstance(e, h2.events.ResponseReceived) and e.stream_id == 1
                )
                assert first_push < page_head  # promised before the upstream even answered
                for sid, request in page.promises.items():
                    assert request[b":method"] == b"GET"
                    assert request[b":scheme"] == b"https"
                    assert request[b":authority"] == f"localhost:{b.ports['https']}".encode()
                    assert request[b"accept-encoding"] == b"gzip"
                    assert request[b"user-agent"] == b"h2-test"
                    assert page.bodies[sid] == assets[request[b":path"].decode()]
                assert page.bodies[1] == b"<html>page</html>"
                # Early Hints and preload Links for the same assets
                assert page.informational and page.informational[0][b":status"] == b"103"
                link = page.informational[0][b"link"]
                assert b"</static/app.css>; rel=preload; as=style" in link
                assert b"</static/app.js>; rel=preload; as=script" in link
                assert b"rel=preload" in page.final_headers[b"link"]
                cookie = page.final_headers[b"set-cookie"].split(b";")[0].decode()
                assert cookie.startswith("bridge_pushed=")
                # the cookie suppresses a second push of the same versions
                again = H2Page(cookie=cookie)
                await again.load(b.ports["https"], b.client_ssl(("h2",)))
                assert again.pushed_paths == []
                assert again.informational  # hints still go out
                # a changed asset is pushed again
                assets["/static/app.css"] = CSS + b"/* v2 */"
                b.bridge.router.page.cache._entries.clear()  # type: ignore[union-attr]
                await asyncio.sleep(0)
                warm = H2Page(cookie=cookie)
                await warm.load(
                    b.ports["https"], b.client_ssl(("h2",))
                )  # refetches: new version cached
                third = H2Page(cookie=cookie)
                await third.load(b.ports["https"], b.client_ssl(("h2",)))
                assert b"/static/app.css" in third.pushed_paths
                assert b"/static/app.js" not in third.pushed_paths
                log = (b.directory / "access.log").read_text()
                assert '"pushed":true' in log

    run(body())


def test_no_push_when_disabled_and_reset_pushes_stop(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            serve_site(origin)
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                page = H2Page(enable_push=False)
                await page.load(b.ports["https"], b.client_ssl(("h2",)))
                assert page.promises == {}
                assert page.bodies[1] == b"<html>page</html>"
                assert page.informational  # preload hints still sent
                cancelled = H2Page()
                await cancelled.load(b.ports["https"], b.client_ssl(("h2",)), reset_pushes=True)
                assert cancelled.bodies[1] == b"<html>page</html>"
                assert all(
                    sid not in cancelled.bodies or len(cancelled.bodies[sid]) < len(CSS) + len(JS)
                    for sid in cancelled.promises
                )

    run(body())


def test_asset_cache_fetches_once(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            serve_site(origin)
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                for _ in range(20):
                    await H2Page().load(b.ports["https"], b.client_ssl(("h2",)))
                assert origin.count("/static/app.css") == 1
                assert origin.count("/static/app.js") == 1
                assert origin.count("/") >= 20

    run(body())


def test_push_auto_learns_from_preload_links(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            serve_site(origin)
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                first = H2Page()
                await first.load(b.ports["https"], b.client_ssl(("h2",)), "/auto")
                assert first.pushed_paths == []
                second = H2Page()
                await second.load(b.ports["https"], b.client_ssl(("h2",)), "/auto")
                assert second.pushed_paths == [b"/static/app.css"]  # same-origin only

    run(body())


async def _h11_page(port: int) -> list[h11.Event]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = h11.Connection(h11.CLIENT)
    headers = [(b"host", b"localhost"), (b"connection", b"close")]
    request = h11.Request(method="GET", target="/", headers=headers)
    writer.write(client.send(request) + client.send(h11.EndOfMessage()))
    events: list[h11.Event] = []
    while True:
        event = client.next_event()
        if event is h11.NEED_DATA:
            client.receive_data(await asyncio.wait_for(reader.read(65536), 10))
            continue
        events.append(event)
        if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
            break
    writer.close()
    return events


def test_early_hints_over_http1_but_not_to_http10(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            serve_site(origin, think=0.1)
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                events = await _h11_page(b.ports["http"])
                hints = [e for e in events if isinstance(e, h11.InformationalResponse)]
                assert [h.status_code for h in hints] == [103]
                link = dict(hints[0].headers)[b"link"]
                assert b"</static/app.css>; rel=preload; as=style" in link
                final = next(e for e in events if isinstance(e, h11.Response))
                assert b"rel=preload" in dict(final.headers)[b"link"]
                # h11 clients speak only 1.1: an HTTP/1.0 request as raw bytes
                old = await raw_exchange(
                    b.ports["http"], b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"
                )
                assert old.startswith(b"HTTP/1.1 200")  # RFC 9110 §2.5: we answer as 1.1
                assert b" 103 " not in old
                assert b"rel=preload" in old

    run(body())


def test_nghttp_sees_push_promises(certs: Path) -> None:
    nghttp = require_tool("nghttp")

    async def body() -> None:
        async with Origin() as origin:
            serve_site(origin)
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                proc = await asyncio.create_subprocess_exec(
                    nghttp,
                    "-nv",
                    f"https://localhost:{b.ports['https']}/",
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                )
                out, _ = await asyncio.wait_for(proc.communicate(), 20)
                text = out.decode(errors="replace")
                assert text.count("recv PUSH_PROMISE frame") == 2, text[-2000:]
                assert ":path: /static/app.css" in text
                assert ":path: /static/app.js" in text

    run(body())
