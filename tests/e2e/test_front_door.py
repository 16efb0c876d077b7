"""The front door end to end, for the parts of issue 2 test_proxy.py leaves out: the TLS
profile and its handshake timeout, keep-alive idle timeouts, HTTP/2 abuse over real TLS with a
raw h2 client, forwarding-header rules over the wire, curl as a client, a client that stops
reading (backpressure to the upstream), peers that vanish mid-request, a config without
`listen.https`, and where errors are logged. Real sockets, a real origin, no mocks.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import subprocess
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import httpx
import pytest
from hyperframe.frame import ContinuationFrame, HeadersFrame

from tests.support.harness import (
    Running,
    config_text,
    raw_exchange,
    require_tool,
    run,
    running_bridge,
)
from tests.support.origin import Origin, pattern_bytes

ROUTES = """\
routes:
  - path: /{rest*}
    upstream: app
"""


def with_limits(limits: str, routes: str = ROUTES) -> str:
    return "limits:\n" + "".join(f"  {line}\n" for line in limits.splitlines()) + routes


async def read_until_closed(reader: asyncio.StreamReader, timeout: float = 5.0) -> bytes:
    """Everything until the server closes; TimeoutError if it does not within `timeout`."""
    chunks = []
    async with asyncio.timeout(timeout):
        for _ in range(100_000):  # bounded: one read per iteration
            try:
                piece = await reader.read(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not piece:
                break
            chunks.append(piece)
    return b"".join(chunks)


# --- a raw HTTP/2 client over real TLS ------------------------------------------------------------


class RawH2:
    """h2's client state machine on a TLS connection: exact control over frames."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.events: list[h2.events.Event] = []
        self.closed = False

    @classmethod
    async def open(cls, b: Running) -> RawH2:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1",
                b.ports["https"],
                ssl=b.client_ssl(("h2",)),
                server_hostname="localhost",
            ),
            5,
        )
        assert writer.get_extra_info("ssl_object").selected_alpn_protocol() == "h2"
        client = cls(reader, writer)
        client.conn.initiate_connection()
        await client.flush()
        return client

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), 5)

    async def write_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await asyncio.wait_for(self.writer.drain(), 5)

    def request_headers(self, path: str, extra: list[tuple[bytes, bytes]] = ()) -> list:  # type: ignore[assignment]
        return [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", path.encode()),
            *extra,
        ]

    async def read_events(self, timeout: float = 5.0) -> list[h2.events.Event]:
        """One read's worth of events ([] once the server has closed)."""
        data = await asyncio.wait_for(self.reader.read(65536), timeout)
        if not data:
            self.closed = True
            return []
        events = self.conn.receive_data(data)
        self.events += events
        await self.flush()
        return events

    async def wait_for(self, predicate, timeout: float = 10.0) -> h2.events.Event:  # type: ignore[no-untyped-def]
        async with asyncio.timeout(timeout):
            for _ in range(10_000):  # bounded
                for event in self.events:
                    if predicate(event):
                        return event
                if self.closed:
                    break
                await self.read_events(timeout)
        raise AssertionError(f"no matching event; got {self.events}")

    def close(self) -> None:
        self.writer.close()


def is_goaway(code: h2.errors.ErrorCodes):  # type: ignore[no-untyped-def]
    return lambda e: isinstance(e, h2.events.ConnectionTerminated) and e.error_code == code


async def still_serving(b: Running) -> None:
    """The next client, over both protocols, gets its answer."""
    for http2 in (False, True):
        async with httpx.AsyncClient(verify=b.client_ssl(), http2=http2, timeout=10) as c:
            r = await c.get(b.url("https", "/echo?next"))
            assert r.status_code == 200


# --- TLS ---------------------------------------------------------------------------------------------


