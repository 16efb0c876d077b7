"""Server push, 103 Early Hints and preload Links, seen by real clients: a raw h2 client
(whose every frame is also logged from the wire, independent of h2's own bookkeeping), an h11
client, a raw HTTP/1.0 exchange, and nghttp from Debian's nghttp2-client."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h11

from tests.support.harness import (
    Running,
    config_text,
    raw_exchange,
    require_tool,
    run,
    running_bridge,
)
from tests.support.origin import Origin, OriginRequest, etag_of

CSS = b"body { color: #123; }\n" * 50
JS = b"console.log('bridge');\n" * 40
GZ_CSS = gzip.compress(CSS, mtime=0)  # no timestamp: the same bytes every time

ROUTES = """\
routes:
  - path: /
    upstream: app
    push: [/static/app.css, /static/app.js]
  - path: /auto
    upstream: app
    push: auto
  - path: /own
    upstream: app
    push: [/static/app.css, /static/app.js]
  - path: /missing
    upstream: app
    push: [/static/gone.css, /static/app.js]
  - path: /{rest*}
    upstream: app
"""

# Frame types (RFC 9113 §6)
DATA, HEADERS, RST_STREAM, PUSH_PROMISE = 0, 1, 3, 5


def serve_site(
    origin: Origin, *, think: float = 0.0, asset_think: float = 0.0, cache: bytes = b"max-age=60"
) -> dict[str, bytes]:
    """A page and two assets; the assets carry an ETag and answer If-None-Match with 304."""
    assets = {"/static/app.css": CSS, "/static/app.js": JS}

    async def page(request: OriginRequest) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        await asyncio.sleep(think)
        return 200, [(b"content-type", b"text/html")], b"<html>page</html>"

    async def auto_page(request: OriginRequest) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        link = (
            b"</static/app.css>; rel=preload; as=style, <https://other.example/x.js>; "
            b'rel=preload; as=script, </static/app.js>; rel="preload"; as=script; nopush'
        )
        return 200, [(b"content-type", b"text/html"), (b"link", link)], b"<html>auto</html>"

    async def own_page(request: OriginRequest) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        link = b"</static/app.css>; rel=preload; as=style; crossorigin"
        return 200, [(b"content-type", b"text/html"), (b"link", link)], b"<html>own</html>"

    def asset(path: str):  # type: ignore[no-untyped-def]
        async def handler(request: OriginRequest) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            await asyncio.sleep(asset_think)
            body = assets[path]
            tag = etag_of(body)
            if request.header("if-none-match") == tag.decode():
                return 304, [(b"etag", tag), (b"cache-control", cache)], b""
            kind = b"text/css" if path.endswith(".css") else b"text/javascript"
            head = [(b"content-type", kind), (b"cache-control", cache), (b"etag", tag)]
            return 200, head, body

        return handler

    origin.route("/", page)
    origin.route("/auto", auto_page)
    origin.route("/own", own_page)
    origin.route("/missing", page)
    for path in assets:
        origin.route(path, asset(path))
    return assets


@dataclass
class Frame:
    type: int
    stream_id: int
    promised: int | None = None


class FrameLog:
    """Every frame the server sent, parsed from the raw bytes (RFC 9113 §4.1)."""

    def __init__(self) -> None:
        self.frames: list[Frame] = []
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while len(self._buffer) >= 9:
            length = int.from_bytes(self._buffer[:3], "big")
            if len(self._buffer) < 9 + length:
                return
            kind, flags = self._buffer[3], self._buffer[4]
            sid = int.from_bytes(self._buffer[5:9], "big") & 0x7FFFFFFF
            payload = self._buffer[9 : 9 + length]
            self._buffer = self._buffer[9 + length :]
            promised = None
            if kind == PUSH_PROMISE:
                pad = 1 if flags & 0x8 else 0
                promised = int.from_bytes(payload[pad : pad + 4], "big") & 0x7FFFFFFF
            self.frames.append(Frame(kind, sid, promised))

    def on(self, stream_id: int, kind: int) -> list[int]:
        """Positions of the frames of `kind` on `stream_id`."""
        return [i for i, f in enumerate(self.frames) if f.stream_id == stream_id and f.type == kind]


class H2Page:
    """Load one page over a raw h2 connection and record every event and every frame."""

    def __init__(
        self,
        *,
        enable_push: bool = True,
        cookie: str | None = None,
        max_concurrent_streams: int | None = None,
        accept_encoding: bytes = b"gzip",
    ) -> None:
        self.enable_push = enable_push
        self.cookie = cookie
        self.max_concurrent_streams = max_concurrent_streams
        self.accept_encoding = accept_encoding
        self.events: list[h2.events.Event] = []
        self.wire = FrameLog()
        self.bodies: dict[int, bytes] = {}
        self.promises: dict[int, dict[bytes, bytes]] = {}
        self.responses: dict[int, dict[bytes, bytes]] = {}
        self.informational: list[dict[bytes, bytes]] = []
        self.reset_by_server: dict[int, int] = {}

    async def load(
        self, port: int, ctx: ssl.SSLContext, path: str = "/", *, reset_pushes: bool = False
    ) -> None:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ctx, server_hostname="localhost"
        )
        conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        initial = {h2.settings.SettingCodes.ENABLE_PUSH: int(self.enable_push)}
        if self.max_concurrent_streams is not None:
            initial[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] = self.max_concurrent_streams
        conn.local_settings = h2.settings.Settings(client=True, initial_values=initial)
        conn.initiate_connection()
        headers = [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", f"localhost:{port}".encode()),
            (b":path", path.encode()),
            (b"accept-encoding", self.accept_encoding),
            (b"accept-language", b"de-CH"),
            (b"user-agent", b"h2-test"),
            (b"x-not-forwarded", b"1"),
        ]
        if self.cookie:
            headers.append((b"cookie", self.cookie.encode()))
        conn.send_headers(1, headers, end_stream=True)
        writer.write(conn.data_to_send())
        open_streams = {1}
        try:
            for _ in range(10_000):  # bounded: a page and a few assets
                if not open_streams:
                    break
                data = await asyncio.wait_for(reader.read(65536), 10)
                if not data:
                    break
                self.wire.feed(data)
                try:
                    received = conn.receive_data(data)
                except h2.exceptions.StreamClosedError:
                    continue  # frames already in flight for a pushed stream we reset
                for event in received:
                    self._record(event, conn, open_streams, reset_pushes)
                writer.write(conn.data_to_send())
        finally:
            writer.close()

    def _record(
        self,
        event: h2.events.Event,
        conn: h2.connection.H2Connection,
        open_streams: set[int],
        reset_pushes: bool,
    ) -> None:
        self.events.append(event)
        if isinstance(event, h2.events.PushedStreamReceived):
            self.promises[event.pushed_stream_id] = dict(event.headers)
            if reset_pushes:
                with contextlib.suppress(h2.exceptions.StreamClosedError):
                    conn.reset_stream(event.pushed_stream_id, h2.errors.ErrorCodes.CANCEL)
            else:
                open_streams.add(event.pushed_stream_id)
        elif isinstance(event, h2.events.InformationalResponseReceived):
            self.informational.append(dict(event.headers))
        elif isinstance(event, h2.events.ResponseReceived):
            self.responses[event.stream_id] = dict(event.headers)
        elif isinstance(event, h2.events.DataReceived):
            conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            self.bodies[event.stream_id] = self.bodies.get(event.stream_id, b"") + event.data
        elif isinstance(event, h2.events.StreamEnded):
            open_streams.discard(event.stream_id)
        elif isinstance(event, h2.events.StreamReset):
            self.reset_by_server[event.stream_id] = event.error_code
            open_streams.discard(event.stream_id)

    @property
    def final_headers(self) -> dict[bytes, bytes]:
        return self.responses.get(1, {})

    @property
    def pushed_paths(self) -> list[bytes]:
        return sorted(h[b":path"] for h in self.promises.values())

    def pushed_body(self, path: bytes) -> bytes | None:
        for sid, request in self.promises.items():
            if request[b":path"] == path:
                return self.bodies.get(sid)
        return None

    @property
    def cookie_set(self) -> str | None:
        value = self.final_headers.get(b"set-cookie")
        return value.split(b";")[0].decode() if value else None


def access_log(directory: Path) -> list[dict[str, object]]:
    text = (directory / "access.log").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@contextlib.asynccontextmanager
async def push_site(certs: Path) -> AsyncIterator[tuple[Origin, Running]]:
    """The site of `serve_site` on a loopback origin, and a bridge with ROUTES in front of it."""
    async with Origin() as origin:
        serve_site(origin)
        async with running_bridge(
            config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
        ) as b:
            yield origin, b


async def settle(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    """Wait (bounded) for something bridge does after the client has what it needs."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_http2_push_before_the_page(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            assets = serve_site(origin, think=0.2)
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                port = b.ports["https"]
                page = H2Page()
                await page.load(port, b.client_ssl(("h2",)))
                assert page.pushed_paths == [b"/static/app.css", b"/static/app.js"]
                # On the wire: 103, then every PUSH_PROMISE, then the page's final HEADERS.
                heads = page.wire.on(1, HEADERS)
                promises = page.wire.on(1, PUSH_PROMISE)
                assert len(heads) == 2 and len(promises) == 2
                assert heads[0] < min(promises) and max(promises) < heads[1]
                for sid, request in page.promises.items():
                    assert request[b":method"] == b"GET"
                    assert request[b":scheme"] == b"https"
                    assert request[b":authority"] == f"localhost:{port}".encode()
                    assert request[b"accept-encoding"] == b"gzip"
                    assert request[b"accept-language"] == b"de-CH"
                    assert request[b"user-agent"] == b"h2-test"
                    assert b"x-not-forwarded" not in request and b"cookie" not in request
                    # the upstream's own status, caching headers and bytes
                    path = request[b":path"].decode()
                    assert page.bodies[sid] == assets[path]
                    head = page.responses[sid]
                    assert head[b":status"] == b"200"
                    assert head[b"cache-control"] == b"max-age=60"
                    assert head[b"etag"] == etag_of(assets[path])
                    assert head[b"content-length"] == str(len(assets[path])).encode()
                    assert int(head[b"age"]) >= 0
                assert page.bodies[1] == b"<html>page</html>"
                # the asset fetch went through the proxy path: the page's Host, forwarded
                # negotiation fields, nothing private of the client's
                fetch = next(r for r in origin.requests if r.path == "/static/app.css")
                assert fetch.header("host") == f"localhost:{port}"
                assert fetch.header("accept-language") == "de-CH"
                assert fetch.header("x-not-forwarded") is None
                assert fetch.header("cookie") is None
                # Early Hints and preload Links for the same assets
                assert [h[b":status"] for h in page.informational] == [b"103"]
                link = page.informational[0][b"link"]
                assert b"</static/app.css>; rel=preload; as=style" in link
                assert b"</static/app.js>; rel=preload; as=script" in link
                assert page.final_headers[b"link"] == link
                await settle(lambda: len(access_log(b.directory)) >= 3, "access log lines")
                lines = access_log(b.directory)
                pushed = sorted(str(e["target"]) for e in lines if e["pushed"] is True)
                assert pushed == ["/static/app.css", "/static/app.js"]
                assert [e["pushed"] for e in lines if e["target"] == "/"] == [False]

    run(body())


