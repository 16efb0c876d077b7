"""Live reload: routes.yaml and certificates swapped under live subscribers.

- 200 subscribers of one stream (SSE and WebSocket, over HTTP/1.1 and HTTP/2) while the upstream
  keeps changing and the file is reloaded with routes added, removed and moved: none of them is
  dropped, and each sees every event id exactly once, in order, with no gap.
- A removed stream's subscribers are told to reconnect (SSE `retry:`, WebSocket 1013).
- An invalid file is refused with its file:line:col problems; the old table keeps serving.
- A new certificate is what a new connection sees; an open connection keeps working.
- `bridge reload` validates, then signals the process named by `bridge serve --pid-file`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge import settings
from bridge.certs import ensure_dev_certs
from tests.support.harness import config_text, run, running_bridge
from tests.support.origin import Origin
from tests.support.subscribers import H2SseConnection, H2WebSocket, sse, ws_http1

ROOT = Path(__file__).resolve().parents[2]
PER_KIND = 50

BEFORE = """\
routes:
  - path: /prices/{symbol}
    stream:
      upstream: app
      poll: /api/price?s={symbol}
      every: 50ms
  - path: /gone/{x}
    stream:
      upstream: app
      poll: /api/price?s={x}
      every: 50ms
  - path: /{rest*}
    upstream: app
"""

# /prices moves down (its index changes), /gone goes, /fresh comes: only /prices is unchanged.
AFTER = """\
routes:
  - path: /fresh/{rest*}
    upstream: app
  - path: /prices/{symbol}
    stream:
      upstream: app
      poll: /api/price?s={symbol}
      every: 50ms
  - path: /{rest*}
    upstream: app
"""


@pytest.fixture(autouse=True)
def short_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settings, "STREAM_LINGER", 0.5)


def seq(event_id: str) -> tuple[int, int]:
    epoch, number = event_id.split("-")
    return int(epoch), int(number)


def assert_exactly_once(ids: list[str], what: str) -> None:
    """In order, no duplicate, no gap (ids are <epoch>-<seq>, seq +1 per event)."""
    assert ids, f"{what}: no event"
    numbers = [seq(i) for i in ids]
    assert len({epoch for epoch, _ in numbers}) == 1, (what, ids)
    values = [n for _, n in numbers]
    assert values == list(range(values[0], values[0] + len(values))), (what, ids)


async def drain_until(sub: Any, final: str, ids: list[str], timeout: float = 10.0) -> None:
    """Collect `sub`'s event ids into `ids` until the one carrying `final` arrives."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        event = await sub.next_event(timeout=max(remaining, 0.01))
        ids.append(event.id)
        if json.loads(event.data) == json.loads(final):
            return


def write_config(b: Any, body: str, origin: Origin, certs: Path, **kwargs: Any) -> None:
    text = config_text(body, upstream_url=origin.url, certs=certs, **kwargs)
    (b.directory / "routes.yaml").write_text(text)


