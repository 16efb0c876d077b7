"""Reverse proxy end to end: real TLS, real clients (httpx over HTTP/1.1 and HTTP/2, raw
sockets for malformed input), a real loopback origin."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import httpx
import pytest

from tests.support.harness import config_text, raw_exchange, run, running_bridge
from tests.support.origin import Origin, pattern_bytes, streamed

ROUTES = """\
routes:
  - path: /admin/{rest*}
    upstream: app
  - path: /{rest*}
    upstream: app
"""


def client(b, http2: bool) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    return httpx.AsyncClient(verify=b.client_ssl(), http2=http2, timeout=20)


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_get_forwards_headers_and_reuses_connections(certs: Path, http2: bool) -> None:
    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            async with client(b, http2) as c:
                for i in range(5):
                    r = await c.get(b.url("https", f"/echo?i={i}"), headers={"cookie": "a=1"})
                    assert r.status_code == 200
                    assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
                    echo = json.loads(r.text)
                    assert echo["target"] == f"/echo?i={i}"
                    headers = {k: v for k, v in echo["headers"]}
                    assert headers["x-forwarded-for"] == "127.0.0.1"
                    assert headers["x-forwarded-proto"] == "https"
                    assert headers["x-forwarded-host"] == f"127.0.0.1:{b.ports['https']}"
                    assert headers["forwarded"].startswith("for=127.0.0.1;proto=https")
                    assert headers["via"] == ("2 bridge" if http2 else "1.1 bridge")
                    assert headers["host"] == f"127.0.0.1:{b.ports['https']}"
                    assert headers["cookie"] == "a=1"
                    assert "connection" not in headers
                    assert "1.1 bridge" in r.headers["via"]
            # keep-alive on both sides: one upstream connection served all five.
            assert origin.connections == 1
            assert origin.count("/echo") == 5

    run(body())


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_post_streamed_body(certs: Path, http2: bool) -> None:
    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            payload = pattern_bytes(0, 3 * 1024 * 1024 + 17)

            async def pieces():  # type: ignore[no-untyped-def]
                for start in range(0, len(payload), 100_000):
                    yield payload[start : start + 100_000]
                    await asyncio.sleep(0)

            async with client(b, http2) as c:
                r = await c.post(b.url("https", "/echo"), content=pieces())
                echo = json.loads(r.text)
                assert echo["method"] == "POST"
                assert echo["body_length"] == len(payload)
                assert echo["body_sha256"] == hashlib.sha256(payload).hexdigest()
                r = await c.post(b.url("https", "/echo"), content=b"small")
                assert json.loads(r.text)["body_length"] == 5

    run(body())


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_large_streamed_response(certs: Path, http2: bool) -> None:
    size = 10 * 1024 * 1024

    async def big(request):  # type: ignore[no-untyped-def]
        return 200, [(b"content-type", b"application/octet-stream")], streamed(size)

    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            origin.route("/big", big)
            async with client(b, http2) as c, c.stream("GET", b.url("https", "/big")) as r:
                assert r.status_code == 200
                received = 0
                digest = hashlib.sha256()
                async for piece in r.aiter_raw():
                    digest.update(piece)
                    received += len(piece)
            assert received == size
            assert digest.hexdigest() == hashlib.sha256(pattern_bytes(0, size)).hexdigest()

    run(body())


def test_many_concurrent_http2_streams(certs: Path) -> None:
    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            async with client(b, True) as c:
                results = await asyncio.gather(
                    *(c.get(b.url("https", f"/echo?n={i}")) for i in range(100))
                )
            assert [json.loads(r.text)["target"] for r in results] == [
                f"/echo?n={i}" for i in range(100)
            ]
            assert {r.http_version for r in results} == {"HTTP/2"}
            assert len(b.bridge.context.connections) <= 1  # type: ignore[union-attr]

    run(body())


def test_paths_are_normalised_before_matching(certs: Path) -> None:
    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            port = b.ports["http"]
            raw = await raw_exchange(
                port,
                b"GET /static/../admin/%61?x=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            )
            assert raw.startswith(b"HTTP/1.1 404")  # origin has no /admin/a: but it got there
            assert origin.requests[-1].target == "/admin/a?x=1"
            raw = await raw_exchange(
                port, b"GET /a%2Fb HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            )
            assert origin.requests[-1].target == "/a%2Fb"
            raw = await raw_exchange(
                port, b"GET /../etc HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
            )
            assert raw.startswith(b"HTTP/1.1 400")

    run(body())


BAD_INPUT = [
    (b"GARBAGE\r\nHost: a\r\n\r\n", b"400"),  # "GARBAGE\r\n\r\n" reads as an h2c preface
    (b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n", b"431"),
    (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"400",
    ),
    (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"400",
    ),
    (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
        b"400",
    ),
    (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", b"501"),
    (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", b"505"),
    (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n", b"400"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, b"400"),
]


@pytest.mark.parametrize(
    "data,status",
    BAD_INPUT,
    ids=[
        "garbage",
        "headers-too-large",
        "cl-and-te",
        "duplicate-cl",
        "bad-chunk",
        "unknown-coding",
        "http-version",
        "obs-fold",
        "tls-on-clear-port",
    ],
)
def test_bad_input_gets_status_and_close(certs: Path, data: bytes, status: bytes) -> None:
    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            raw = await raw_exchange(b.ports["http"], data)
            assert raw.split(b"\r\n", 1)[0].split(b" ")[1] == status, raw[:200]
            assert b"connection: close" in raw.lower()
            assert not any(r.path == "/echo" for r in origin.requests)  # nothing smuggled
            # the server keeps serving the next client
            async with client(b, False) as c:
                assert (await c.get(b.url("https", "/echo"))).status_code == 200

    run(body())


def test_stalled_request_head_times_out_with_408(certs: Path) -> None:
    routes = "limits:\n  header_timeout: 500ms\n" + ROUTES

    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(routes, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            raw = await raw_exchange(b.ports["http"], b"GET / HTTP/1.1\r\nHost:", timeout=10)
            assert raw.startswith(b"HTTP/1.1 408")
            # a client that connects and says nothing is closed quietly
            raw = await raw_exchange(b.ports["http"], b"", timeout=10)
            assert raw == b""

    run(body())


def test_upstream_down_is_502_and_slow_is_504(certs: Path) -> None:
    async def slow(request):  # type: ignore[no-untyped-def]
        await asyncio.sleep(5)
        return 200, [], b"late"

    async def body() -> None:
        async with Origin() as origin:
            origin.route("/slow", slow)
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs).replace(
                "timeout: 5s", "timeout: 500ms"
            )
            async with running_bridge(text, certs) as b, client(b, True) as c:
                r = await c.get(b.url("https", "/slow"))
                assert r.status_code == 504
                assert "upstream timed out" in r.text
                await origin.close()
                r = await c.get(b.url("https", "/echo"))
                assert r.status_code == 502
                assert "upstream unreachable" in r.text
                # where the upstream lives is for the error log, not for clients
                assert str(origin.port) not in r.text and "127.0.0.1" not in r.text
                log = (b.directory / "access.log").read_text().splitlines()
                statuses = [json.loads(line)["status"] for line in log]
                assert statuses[-2:] == [504, 502]

    run(body())


def test_clear_text_redirects_to_https(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs).replace(
                "http_mode: serve", "http_mode: redirect"
            )
            async with running_bridge(text, certs) as b:
                raw = await raw_exchange(
                    b.ports["http"],
                    b"GET /x?y=1 HTTP/1.1\r\nHost: example.test:80\r\nConnection: close\r\n\r\n",
                )
                assert raw.startswith(b"HTTP/1.1 301")
                assert (
                    f"location: https://example.test:{b.ports['https']}/x?y=1".encode()
                    in raw.lower()
                )
                assert origin.requests == []

    run(body())


def test_h2c_prior_knowledge_on_clear_text(certs: Path) -> None:
    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            async with httpx.AsyncClient(http1=False, http2=True) as c:
                r = await c.get(b.url("http", "/echo"))
                assert r.http_version == "HTTP/2"
                assert json.loads(r.text)["target"] == "/echo"

    run(body())


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_request_body_limit_is_413(certs: Path, http2: bool) -> None:
    routes = "limits:\n  max_request_body: 1KB\n" + ROUTES

    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(routes, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            async with client(b, http2) as c:
                r = await c.post(b.url("https", "/echo"), content=b"x" * 5000)
                assert r.status_code == 413

                async def chunks():  # type: ignore[no-untyped-def]
                    for _ in range(10):
                        yield b"y" * 500

                r = await c.post(b.url("https", "/echo"), content=chunks())
                assert r.status_code == 413  # streamed: the limit trips mid-body, before any answer
                # the upstream never got a whole oversized body
                assert all(len(req.body) <= 1024 for req in origin.requests)
                r = await c.post(b.url("https", "/echo"), content=b"z" * 1024)
                assert r.status_code == 200  # exactly the limit passes

    run(body())