def test_cookie_suppresses_a_second_push_and_a_changed_asset_is_pushed_again(
    certs: Path,
) -> None:
    async def body() -> None:
        async with Origin() as origin:
            # no-cache: every page load revalidates, so a change upstream is seen at once
            assets = serve_site(origin, think=0.05, cache=b"no-cache")
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                port, ctx = b.ports["https"], b.client_ssl(("h2",))
                first = H2Page()
                await first.load(port, ctx)
                assert first.pushed_paths == [b"/static/app.css", b"/static/app.js"]
                cookie = first.cookie_set
                assert cookie is not None and cookie.startswith("bridge_pushed=")
                assert len(cookie.split("=", 1)[1].split(".")) == 2
                flags = first.final_headers[b"set-cookie"].lower()
                assert b"path=/" in flags and b"httponly" in flags and b"secure" in flags
                # the cookie covers both versions: no push, and no new cookie
                again = H2Page(cookie=cookie)
                await again.load(port, ctx)
                assert again.pushed_paths == []
                assert again.informational  # hints still go out
                assert again.cookie_set is None
                revalidations = [
                    r for r in origin.requests if r.header("if-none-match") is not None
                ]
                assert {r.path for r in revalidations} == {"/static/app.css", "/static/app.js"}
                # the upstream changes one asset: it alone is pushed again, in its new version
                assets["/static/app.css"] = CSS + b"/* v2 */"
                third = H2Page(cookie=cookie)
                await third.load(port, ctx)
                assert third.pushed_paths == [b"/static/app.css"]
                assert third.pushed_body(b"/static/app.css") == CSS + b"/* v2 */"
                assert max(third.wire.on(1, PUSH_PROMISE)) < third.wire.on(1, HEADERS)[-1]
                newer = third.cookie_set
                assert newer is not None and newer != cookie
                fourth = H2Page(cookie=newer)
                await fourth.load(port, ctx)
                assert fourth.pushed_paths == []
                # a browser without the cookie gets the new version too
                fresh = H2Page()
                await fresh.load(port, ctx)
                assert fresh.pushed_body(b"/static/app.css") == CSS + b"/* v2 */"

    run(body())