def test_tls_profile_and_alpn(certs: Path) -> None:
    async def handshake(ctx: ssl.SSLContext, port: int) -> ssl.SSLObject:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost"), 5
        )
        ssl_object = writer.get_extra_info("ssl_object")
        writer.close()
        return ssl_object

    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            port = b.ports["https"]
            both = await handshake(b.client_ssl(), port)
            assert both.selected_alpn_protocol() == "h2"
            assert both.version() == "TLSv1.3"
            assert both.compression() is None
            only_h1 = await handshake(b.client_ssl(("http/1.1",)), port)
            assert only_h1.selected_alpn_protocol() == "http/1.1"

            # TLS 1.2 with ECDHE + AEAD is offered and taken ...
            tls12 = b.client_ssl()
            tls12.maximum_version = ssl.TLSVersion.TLSv1_2
            tls12.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20")
            negotiated = await handshake(tls12, port)
            assert negotiated.version() == "TLSv1.2"
            name, _, _ = negotiated.cipher()
            assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name)
            # ... but a client offering only CBC (non-AEAD) suites is refused; the same client
            # completes a handshake with a permissive OpenSSL server (checked by hand).
            weak = b.client_ssl()
            weak.maximum_version = ssl.TLSVersion.TLSv1_2
            weak.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384")
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await handshake(weak, port)
            # TLS 1.1 and older: refused by the server (the client is told to allow them).
            old = b.client_ssl()
            old.set_ciphers("DEFAULT:@SECLEVEL=0")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # naming TLS 1.1 warns
                old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
                old.maximum_version = ssl.TLSVersion.TLSv1_1
            with pytest.raises((ssl.SSLError, ConnectionError)):
                await handshake(old, port)
            await still_serving(b)

    run(body())


def test_server_tls_context_profile(certs: Path) -> None:
    from bridge.server.tls import server_context

    ctx = server_context(certs / "server.crt", certs / "server.key")
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.options & ssl.OP_NO_COMPRESSION
    assert ctx.options & ssl.OP_NO_RENEGOTIATION
    for cipher in ctx.get_ciphers():
        if cipher["protocol"] == "TLSv1.3":
            continue  # every TLS 1.3 suite is AEAD with (EC)DHE
        assert cipher["kea"] == "kx-ecdhe", cipher
        assert cipher["aead"], cipher