def test_reload_under_200_subscribers_drops_none_and_repeats_nothing(
    certs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bridge")

    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"n": 0})
            text = config_text(BEFORE, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b, contextlib.AsyncExitStack() as stack:
                ssl_h2 = b.client_ssl(("h2",))
                # HTTP/1.1 SSE: one connection each.
                h1 = await stack.enter_async_context(
                    httpx.AsyncClient(
                        http2=False, timeout=10, limits=httpx.Limits(max_connections=PER_KIND + 5)
                    )
                )
                h1_sse = [
                    await stack.enter_async_context(sse(h1, b.url("http", "/prices/A")))
                    for _ in range(PER_KIND)
                ]
                # HTTP/2 SSE: fifty streams on one connection.
                mux = H2SseConnection()
                await mux.open(b.ports["https"], ssl_h2)
                stack.push_async_callback(mux.close)
                h2_sse = [await mux.subscribe("/prices/A") for _ in range(PER_KIND)]
                # HTTP/1.1 WebSocket: one connection each.
                ws_url = b.url("http", "/prices/A").replace("http", "ws")
                h1_ws = [
                    await stack.enter_async_context(ws_http1(ws_url, None)) for _ in range(PER_KIND)
                ]
                # HTTP/2 WebSocket (RFC 8441): fifty streams on one connection.
                h2_ws_conn = H2WebSocket()
                await h2_ws_conn.open(b.ports["https"], "/prices/A", ssl_h2)
                stack.push_async_callback(h2_ws_conn.close)
                h2_ws = [h2_ws_conn.first] + [
                    await h2_ws_conn.open_stream("/prices/A") for _ in range(PER_KIND - 1)
                ]
                # And a subscriber of each kind on the stream the reload removes.
                gone_sse = await stack.enter_async_context(sse(h1, b.url("http", "/gone/G")))
                gone_ws = await stack.enter_async_context(
                    ws_http1(b.url("http", "/gone/G").replace("http", "ws"), None)
                )
                subscribers: list[tuple[str, Any]] = [
                    *(("h1 sse", s) for s in h1_sse),
                    *(("h2 sse", s) for s in h2_sse),
                    *(("h1 ws", s) for s in h1_ws),
                    *(("h2 ws", s.sub) for s in h2_ws),
                ]
                assert len(subscribers) == 4 * PER_KIND
                seen: list[list[str]] = [[] for _ in subscribers]
                for (_, sub), ids in zip(subscribers, seen, strict=True):
                    ids.append((await sub.next_event()).id)
                await gone_sse.next_event()
                await gone_ws.next_event()
                assert b.bridge.site.hub.subscriber_count == 4 * PER_KIND + 2

                async def publish() -> None:
                    for n in range(1, 13):
                        origin.set("/api/price", {"n": n})
                        await asyncio.sleep(0.12)
                        if n == 5:
                            write_config(b, AFTER, origin, certs)
                            assert await b.bridge.reload()

                publisher = asyncio.create_task(publish())

                async def follow(index: int) -> None:
                    await drain_until(subscribers[index][1], '{"n": 12}', seen[index])

                await asyncio.gather(publisher, *(follow(i) for i in range(len(subscribers))))
                for (kind, _), ids in zip(subscribers, seen, strict=True):
                    assert_exactly_once(ids, kind)
                # A newcomer after the reload joins the same stream (same ids), not a new one.
                late = await mux.subscribe("/prices/A")
                assert (await late.next_event()).id == seen[0][-1]
                # One channel served them all, before and after: its history carried over.
                [channel] = b.bridge.site.hub.channels.values()
                assert channel.route.path == "/prices/{symbol}" and channel.route.index == 1
                assert len(channel.subscribers) == 4 * PER_KIND + 1  # with the newcomer
                assert not any(s.closed.is_set() for s in h1_sse)
                assert all(s.closed is None and not s.stream_ended.is_set() for s in h2_ws)
                # The removed stream's subscribers were told to come back, spread out.
                await asyncio.wait_for(gone_sse.closed.wait(), 5)
                assert gone_sse.parser.retry is not None and gone_sse.parser.retry >= 1000
                with pytest.raises(Exception):  # noqa: B017 - websockets' ConnectionClosed
                    await asyncio.wait_for(gone_ws.ws.recv(), 5)
                assert gone_ws.ws.close_code == 1013
                # The new table routes new requests: /gone/G is proxied now, not a stream.
                await h1.get(b.url("http", "/gone/G"))
                assert "/gone/G" in [r.path for r in origin.requests]
                assert b.bridge.reloads == {"ok": 1}
        messages = [r.getMessage() for r in caplog.records if r.name == "bridge"]
        [line] = [m for m in messages if m.startswith("reloaded ")]
        assert "routes added ['/fresh/{rest*}'], removed ['/gone/{x}'], changed none" in line
        assert "reordered" not in line and "streams kept 1, restarted 0, ended 1" in line

    run(body(), timeout=90)


def test_a_changed_stream_restarts_its_poller_and_keeps_its_subscribers(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"n": 0})
            origin.json("/api/v2/price", {"v2": True})
            text = config_text(BEFORE, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                mux = H2SseConnection()
                await mux.open(b.ports["https"], b.client_ssl(("h2",)))
                try:
                    kept = await mux.subscribe("/prices/A")
                    first = await kept.next_event()
                    gone = await mux.subscribe("/gone/G")
                    await gone.next_event()
                    changed = BEFORE.replace("poll: /api/price?s={symbol}", "poll: /api/v2/price")
                    # /gone now varies by a header: its subscribers are not the same stream
                    changed = changed.replace(
                        "poll: /api/price?s={x}", "poll: /api/price?s={x}\n      vary: [x-user]"
                    )
                    write_config(b, changed, origin, certs)
                    assert await b.bridge.reload()
                    second = await kept.next_event()
                    assert json.loads(second.data) == {"v2": True}
                    assert second.id > first.id  # ids only grow, across the new poller too
                    assert "/api/v2/price" in [r.path for r in origin.requests]
                    await asyncio.wait_for(gone.closed.wait(), 5)
                    assert not kept.closed.is_set()
                finally:
                    await mux.close()

    run(body())


def test_invalid_reload_is_refused_and_the_old_table_keeps_serving(
    certs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"n": 0})
            text = config_text(BEFORE, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                async with httpx.AsyncClient(timeout=5) as client:
                    async with sse(client, b.url("http", "/prices/A")) as sub:
                        first = await sub.next_event()
                        path = b.directory / "routes.yaml"
                        path.write_text(path.read_text().replace("every: 50ms", "every: soon", 1))
                        assert not await b.bridge.reload()
                        origin.set("/api/price", {"n": 1})
                        second = await sub.next_event()
                        assert seq(second.id)[1] == seq(first.id)[1] + 1
                        # the old table still answers, /gone included
                        assert (await client.get(b.url("http", "/gone/x"))).status_code == 200
                        assert b.bridge.reloads == {"invalid": 1}
                        shown = str(b.directory / "routes.yaml")
                        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
                        assert (
                            f"reload refused: {shown}:21:14: routes[0].stream.every: expected a"
                            ' duration like "2s" (units: ms, s, m, h)'
                        ) in errors, errors

    run(body())


def test_a_new_certificate_is_what_a_new_connection_sees(certs: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    ensure_dev_certs(other)  # another CA and server certificate

    async def body() -> None:
        async with Origin() as origin:
            text = config_text(BEFORE, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                old_ca = b.client_ssl()
                new_ca = ssl.create_default_context(cafile=str(other / "ca.crt"))
                async with httpx.AsyncClient(verify=old_ca, http2=True, timeout=5) as kept:
                    assert (await kept.get(b.url("https", "/echo"))).status_code == 200
                    (b.directory / "routes.yaml").write_text(
                        config_text(BEFORE, upstream_url=origin.url, certs=other)
                    )
                    assert await b.bridge.reload()
                    # the open connection keeps its certificate and goes on working
                    assert (await kept.get(b.url("https", "/echo"))).status_code == 200
                async with httpx.AsyncClient(verify=new_ca, timeout=5) as fresh:
                    assert (await fresh.get(b.url("https", "/echo"))).status_code == 200
                async with httpx.AsyncClient(verify=old_ca, timeout=5) as stale:
                    with pytest.raises(httpx.ConnectError):
                        await stale.get(b.url("https", "/echo"))

    run(body())


def test_a_reload_naming_missing_certificate_files_is_refused(
    certs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A typo in tls.cert on reload: refused at its file:line:col, the old certificate keeps
    serving, and nothing is written into the named folder."""
    live = tmp_path / "live"
    live.mkdir()

    async def body() -> None:
        async with Origin() as origin:
            text = config_text(BEFORE, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                broken = text.replace(f"{certs}/server.crt", f"{live}/fullchain.pem")
                assert broken != text
                (b.directory / "routes.yaml").write_text(broken)
                assert not await b.bridge.reload()
                assert b.bridge.reloads == {"invalid": 1}
                async with httpx.AsyncClient(verify=b.client_ssl(), timeout=5) as fresh:
                    assert (await fresh.get(b.url("https", "/echo"))).status_code == 200
                shown = str(b.directory / "routes.yaml")
                errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
                assert (
                    f"reload refused: {shown}:7:9: tls.cert: {live / 'fullchain.pem'} not found"
                ) in errors, errors

    run(body())
    assert list(live.iterdir()) == []


def test_a_removed_listener_stops_accepting_and_its_connections_drain(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"n": 0})
            text = config_text(BEFORE, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                port = b.ports["http"]
                async with httpx.AsyncClient(timeout=5) as client:
                    async with sse(client, b.url("http", "/prices/A")) as sub:
                        await sub.next_event()
                        no_http = text.replace('  http: "127.0.0.1:0"\n  http_mode: serve\n', "")
                        assert no_http != text
                        (b.directory / "routes.yaml").write_text(no_http)
                        assert await b.bridge.reload()
                        assert "http" not in b.ports
                        with pytest.raises(OSError):
                            await asyncio.open_connection("127.0.0.1", port)
                        origin.set("/api/price", {"n": 1})  # the open stream goes on
                        assert json.loads((await sub.next_event()).data) == {"n": 1}

    run(body())


def test_a_reload_that_cannot_bind_changes_nothing(certs: Path) -> None:
    import socket

    async def body() -> None:
        async with Origin() as origin:
            text = config_text(BEFORE, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                ports = dict(b.ports)
                with socket.socket() as busy:
                    busy.bind(("127.0.0.1", 0))
                    busy.listen()
                    taken = busy.getsockname()[1]
                    write_config(
                        b, AFTER, origin, certs, extra_listen=f'admin: "127.0.0.1:{taken}"'
                    )
                    # http moves (it binds), then admin cannot: both are undone
                    path = b.directory / "routes.yaml"
                    moved = path.read_text().replace('http: "127.0.0.1:0"', 'http: "127.0.0.2:0"')
                    path.write_text(moved)
                    assert not await b.bridge.reload()
                assert b.ports == ports
                assert b.bridge.reloads == {"failed": 1}
                assert "admin" not in b.ports
                # the old table: /gone is still a stream route, /fresh not a route of its own
                assert [r.path for r in b.bridge.config.routes][1] == "/gone/{x}"
                async with httpx.AsyncClient(timeout=5) as client:
                    assert (await client.get(b.url("http", "/echo"))).status_code == 200

    run(body())


def test_reload_binds_an_added_admin_listener(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            text = config_text(BEFORE, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                assert "admin" not in b.ports
                write_config(b, BEFORE, origin, certs, extra_listen='admin: "127.0.0.1:0"')
                assert await b.bridge.reload()
                url = f"http://127.0.0.1:{b.ports['admin']}/metrics"
                async with httpx.AsyncClient(timeout=5) as client:
                    metrics = (await client.get(url)).text
                assert 'bridge_reloads_total{outcome="ok"} 1.0' in metrics
                lines = (b.directory / "access.log").read_text().splitlines()
                [event] = [json.loads(x) for x in lines if '"kind":"reload"' in x]
                assert "listeners admin ('127.0.0.1', 0)" in event["note"], event

    run(body())


def test_bridge_reload_signals_the_pid_file_process(tmp_path: Path, certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            config = tmp_path / "routes.yaml"
            config.write_text(config_text(BEFORE, upstream_url=origin.url, certs=certs))
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bridge", "serve", "-c", str(config),
                "--pid-file", str(tmp_path / "bridge.pid"),
                env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            assert proc.stderr is not None
            try:
                await read_until(proc.stderr, "bridge listening")
                assert (tmp_path / "bridge.pid").read_text().strip() == str(proc.pid)
                # A file with a mistake is refused before the process is even asked.
                config.write_text(config.read_text().replace("every: 50ms", "every: x", 1))
                refused = await command("reload", "-c", str(config), env=env)
                assert refused.returncode == 1 and "routes[0].stream.every" in refused.stderr
                config.write_text(config_text(AFTER, upstream_url=origin.url, certs=certs))
                done = await command("reload", "-c", str(config), env=env)
                assert done.returncode == 0, done.stderr
                assert f"asked process {proc.pid} to reload" in done.stdout
                line = await read_until(proc.stderr, "reloaded ")
                assert "routes added ['/fresh/{rest*}']" in line
                proc.send_signal(signal.SIGTERM)
                await read_until(proc.stderr, "stopped")
                assert await asyncio.wait_for(proc.wait(), 20) == 0
                assert not (tmp_path / "bridge.pid").exists()
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()

    run(body())


async def read_until(stream: asyncio.StreamReader, needle: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(stream.readline(), max(deadline - time.monotonic(), 0.01))
        if not line:
            break
        text = line.decode()
        seen.append(text)
        if needle in text:
            return text
    raise AssertionError(f"no {needle!r} in: {''.join(seen)}")


async def command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "bridge", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done


def test_http3_warns_only_when_the_reload_changes_what_it_cannot(
    certs: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """HTTP/3's endpoint is made once at start: a reload that leaves its address and its
    certificate as they are says nothing about it; a new certificate (or dropping HTTP/3) does."""
    other = tmp_path / "other"
    ensure_dev_certs(other)
    warning = "reload: HTTP/3 keeps its listener and certificate until a restart"

    def warned() -> int:
        return sum(r.getMessage() == warning for r in caplog.records)

    async def body() -> None:
        async with Origin() as origin:
            text = config_text(BEFORE, upstream_url=origin.url, certs=certs, http3=True)
            async with running_bridge(text, certs) as b:
                path = b.directory / "routes.yaml"
                path.write_text(path.read_text().replace("every: 50ms", "every: 60ms"))
                assert await b.bridge.reload()
                assert warned() == 0
                path.write_text(
                    config_text(BEFORE, upstream_url=origin.url, certs=other, http3=True)
                )
                assert await b.bridge.reload()
                assert warned() == 1
                path.write_text(config_text(BEFORE, upstream_url=origin.url, certs=other))
                assert await b.bridge.reload()
                assert warned() == 2

    with caplog.at_level(logging.WARNING, logger="bridge"):
        run(body())