def test_cookie_stays_bounded(certs: Path) -> None:
    async def body() -> None:
        async with push_site(certs) as (_origin, b):
            old = ".".join(f"{i:08x}" for i in range(100))
            page = H2Page(cookie=f"bridge_pushed={old}; other=1")
            await page.load(b.ports["https"], b.client_ssl(("h2",)))
            assert page.pushed_paths == [b"/static/app.css", b"/static/app.js"]
            cookie = page.cookie_set
            assert cookie is not None
            tags = cookie.split("=", 1)[1].split(".")
            assert len(tags) == 32
            assert tags[:30] == [f"{i:08x}" for i in range(70, 100)]  # oldest dropped
            # the two new tags are the versions just pushed: they suppress the next push
            again = H2Page(cookie=cookie)
            await again.load(b.ports["https"], b.client_ssl(("h2",)))
            assert again.pushed_paths == []

    run(body())


def test_no_push_with_enable_push_0_and_no_cookie_claiming_it(certs: Path) -> None:
    async def body() -> None:
        async with push_site(certs) as (origin, b):
            page = H2Page(enable_push=False)
            await page.load(b.ports["https"], b.client_ssl(("h2",)))
            assert page.promises == {} and page.wire.on(1, PUSH_PROMISE) == []
            assert page.bodies[1] == b"<html>page</html>"
            assert page.informational  # preload hints still sent
            assert b"rel=preload" in page.final_headers[b"link"]
            assert page.cookie_set is None  # nothing was pushed, so nothing is claimed
            assert origin.count("/static/") == 0  # and nothing fetched for it

    run(body())