def test_tls_handshake_timeout_closes_silent_connections(certs: Path) -> None:
    routes = with_limits("tls_handshake_timeout: 300ms")

    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(routes, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            # TCP connected, no ClientHello: closed after the handshake timeout (default 10s).
            reader, writer = await asyncio.open_connection("127.0.0.1", b.ports["https"])
            try:
                assert await read_until_closed(reader, timeout=5) == b""
            finally:
                writer.close()
            # half a ClientHello, then silence: the same
            reader, writer = await asyncio.open_connection("127.0.0.1", b.ports["https"])
            writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
            try:
                await read_until_closed(reader, timeout=5)
            finally:
                writer.close()
            await still_serving(b)

    run(body())


# --- timeouts ------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpn", ["http/1.1", "h2"])
def test_keepalive_idle_connection_is_closed(certs: Path, alpn: str) -> None:
    routes = with_limits("keepalive_timeout: 400ms")

    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(routes, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1",
                b.ports["https"],
                ssl=b.client_ssl((alpn,)),
                server_hostname="localhost",
            )
            try:
                if alpn == "h2":
                    client = RawH2(reader, writer)
                    client.conn.initiate_connection()
                    client.conn.send_headers(1, client.request_headers("/echo"), end_stream=True)
                    await client.flush()
                    await client.wait_for(lambda e: isinstance(e, h2.events.StreamEnded))
                    # idle after the answer: GOAWAY (NO_ERROR) and close, well before the
                    # default 75 s
                    await client.wait_for(is_goaway(h2.errors.ErrorCodes.NO_ERROR), timeout=5)
                else:
                    writer.write(b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n")
                    rest = await read_until_closed(reader, timeout=5)
                    assert rest.startswith(b"HTTP/1.1 200")
            finally:
                writer.close()

    run(body())


def test_slow_request_body_times_out(certs: Path) -> None:
    # The body must keep coming: header_timeout bounds the gaps between body pieces too.
    routes = with_limits("header_timeout: 300ms")

    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(routes, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", b.ports["http"])
            writer.write(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
            try:
                answer = await read_until_closed(reader, timeout=10)
            finally:
                writer.close()
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b"connection: close" in answer.lower()
            await still_serving(b)

    run(body())


# --- peers that misbehave --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"GET /echo HTTP/1.1\r\nHost: a\r\nX-Half",
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
        b"GET /echo HTTP/1.1\r\nHost: a\r\n\r\nGET /echo HT",
    ],
    ids=["mid-head", "mid-body", "mid-chunk", "mid-pipelined-head"],
)
def test_peer_that_stops_mid_request(
    certs: Path, data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            for port, tls in ((b.ports["http"], None), (b.ports["https"], b.client_ssl())):
                _reader, writer = await asyncio.open_connection(
                    "127.0.0.1", port, ssl=tls, server_hostname="localhost" if tls else None
                )
                writer.write(data)
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.close()  # gone, mid-request
                await asyncio.sleep(0.1)
                await still_serving(b)
            for _ in range(50):  # bounded: until the server has noticed both peers left
                if len(b.bridge.context.connections) == 0:  # type: ignore[union-attr]
                    break
                await asyncio.sleep(0.05)
            assert len(b.bridge.context.connections) == 0  # type: ignore[union-attr]

    with caplog.at_level(logging.WARNING, logger="bridge"):
        run(body())
    assert not [r for r in caplog.records if r.exc_info], "a peer's bytes raised"


@pytest.mark.parametrize(
    "data,status",
    [
        (b"GET /echo\r\n\r\n", b"400"),  # HTTP/0.9-style request line
        (b"GET  /echo  HTTP/1.1\r\nHost: a\r\n\r\n", b"400"),
        (b"GET /e\x00cho HTTP/1.1\r\nHost: a\r\n\r\n", b"400"),
        (b"GET /echo HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", b"400"),
        (b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", b"400"),
        (b"GET /echo HTTP/1.1\r\nHost: a\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", b"431"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", b"414"),
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", b"400"),
        (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", b"400"),
        (
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\nabc\r\n0\r\n\r\n",
            b"400",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"ffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
            b"400",
        ),
        (
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            b"501",
        ),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", b"505"),
        (b"GET / HTTP/3\r\nHost: a\r\n\r\n", b"400"),
    ],
    ids=[
        "no-version",
        "double-spaces",
        "nul-in-target",
        "space-in-name",
        "duplicate-host",
        "too-many-fields",
        "target-too-long",
        "negative-length",
        "listed-length",
        "negative-chunk",
        "huge-chunk",
        "gzip-coding",
        "http2-in-a-request-line",
        "malformed-version",
    ],
)
def test_more_bad_input_over_tls(certs: Path, data: bytes, status: bytes) -> None:
    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", b.ports["https"], ssl=b.client_ssl(("http/1.1",)),
                server_hostname="localhost",
            )  # fmt: skip
            writer.write(data)
            try:
                raw = await read_until_closed(reader)
            finally:
                writer.close()
            assert raw.split(b"\r\n", 1)[0].split(b" ")[1] == status, raw[:200]
            assert b"connection: close" in raw.lower()
            assert raw.split(b"\r\n\r\n", 1)[1].startswith(status)  # the short text body
            assert not any(r.path == "/echo" for r in origin.requests)
            await still_serving(b)

    run(body())


# --- HTTP/2 abuse over real TLS -----------------------------------------------------------------


def test_http2_streams_past_the_limit_are_refused(certs: Path) -> None:
    routes = with_limits("h2_max_concurrent_streams: 2")

    async def body() -> None:
        release = asyncio.Event()

        async def hold(request):  # type: ignore[no-untyped-def]
            await asyncio.wait_for(release.wait(), 10)
            return 200, [], b"held"

        async with Origin() as origin:
            origin.route("/hold", hold)
            async with running_bridge(
                config_text(routes, upstream_url=origin.url, certs=certs), certs
            ) as b:
                client = await RawH2.open(b)
                try:
                    for sid in (1, 3, 5):
                        client.conn.send_headers(
                            sid, client.request_headers("/hold"), end_stream=True
                        )
                    await client.flush()
                    reset = await client.wait_for(lambda e: isinstance(e, h2.events.StreamReset))
                    assert reset.stream_id == 5
                    assert reset.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
                    release.set()
                    for sid in (1, 3):
                        await client.wait_for(
                            lambda e, s=sid: (
                                isinstance(e, h2.events.StreamEnded) and e.stream_id == s
                            )
                        )
                    # the connection lives on: the next stream is answered
                    client.conn.send_headers(7, client.request_headers("/echo"), end_stream=True)
                    await client.flush()
                    await client.wait_for(
                        lambda e: isinstance(e, h2.events.StreamEnded) and e.stream_id == 7
                    )
                    assert not any(
                        isinstance(e, h2.events.ConnectionTerminated) for e in client.events
                    )
                finally:
                    client.close()

    run(body())


def test_http2_stream_of_a_client_that_stops_reading_is_reset_not_left_open(
    certs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bridge gives up on a response whose window never reopens (SEND_TIMEOUT): the stream
    must end on the wire with RST_STREAM CANCEL, not linger against the stream limit."""
    from bridge import settings

    monkeypatch.setattr(settings, "SEND_TIMEOUT", 0.5)

    async def body() -> None:
        async def big(request):  # type: ignore[no-untyped-def]
            return 200, [], pattern_bytes(0, 1 << 20)

        async with Origin() as origin:
            origin.route("/big", big)
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                client = await RawH2.open(b)
                try:
                    # The connection window wide open, the stream's never acknowledged: its
                    # 64 KiB default window stays shut.
                    client.conn.increment_flow_control_window(1 << 24)
                    client.conn.send_headers(1, client.request_headers("/big"), end_stream=True)
                    await client.flush()
                    reset = await client.wait_for(
                        lambda e: isinstance(e, h2.events.StreamReset) and e.stream_id == 1
                    )
                    assert reset.error_code == h2.errors.ErrorCodes.CANCEL
                    # the connection itself lives on
                    client.conn.send_headers(3, client.request_headers("/echo"), end_stream=True)
                    await client.flush()
                    await client.wait_for(
                        lambda e: isinstance(e, h2.events.StreamEnded) and e.stream_id == 3
                    )
                finally:
                    client.close()

    run(body())


def test_http2_rapid_reset_gets_enhance_your_calm(certs: Path) -> None:
    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            client = await RawH2.open(b)
            try:
                # Just past the allowance, in one write: anything sent after the server has
                # closed would make its kernel answer with RST and lose the GOAWAY.
                for i in range(250):
                    sid = 1 + 2 * i
                    client.conn.send_headers(sid, client.request_headers("/echo"), end_stream=True)
                    client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                await client.flush()
                await client.wait_for(is_goaway(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM))
                await read_until_closed(client.reader)
            finally:
                client.close()
            await still_serving(b)

    run(body())


def test_http2_continuation_flood_gets_enhance_your_calm(certs: Path) -> None:
    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            client = await RawH2.open(b)
            try:
                block = client.conn.encoder.encode(client.request_headers("/echo"))
                first = HeadersFrame(1, data=block, flags=["END_STREAM"])  # no END_HEADERS
                await client.write_raw(first.serialize())
                # header bytes far beyond the header limit, never ending the block
                filler = client.conn.encoder.encode([(b"x-flood", b"a" * 8000)])
                for _ in range(200):
                    try:
                        await client.write_raw(ContinuationFrame(1, data=filler).serialize())
                    except (ConnectionError, ssl.SSLError):
                        break  # the server has already closed
                data = await read_until_closed(client.reader)
            finally:
                client.close()
            # GOAWAY is type 0x7; its error code (last 4 bytes of the 8-byte payload) is 0xb.
            frames = parse_frames(data)
            goaways = [payload for kind, payload in frames if kind == 0x7]
            assert goaways, frames
            assert int.from_bytes(goaways[-1][4:8], "big") == 0xB  # ENHANCE_YOUR_CALM
            await still_serving(b)

    run(body())


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    frames = []
    pos = 0
    while pos + 9 <= len(data):
        length = int.from_bytes(data[pos : pos + 3], "big")
        kind = data[pos + 3]
        frames.append((kind, data[pos + 9 : pos + 9 + length]))
        pos += 9 + length
    return frames


def test_http2_request_reaches_http11_upstream_correctly(certs: Path) -> None:
    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            client = await RawH2.open(b)
            try:
                headers = client.request_headers(
                    "/echo?q=1",
                    [(b"cookie", b"a=1"), (b"user-agent", b"raw-h2"), (b"cookie", b"b=2")],
                )
                client.conn.send_headers(1, headers, end_stream=True)
                await client.flush()
                await client.wait_for(lambda e: isinstance(e, h2.events.StreamEnded))
                data = b"".join(
                    e.data for e in client.events if isinstance(e, h2.events.DataReceived)
                )
                [response] = [e for e in client.events if isinstance(e, h2.events.ResponseReceived)]
                assert dict(response.headers)[b":status"] == b"200"
            finally:
                client.close()
            echo = json.loads(data)
            assert echo["target"] == "/echo?q=1"
            names = [n for n, _ in echo["headers"]]
            assert not [n for n in names if n.startswith(":")]
            fields = dict(echo["headers"])
            assert names.count("host") == 1 and fields["host"] == "localhost"
            assert names.count("cookie") == 1 and fields["cookie"] == "a=1; b=2"
            assert fields["via"] == "2 bridge"
            assert fields["x-forwarded-host"] == "localhost"

    run(body())


# --- forwarding headers -----------------------------------------------------------------------------


def test_hop_by_hop_fields_do_not_pass_either_way(certs: Path) -> None:
    async def answer(request):  # type: ignore[no-untyped-def]
        return (
            200,
            [
                (b"connection", b"x-internal"),
                (b"x-internal", b"secret"),
                (b"keep-alive", b"timeout=5"),
                (b"x-public", b"yes"),
            ],
            json.dumps([[n.decode(), v.decode()] for n, v in request.headers]).encode(),
        )

    async def body() -> None:
        async with Origin() as origin:
            origin.route("/hops", answer)
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                raw = await raw_exchange(
                    b.ports["http"],
                    b"GET /hops HTTP/1.1\r\nHost: a.test\r\n"
                    b"Connection: keep-alive, X-Secret, close\r\nX-Secret: 1\r\n"
                    b"Keep-Alive: timeout=9\r\nTE: trailers\r\nProxy-Authorization: Basic eA==\r\n"
                    b"Proxy-Connection: keep-alive\r\nUpgrade: h2c\r\nX-Kept: 1\r\n"
                    b"X-Forwarded-Proto: gopher\r\nX-Forwarded-Host: evil.test\r\n"
                    b"X-Forwarded-For: 203.0.113.9\r\n\r\n",
                )
        head, _, payload = raw.partition(b"\r\n\r\n")
        seen = dict(json.loads(payload))
        for name in ("x-secret", "keep-alive", "te", "proxy-authorization", "proxy-connection",
                     "upgrade"):  # fmt: skip
            assert name not in seen, name
        assert seen.get("connection") in (None, "keep-alive", "close")  # the upstream hop's own
        assert seen["x-kept"] == "1"
        assert seen["x-forwarded-proto"] == "http" and seen["x-forwarded-host"] == "a.test"
        assert seen["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
        assert seen["forwarded"] == 'for=127.0.0.1;proto=http;host="a.test"'
        lines = head.lower().split(b"\r\n")
        assert b"x-public: yes" in lines
        assert not [line for line in lines if line.startswith((b"x-internal", b"keep-alive"))]

    run(body())


def test_host_upstream_sends_the_upstreams_own_host(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs).replace(
                "    timeout: 5s\n", "    timeout: 5s\n    host: upstream\n"
            )
            assert "host: upstream" in text
            async with (
                running_bridge(text, certs) as b,
                httpx.AsyncClient(verify=b.client_ssl(), http2=True) as c,
            ):
                r = await c.get(b.url("https", "/echo"))
            fields = dict(json.loads(r.text)["headers"])
            assert fields["host"] == f"127.0.0.1:{origin.port}"
            assert fields["x-forwarded-host"] == f"127.0.0.1:{b.ports['https']}"

    run(body())


# --- streaming and backpressure -----------------------------------------------------------------


def test_a_client_that_stops_reading_stops_the_upstream(certs: Path) -> None:
    total = 512 * 1024 * 1024
    produced = [0]

    async def huge(request):  # type: ignore[no-untyped-def]
        async def pieces() -> AsyncIterator[bytes]:
            block = pattern_bytes(0, 65536)
            while produced[0] < total:
                produced[0] += len(block)
                yield block

        return 200, [(b"content-length", str(total).encode())], pieces()

    async def body() -> None:
        async with Origin() as origin:
            origin.route("/huge", huge)
            async with running_bridge(
                config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", b.ports["https"], ssl=b.client_ssl(("http/1.1",)),
                    server_hostname="localhost",
                )  # fmt: skip
                writer.write(b"GET /huge HTTP/1.1\r\nHost: localhost\r\n\r\n")
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                assert head.startswith(b"HTTP/1.1 200")
                # the client reads nothing more: the upstream must stall, bounded by socket
                # buffers and bridge's watermarks, nowhere near the whole body
                last = -1
                for _ in range(100):  # bounded: until production stops moving
                    await asyncio.sleep(0.1)
                    if produced[0] == last:
                        break
                    last = produced[0]
                stalled = produced[0]
                assert stalled < 64 * 1024 * 1024, stalled
                await asyncio.sleep(0.5)
                assert produced[0] == stalled  # still stalled, not merely slow
                # reading resumes: the upstream does too
                got = 0
                async with asyncio.timeout(20):
                    while got < 32 * 1024 * 1024:
                        piece = await reader.read(1 << 20)
                        assert piece
                        got += len(piece)
                assert produced[0] > stalled
                writer.close()

    run(body())


# --- clients -------------------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--http1.1", "--http2"])
def test_curl_through_bridge(certs: Path, flag: str) -> None:
    curl = require_tool("curl")

    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            url = f"https://localhost:{b.ports['https']}/echo?via=curl"
            out = await asyncio.to_thread(
                subprocess.run,
                [curl, "-sS", flag, "--cacert", str(b.ca), "-w", "\n%{http_version} %{http_code}",
                 "--data-binary", "hello", url],
                capture_output=True, text=True, timeout=20,
            )  # fmt: skip
            assert out.returncode == 0, out.stderr
            payload, _, status = out.stdout.rpartition("\n")
            assert status == ("1.1 200" if flag == "--http1.1" else "2 200")
            echo = json.loads(payload)
            assert echo["method"] == "POST" and echo["body_length"] == 5
            assert echo["target"] == "/echo?via=curl"

    run(body())


# --- listeners ---------------------------------------------------------------------------------


def test_without_listen_https_clear_text_serves(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs)
            text = text.replace('  https: "127.0.0.1:0"\n', "").replace(
                "http_mode: serve", "http_mode: redirect"
            )  # redirect has nowhere to go without https: the routes are served
            async with running_bridge(text, certs) as b:
                assert set(b.ports) == {"http"}
                for http2 in (False, True):
                    async with httpx.AsyncClient(http1=not http2, http2=http2) as c:
                        r = await c.get(b.url("http", "/echo"))
                        assert r.status_code == 200
                        assert r.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
                        assert dict(json.loads(r.text)["headers"])["x-forwarded-proto"] == "http"

    run(body())


# --- logs ----------------------------------------------------------------------------------------

# The combined format as log tools (goaccess, awstats, Apache's own) read it.
COMBINED = re.compile(
    r"^(?P<ip>\S+) (?P<ident>\S+) (?P<user>\S+) \[(?P<time>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<bytes>\d+|-) '
    r'"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)"'
)


def test_upstream_errors_go_to_the_error_log_not_the_access_log(
    certs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def body() -> None:
        async with Origin() as origin:
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs)
            text = text.replace("format: json", "format: combined")
            async with running_bridge(text, certs) as b:
                async with httpx.AsyncClient(verify=b.client_ssl()) as c:
                    assert (await c.get(b.url("https", "/echo"))).status_code == 200
                    await origin.close()
                    r = await c.get(b.url("https", "/echo?down"))
                    assert r.status_code == 502
                    assert r.headers["content-type"].startswith("text/plain")
                    assert len(r.content) < 200
                lines = (b.directory / "access.log").read_text().splitlines()
        assert len(lines) == 2
        for line in lines:
            found = COMBINED.match(line)
            assert found, line
            assert found["request"].startswith("GET /echo")
        assert COMBINED.match(lines[1])["status"] == "502"  # type: ignore[index]
        assert "upstream unreachable" not in "".join(lines)
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any("/echo?down" in m and "upstream unreachable" in m for m in warnings), warnings

    with caplog.at_level(logging.WARNING, logger="bridge"):
        run(body())


def test_access_line_is_written_when_the_request_finishes(certs: Path) -> None:
    async def body() -> None:
        gate = asyncio.Event()

        async def slow(request):  # type: ignore[no-untyped-def]
            await asyncio.wait_for(gate.wait(), 10)
            return 200, [], b"done"

        async with Origin() as origin:
            origin.route("/slow", slow)
            async with (
                running_bridge(
                    config_text(ROUTES, upstream_url=origin.url, certs=certs), certs
                ) as b,
                httpx.AsyncClient(verify=b.client_ssl(), http2=True) as c,
            ):
                log = b.directory / "access.log"
                pending = asyncio.create_task(c.get(b.url("https", "/slow")))
                for _ in range(100):  # bounded: until the origin has the request
                    if origin.count("/slow"):
                        break
                    await asyncio.sleep(0.02)
                assert log.read_text() == ""  # in flight: nothing logged yet
                gate.set()
                r = await asyncio.wait_for(pending, 10)
                assert r.status_code == 200
                # flushed per line: readable as soon as the response is complete
                for _ in range(50):  # bounded
                    if log.read_text():
                        break
                    await asyncio.sleep(0.02)
                [entry] = [json.loads(line) for line in log.read_text().splitlines()]
                assert entry["target"] == "/slow" and entry["duration_ms"] > 0

    run(body())


@pytest.mark.parametrize("tls", [False, True], ids=["clear", "tls"])
def test_early_413_reaches_a_client_still_sending(certs: Path, tls: bool) -> None:
    routes = with_limits("max_request_body: 1MB")

    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(routes, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            port = b.ports["https" if tls else "http"]
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=b.client_ssl(("http/1.1",)) if tls else None,
                server_hostname="localhost" if tls else None,
            )  # fmt: skip
            writer.write(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 8388608\r\n\r\n")
            await writer.drain()
            # The answer is already on its way while the client keeps sending: the client
            # must still be able to read it (no RST from a plain close with unread bytes).
            await asyncio.sleep(0.1)
            piece = b"x" * 65536
            for _ in range(64):  # 4 MiB, bounded
                try:
                    writer.write(piece)
                    await asyncio.wait_for(writer.drain(), 5)
                except (ConnectionError, ssl.SSLError):
                    break
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            finally:
                writer.close()
            assert head.startswith(b"HTTP/1.1 413")
            assert b"connection: close" in head.lower()
            assert origin.requests == []
            await still_serving(b)

    run(body())


def test_stop_cuts_what_outlives_the_grace_period(certs: Path) -> None:
    async def body() -> None:
        async def forever(request):  # type: ignore[no-untyped-def]
            await asyncio.sleep(30)
            return 200, [], b"too late"

        async with Origin() as origin:
            origin.route("/forever", forever)
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                async with httpx.AsyncClient(verify=b.client_ssl(), http2=True, timeout=20) as c:
                    pending = asyncio.create_task(c.get(b.url("https", "/forever")))
                    for _ in range(100):  # bounded: until the origin holds the request
                        if origin.count("/forever"):
                            break
                        await asyncio.sleep(0.02)
                    started = asyncio.get_running_loop().time()
                    await asyncio.wait_for(b.bridge.stop(grace=0.5), 10)
                    elapsed = asyncio.get_running_loop().time() - started
                    with pytest.raises(httpx.HTTPError):
                        await asyncio.wait_for(pending, 10)
                assert elapsed < 5  # the grace period, not the 30 s request
                assert b.bridge.context is not None and not b.bridge.context.connections

    run(body())


def test_no_alt_svc_without_http3(certs: Path) -> None:
    """Without `listen.http3` no response advertises HTTP/3 (Alt-Svc), which would send
    browsers to a UDP port nobody answers (tests/e2e/test_http3.py checks it when on)."""

    async def body() -> None:
        async with Origin() as origin:
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                assert "http3" not in b.ports
                async with httpx.AsyncClient(verify=b.client_ssl(), timeout=10) as c:
                    r = await c.get(b.url("https", "/echo"))
                    assert r.status_code == 200 and "alt-svc" not in r.headers

    run(body())