def test_pushes_count_against_the_clients_stream_limit(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            serve_site(origin, think=0.1)
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                port, ctx = b.ports["https"], b.client_ssl(("h2",))
                page = H2Page(max_concurrent_streams=1)
                await page.load(port, ctx)
                assert len(page.promises) == 1
                (only,) = page.pushed_paths
                assert page.reset_by_server == {}
                # the cookie names only what was pushed: the other asset comes next time
                other = H2Page(cookie=page.cookie_set)
                await other.load(port, ctx)
                assert len(other.pushed_paths) == 1 and other.pushed_paths != [only]

    run(body())


def test_a_reset_pushed_stream_stops_and_the_shared_fetch_survives(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            assets = serve_site(origin, asset_think=0.5)
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                port, ctx = b.ports["https"], b.client_ssl(("h2",))
                cancelled = H2Page()
                await cancelled.load(port, ctx, reset_pushes=True)
                assert cancelled.bodies[1] == b"<html>page</html>"
                assert len(cancelled.promises) == 2
                for sid in cancelled.promises:
                    # RST_STREAM reached bridge long before the asset: nothing was sent on it
                    assert cancelled.wire.on(sid, HEADERS) == []
                    assert cancelled.wire.on(sid, DATA) == []
                # the asset fetches that stream started go on for everyone else
                other = H2Page()
                await other.load(port, ctx)
                for path, content in assets.items():
                    assert other.pushed_body(path.encode()) == content
                assert origin.count("/static/app.css") == 1
                assert origin.count("/static/app.js") == 1
                await settle(
                    lambda: sum(e["pushed"] is True for e in access_log(b.directory)) == 4,
                    "pushed streams logged",
                )
                gone = [
                    e for e in access_log(b.directory) if e["pushed"] is True and e["status"] == 499
                ]
                assert len(gone) == 2 and all(e["bytes"] == 0 for e in gone)

    run(body())


def test_a_failed_asset_is_reset_not_pushed_as_an_error(certs: Path) -> None:
    async def body() -> None:
        async with push_site(certs) as (_origin, b):
            page = H2Page()
            await page.load(b.ports["https"], b.client_ssl(("h2",)), "/missing")
            assert page.bodies[1] == b"<html>page</html>"
            gone = next(s for s, r in page.promises.items() if r[b":path"].endswith(b"gone.css"))
            assert page.wire.on(gone, HEADERS) == []  # no 404 the browser would cache
            assert page.reset_by_server[gone] == h2.errors.ErrorCodes.CANCEL
            assert page.pushed_body(b"/static/app.js") == JS
            assert page.cookie_set is not None and len(page.cookie_set.split(".")) == 1

    run(body())


def test_asset_cache_fetches_once(certs: Path) -> None:
    async def body() -> None:
        async with push_site(certs) as (origin, b):
            for _ in range(20):
                page = H2Page()
                await page.load(b.ports["https"], b.client_ssl(("h2",)))
                assert page.pushed_body(b"/static/app.css") == CSS
                assert page.pushed_body(b"/static/app.js") == JS
            assert origin.count("/static/app.css") == 1
            assert origin.count("/static/app.js") == 1
            assert origin.count("/") == 20 + 2

    run(body())


def test_asset_cache_keeps_variants_apart(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            serve_site(origin)

            async def negotiated(
                request: OriginRequest,
            ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
                head = [(b"cache-control", b"max-age=60"), (b"vary", b"Accept-Encoding")]
                if "gzip" in (request.header("accept-encoding") or ""):
                    return 200, [*head, (b"content-encoding", b"gzip")], GZ_CSS
                return 200, head, CSS

            origin.route("/static/app.css", negotiated)
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                port, ctx = b.ports["https"], b.client_ssl(("h2",))
                for encoding in (b"gzip", b"identity", b"gzip", b"identity"):
                    page = H2Page(accept_encoding=encoding)
                    await page.load(port, ctx)
                    pushed = page.pushed_body(b"/static/app.css")
                    assert pushed == (GZ_CSS if encoding == b"gzip" else CSS)
                assert origin.count("/static/app.css") == 2  # one per variant

    run(body())


def test_push_auto_learns_from_preload_links(certs: Path) -> None:
    async def body() -> None:
        async with push_site(certs) as (_origin, b):
            first = H2Page()
            await first.load(b.ports["https"], b.client_ssl(("h2",)), "/auto")
            assert first.pushed_paths == [] and first.informational == []
            second = H2Page()
            await second.load(b.ports["https"], b.client_ssl(("h2",)), "/auto")
            # same-origin only, and not what the page marked `nopush`
            assert second.pushed_paths == [b"/static/app.css"]
            assert second.pushed_body(b"/static/app.css") == CSS
            hint = second.informational[0][b"link"]
            assert hint == b"</static/app.css>; rel=preload; as=style"
            # the upstream's own Link already names the asset: not added twice
            assert second.final_headers[b"link"].count(b"/static/app.css") == 1

    run(body())


def test_upstream_links_win_and_ours_fill_in(certs: Path) -> None:
    async def body() -> None:
        async with push_site(certs) as (_origin, b):
            page = H2Page()
            await page.load(b.ports["https"], b.client_ssl(("h2",)), "/own")
            final = [
                v
                for e in page.events
                if isinstance(e, h2.events.ResponseReceived) and e.stream_id == 1
                for n, v in e.headers
                if n == b"link"
            ]
            joined = b", ".join(final)
            assert joined.count(b"/static/app.css") == 1
            assert b"</static/app.css>; rel=preload; as=style; crossorigin" in joined
            assert b"</static/app.js>; rel=preload; as=script" in joined

    run(body())


async def _h11_page(port: int) -> list[h11.Event]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = h11.Connection(h11.CLIENT)
    headers = [(b"host", b"localhost"), (b"connection", b"close")]
    request = h11.Request(method="GET", target="/", headers=headers)
    writer.write(client.send(request) + client.send(h11.EndOfMessage()))
    events: list[h11.Event] = []
    try:
        for _ in range(1000):  # bounded
            event = client.next_event()
            if event is h11.NEED_DATA:
                client.receive_data(await asyncio.wait_for(reader.read(65536), 10))
                continue
            events.append(event)
            if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
    finally:
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
                assert b"</static/app.js>; rel=preload; as=script" in link
                final = next(e for e in events if isinstance(e, h11.Response))
                assert dict(final.headers)[b"link"] == link
                assert b"set-cookie" not in dict(final.headers)  # nothing pushed on HTTP/1.1
                # h11 clients speak only 1.1: an HTTP/1.0 request as raw bytes
                old = await raw_exchange(
                    b.ports["http"], b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"
                )
                assert old.startswith(b"HTTP/1.1 200")  # RFC 9110 §2.5: we answer as 1.1
                assert old.count(b"HTTP/1.1 ") == 1  # one status line: no 103 before it
                assert b"rel=preload" in old
                # over TLS too (ALPN http/1.1), same hints
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1",
                    b.ports["https"],
                    ssl=b.client_ssl(("http/1.1",)),
                    server_hostname="localhost",
                )
                writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                raw = b""
                for _ in range(1000):
                    piece = await asyncio.wait_for(reader.read(65536), 10)
                    if not piece:
                        break
                    raw += piece
                writer.close()
                assert raw.startswith(b"HTTP/1.1 103 ")
                assert b"\r\n\r\nHTTP/1.1 200 " in raw

    run(body())


def test_combined_access_log_marks_pushed_responses(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            serve_site(origin)
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs)
            text = text.replace("format: json", "format: combined")
            async with running_bridge(text, certs) as b:
                await H2Page().load(b.ports["https"], b.client_ssl(("h2",)))
                log = b.directory / "access.log"
                await settle(lambda: len(log.read_text().splitlines()) >= 3, "three lines")
                lines = log.read_text().splitlines()
                pushed = [line for line in lines if line.endswith(" pushed")]
                assert len(pushed) == 2
                assert all('"GET /static/app.' in line for line in pushed)
                page = [line for line in lines if '"GET / HTTP/2.0"' in line]
                assert len(page) == 1 and "pushed" not in page[0]

    run(body())


def test_nghttp_sees_push_promises(certs: Path) -> None:
    nghttp = require_tool("nghttp")

    async def body() -> None:
        async with push_site(certs) as (_origin, b):
            proc = await asyncio.create_subprocess_exec(
                nghttp,
                "-nv",
                f"https://localhost:{b.ports['https']}/",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 20)
            text = out.decode(errors="replace")
            assert proc.returncode == 0, text[-2000:]
            assert text.count("recv PUSH_PROMISE frame") == 2, text[-2000:]
            assert ":path: /static/app.css" in text
            assert ":path: /static/app.js" in text
            assert ":status: 103" in text

    run(body())
