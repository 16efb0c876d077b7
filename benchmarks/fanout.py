"""Fan-out: one upstream change delivered to N subscribers of one stream.

The upstream is a long-poll endpoint, so a published change reaches bridge at once; each
change carries its publish time, and every subscriber measures (receipt - publish). Bridge
runs pinned to core 0; the upstream and the subscriber processes share core 1.

    python3 benchmarks/fanout.py --subscribers 1000 10000 --modes sse-h1 sse-h1-tls sse-h2 \
        sse-h3 ws-h1 ws-h1-tls ws-h2

sse-h3 subscribers are aioquic HTTP/3 clients (`--h2-streams` streams per QUIC connection).

`--authorize SESSIONS`: the stream has an `authorize:` block (its check a cheap `/auth` on the
same upstream) and subscriber i sends `Cookie: session=<i % SESSIONS>`, as N browsers of
SESSIONS users would: bridge should ask the app SESSIONS times, not N (the `checks` column),
and deliver at the same CPU cost per event as without it.

Prints, per mode and N: time to connect everyone, RSS per idle subscriber, delivery latency
p50/p99/max, deliveries lost, and bridge CPU µs per delivery. Loopback only; bounded runs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing as mp
import os
import re
import resource
import shutil
import ssl
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BridgeProcess, StealMeter, cpu_seconds, free_port, rss_bytes

MODES = ("sse-h1", "sse-h1-tls", "sse-h2", "sse-h3", "ws-h1", "ws-h1-tls", "ws-h2")
_EVENT = re.compile(rb'"seq":\s*(\d+),\s*"ts":\s*([\d.]+)')

ROUTES = """\
listen:
  https: "127.0.0.1:{https}"
  http3: "127.0.0.1:{https}"
  http: "127.0.0.1:{http}"
  http_mode: serve
tls:
  cert: CERTS/server.crt
  key: CERTS/server.key
access_log:
  path: /dev/null
  format: combined
engines:
  http2: {engine}
limits:
  max_connections: 30000
  max_subscribers: 30000
  max_subscribers_per_stream: 30000
  h2_max_concurrent_streams: {limit}
upstreams:
  app:
    url: "http://127.0.0.1:{upstream}"
routes:
  - path: /feed
    stream:
      upstream: app
      poll: /feed
      longpoll:
        cursor: seq
        param: since
        timeout: 30s
      event: tick
      heartbeat: 1h
      history: 100
"""
AUTHORIZE = """\
      authorize:
        check: /auth
        cache: 10m
        recheck: 1h
"""


def raise_fd_limit() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pin(core: int) -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})


# --- the upstream: a long-poll feed ---------------------------------------------------------


class Feed:
    def __init__(self) -> None:
        self.seq = 0
        self.ts = time.time()
        self.waiting: list[asyncio.Transport] = []
        self.pad = "x" * 64

    def body(self) -> bytes:
        return b'{"seq": %d, "ts": %.6f, "pad": "%s"}' % (self.seq, self.ts, self.pad.encode())

    def answer(self, transport: asyncio.Transport) -> None:
        body = self.body()
        transport.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
            % (len(body), body)
        )

    def publish(self) -> None:
        self.seq += 1
        self.ts = time.time()
        waiting, self.waiting = self.waiting, []
        for transport in waiting:
            if not transport.is_closing():
                self.answer(transport)


def serve_feed(
    port: int,
    publish: mp.Queue,  # type: ignore[type-arg]
    ready: mp.Event,  # type: ignore[valid-type]
    respond: Callable[[Feed, asyncio.Transport, bytes], None],
    published: Callable[[Feed], None] | None = None,
) -> None:
    """The upstream's loop, shared by the benchmarks: `respond` answers each request head; a
    `publish` queue item makes the next change (`published` is told of it), None ends it."""
    pin(1)

    async def main() -> None:
        feed = Feed()
        loop = asyncio.get_running_loop()

        class Conn(asyncio.Protocol):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                self.transport = transport
                self.buf = b""

            def data_received(self, data: bytes) -> None:
                self.buf += data
                while b"\r\n\r\n" in self.buf:
                    head, self.buf = self.buf.split(b"\r\n\r\n", 1)
                    respond(feed, self.transport, head)  # type: ignore[arg-type]

        await loop.create_server(Conn, "127.0.0.1", port)
        ready.set()
        while True:
            command = await loop.run_in_executor(None, publish.get)
            if command is None:
                return
            feed.publish()
            if published is not None:
                published(feed)

    _run(main())


def upstream_main(
    port: int,
    publish: mp.Queue,  # type: ignore[type-arg]
    ready: mp.Event,  # type: ignore[valid-type]
    checks: Any = None,  # a shared mp.Value: authorize checks answered
) -> None:
    """The long-poll endpoint: a request whose `since` is behind is answered at once, others
    wait for the next change; `GET /auth` (an authorize check) lets every session in."""

    def respond(feed: Feed, transport: asyncio.Transport, head: bytes) -> None:
        line = head.split(b"\r\n", 1)[0]
        if line.startswith(b"GET /auth"):
            if checks is not None:
                with checks.get_lock():
                    checks.value += 1
            transport.write(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
            return
        found = re.search(rb"since=(\d+)", line)
        since = int(found.group(1)) if found else -1
        if since < feed.seq:
            feed.answer(transport)
        else:
            feed.waiting.append(transport)

    serve_feed(port, publish, ready, respond)


# --- subscribers ----------------------------------------------------------------------------


def client_ssl(alpn: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # loopback benchmark against a throwaway dev certificate
    ctx.set_alpn_protocols([alpn])
    return ctx


class Subscriber(asyncio.Protocol):
    """HTTP/1.1 SSE or WebSocket subscriber that records (seq, latency) per event."""

    def __init__(
        self, request: bytes, results: list[tuple[int, float]], ready: asyncio.Future
    ) -> None:  # type: ignore[type-arg]
        self.request = request
        self.results = results
        self.ready = ready
        self.tail = b""
        self.seen: set[int] = set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self.request)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        now = time.time()
        if not self.ready.done():
            self.ready.set_result(None)
        buf = self.tail + data
        last = 0
        for match in _EVENT.finditer(buf):
            seq = int(match.group(1))
            if seq not in self.seen and seq > 0:
                self.seen.add(seq)
                self.results.append((seq, now - float(match.group(2))))
            last = match.end()
        self.tail = buf[max(last, len(buf) - 200) :]


class H2Subscriber(asyncio.Protocol):
    """`streams` SSE or RFC 8441 WebSocket subscribers multiplexed on one HTTP/2 connection."""

    def __init__(
        self,
        websocket: bool,
        streams: int,
        results: list[tuple[int, float]],
        ready: asyncio.Future,  # type: ignore[type-arg]
        cookies: list[bytes] | None = None,
        path: bytes = b"/feed",
    ) -> None:
        import h2.config
        import h2.connection

        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.websocket = websocket
        self.ready = ready
        self.raw = False
        self.buffer = b""
        self.open = 0
        never: asyncio.Future = asyncio.get_running_loop().create_future()  # type: ignore[type-arg]
        # One recorder per stream: each counts its own events, as a separate client would.
        self.inner = {1 + 2 * i: Subscriber(b"", results, never) for i in range(streams)}
        self.cookies = cookies or []
        self.path = path
        self.alive = False  # connected, and neither closed nor sent GOAWAY since

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.alive = True
        self.conn.initiate_connection()
        self.conn.increment_flow_control_window(1 << 24)
        if self.websocket:
            headers = [
                (b":method", b"CONNECT"),
                (b":protocol", b"websocket"),
                (b":path", b"/feed"),
                (b":scheme", b"https"),
                (b":authority", b"127.0.0.1"),
                (b"sec-websocket-version", b"13"),
            ]
        else:
            headers = [
                (b":method", b"GET"),
                (b":path", self.path),
                (b":scheme", b"https"),
                (b":authority", b"127.0.0.1"),
                (b"accept", b"text/event-stream"),
            ]
        for i, sid in enumerate(self.inner):
            extra = [(b"cookie", self.cookies[i])] if self.cookies else []
            self.conn.send_headers(sid, headers + extra, end_stream=not self.websocket)
        transport.write(self.conn.data_to_send())  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False

    def data_received(self, data: bytes) -> None:
        import h2.events

        if self.raw:
            self._frames(data)
            return
        for event in self.conn.receive_data(data):
            if isinstance(event, h2.events.DataReceived):
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                self.inner[event.stream_id].data_received(event.data)
            elif isinstance(event, h2.events.ConnectionTerminated):
                self.alive = False
            elif isinstance(event, h2.events.ResponseReceived):
                self.open += 1
                if self.open == len(self.inner):
                    # Every head is in: from here on parse frame headers by hand, as the
                    # HTTP/1.1 client scans bytes; a full h2 client per connection would make
                    # this load generator the bottleneck.
                    self.raw = True
                    # A frame h2 holds in part goes on in the next read: take its bytes over.
                    self.buffer = bytes(self.conn.incoming_buffer._data)
                    if not self.ready.done():
                        self.ready.set_result(None)
        out = self.conn.data_to_send()
        if out:
            self.transport.write(out)  # type: ignore[attr-defined]

    def _frames(self, data: bytes) -> None:
        buf = self.buffer + data
        at = 0
        while len(buf) - at >= 9:
            length = int.from_bytes(buf[at : at + 3], "big")
            if len(buf) - at < 9 + length:
                break
            kind = buf[at + 3]
            sid = int.from_bytes(buf[at + 5 : at + 9], "big") & 0x7FFFFFFF
            if kind == 0 and sid in self.inner:  # DATA; bridge never pads
                self.inner[sid].data_received(buf[at + 9 : at + 9 + length])
            elif kind == 7:  # GOAWAY: the server is done with this connection
                self.alive = False
            at += 9 + length
        self.buffer = buf[at:]


class H3Subscriber:
    """`streams` SSE subscribers on one QUIC connection (aioquic's client and H3Connection)."""

    def __init__(
        self, streams: int, results: list[tuple[int, float]], cookies: list[bytes] | None = None
    ) -> None:
        never: asyncio.Future = asyncio.get_running_loop().create_future()  # type: ignore[type-arg]
        self.inner = [Subscriber(b"", results, never) for _ in range(streams)]
        self.cookies = cookies or []

    async def open(self, port: int) -> asyncio.DatagramTransport:
        import aioquic.h3.events as h3e
        from aioquic.asyncio.protocol import QuicConnectionProtocol
        from aioquic.h3.connection import H3_ALPN, H3Connection
        from aioquic.quic.configuration import QuicConfiguration
        from aioquic.quic.connection import QuicConnection

        config = QuicConfiguration(is_client=True, alpn_protocols=list(H3_ALPN))
        config.verify_mode = ssl.CERT_NONE  # loopback benchmark, throwaway dev certificate
        quic = QuicConnection(configuration=config)
        by_stream: dict[int, Subscriber] = {}
        heads: asyncio.Future = asyncio.get_running_loop().create_future()  # type: ignore[type-arg]
        wanted = len(self.inner)

        class Client(QuicConnectionProtocol):
            def __init__(self, *args: object, **kwargs: object) -> None:
                super().__init__(*args, **kwargs)  # type: ignore[arg-type]
                self.h3 = H3Connection(self._quic)
                self.heads = 0

            def quic_event_received(self, event: object) -> None:
                for ev in self.h3.handle_event(event):  # type: ignore[arg-type]
                    if isinstance(ev, h3e.DataReceived):
                        sub = by_stream.get(ev.stream_id)
                        if sub is not None:
                            sub.data_received(ev.data)
                    elif isinstance(ev, h3e.HeadersReceived):
                        self.heads += 1
                        if self.heads == wanted and not heads.done():
                            heads.set_result(None)

        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: Client(quic), local_addr=("127.0.0.1", 0)
        )
        client: Client = protocol  # type: ignore[assignment]
        client.connect(("127.0.0.1", port))
        await asyncio.wait_for(client.wait_connected(), 30)
        for i, sub in enumerate(self.inner):
            sid = quic.get_next_available_stream_id()
            by_stream[sid] = sub
            extra = [(b"cookie", self.cookies[i])] if self.cookies else []
            client.h3.send_headers(
                sid,
                [
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (b":authority", b"127.0.0.1"),
                    (b":path", b"/feed"),
                    (b"accept", b"text/event-stream"),
                    *extra,
                ],
                end_stream=True,
            )
        client.transmit()
        await asyncio.wait_for(heads, 60)
        return transport  # type: ignore[return-value]


def client_main(
    mode: str,
    port: int,
    count: int,
    streams: int,
    out: mp.Queue,  # type: ignore[type-arg]
    go: mp.Event,  # type: ignore[valid-type]
    stop: mp.Event,  # type: ignore[valid-type]
    first: int = 0,  # the global index of this process's first subscriber
    sessions: int = 0,  # `--authorize`: distinct session cookies; 0: none sent
    path: bytes = b"/feed",
) -> None:
    """Subscribers, connected at once; reports ("connected", subscribers, seconds), then after
    `stop` ("results", [(seq, latency)], connections still held: open, and no GOAWAY)."""
    pin(1)
    raise_fd_limit()
    counter = iter(range(first, first + count + 1_000_000))

    def cookies(n: int) -> list[bytes]:
        """The next `n` subscribers' Cookie values ([] without --authorize)."""
        if not sessions:
            return []
        return [b"session=s%d" % (next(counter) % sessions) for _ in range(n)]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        results: list[tuple[int, float]] = []
        tls = mode.endswith("tls") or mode.endswith("h2")
        ctx = client_ssl("h2" if mode.endswith("h2") else "http/1.1") if tls else None
        key = base64.b64encode(os.urandom(16))
        if mode.startswith("ws"):
            request = (
                b"GET /feed HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                b"Sec-WebSocket-Key: " + key + b"\r\n\r\n"
            )
        else:
            request = (
                b"GET "
                + path
                + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
            )
        transports = []
        h2_conns: list[H2Subscriber] = []
        # QUIC handshakes cost the client far more CPU than TCP + TLS ones (aioquic is Python):
        # fewer at once, or they outlast bridge's handshake timeout on this shared core.
        sem = asyncio.Semaphore(16 if mode.endswith("h3") else 200)

        async def connect() -> None:
            ready = loop.create_future()
            async with sem:
                mine = cookies(streams if mode.endswith(("h2", "h3")) else 1)
                if mode.endswith("h3"):
                    for attempt in range(5):
                        try:
                            subscriber = H3Subscriber(streams, results, mine)
                            transports.append(await subscriber.open(port))
                            return
                        except (OSError, TimeoutError, ConnectionError):
                            await asyncio.sleep(0.2 * (attempt + 1))
                    return
                if mode.endswith("h2"):

                    def factory() -> asyncio.Protocol:
                        conn = H2Subscriber(
                            mode.startswith("ws"), streams, results, ready, mine, path
                        )
                        h2_conns.append(conn)
                        return conn

                else:
                    sent = request
                    if mine:
                        sent = request[:-2] + b"Cookie: " + mine[0] + b"\r\n\r\n"
                    factory = lambda: Subscriber(sent, results, ready)  # noqa: E731
                for attempt in range(5):
                    try:
                        transport, _ = await loop.create_connection(
                            factory, "127.0.0.1", port, ssl=ctx
                        )
                        break
                    except OSError:
                        await asyncio.sleep(0.2 * (attempt + 1))
                else:
                    return
                transports.append(transport)
                await asyncio.wait_for(ready, 60)

        t0 = time.monotonic()
        per = streams if mode.endswith(("h2", "h3")) else 1
        connections = -(-count // per)
        await asyncio.gather(*(connect() for _ in range(connections)), return_exceptions=True)
        out.put(("connected", len(transports) * per, time.monotonic() - t0))
        await loop.run_in_executor(None, go.wait)
        results.clear()
        await loop.run_in_executor(None, stop.wait)
        if h2_conns:
            held = sum(1 for conn in h2_conns if conn.alive)
        else:
            held = sum(1 for transport in transports if not transport.is_closing())
        out.put(("results", results, held))
        for transport in transports:
            transport.abort()

    _run(main())


def _run(coro: object) -> None:
    try:
        import uvloop

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:
        asyncio.run(coro)  # type: ignore[arg-type]


# --- the run --------------------------------------------------------------------------------


def start_feed(
    checks: Any = None,
    engine: str = "nghttp2",
    stream_limit: int = 128,
) -> tuple[mp.Process, mp.Queue, BridgeProcess, int, int]:  # type: ignore[type-arg]
    """The long-poll upstream in a process of its own, and bridge (not started) in front of
    it: (upstream, its publish queue, bridge, https port, http port). With `checks` (a shared
    counter), the stream has an `authorize:` block and the upstream counts its checks."""
    upstream_port, https, http = free_port(), free_port(), free_port()
    publish: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    ready = mp.Event()
    upstream = mp.Process(
        target=upstream_main, args=(upstream_port, publish, ready, checks), daemon=True
    )
    upstream.start()
    ready.wait(10)
    routes = ROUTES + (AUTHORIZE if checks is not None else "")
    bridge = BridgeProcess(
        routes.format(
            https=https, http=http, upstream=upstream_port, engine=engine, limit=stream_limit
        )
    )
    return upstream, publish, bridge, https, http


class Target:
    """The server the subscribers connect to: where (`port`, `path`), how a change is published,
    and whose CPU and writes count (`pids`). `benchmarks/nchan.py` has nginx + nchan's."""

    name = ""
    port = 0
    path = b"/feed"

    def pids(self) -> list[int]:
        raise NotImplementedError

    def publish(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class BridgeFeed(Target):
    """bridge in front of the long-poll upstream; a change is the upstream's."""

    def __init__(self, mode: str, engine: str, stream_limit: int, checks: Any = None) -> None:
        self.name = f"bridge {engine}"
        self.upstream, self.queue, self.bridge, https, http = start_feed(
            checks, engine, stream_limit
        )
        raise_fd_limit()
        self.bridge.start([https, http])
        self.port = http if mode in ("sse-h1", "ws-h1") else https

    def pids(self) -> list[int]:
        return [self.bridge.pid]

    def publish(self) -> None:
        self.queue.put(1)

    def stop(self) -> None:
        self.queue.put(None)
        self.bridge.stop()
        self.upstream.terminate()


def write_calls(pid: int) -> int:
    """write(2)-family system calls a process has made (/proc/PID/io `syscw`: write, writev;
    uvloop writes sockets with them, not send)."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("syscw:"):
            return int(line.split()[1])
    return 0


def measure(
    mode: str,
    subscribers: int,
    changes: int,
    processes: int,
    streams: int = 1,
    sessions: int = 0,
    engine: str = "nghttp2",
    target: Target | None = None,
) -> dict[str, float]:
    """One run: connect `subscribers`, publish `changes` a second apart, read the figures.
    Without `target`, bridge (`engine`) in front of the long-poll upstream."""
    checks = mp.Value("l", 0) if sessions else None
    if target is None:
        target = BridgeFeed(mode, engine, max(128, streams), checks)
    raise_fd_limit()
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    go, stop = mp.Event(), mp.Event()
    pids = target.pids()

    def cpu() -> float:
        return sum(cpu_seconds(pid) for pid in pids)

    try:
        time.sleep(1.0)
        rss0 = sum(rss_bytes(pid) for pid in pids)
        share = [
            subscribers // processes + (1 if i < subscribers % processes else 0)
            for i in range(processes)
        ]
        firsts = [sum(share[:i]) for i in range(len(share))]
        clients = [
            mp.Process(
                target=client_main,
                args=(mode, target.port, n, streams, out, go, stop, first, sessions, target.path),
                daemon=True,
            )
            for n, first in zip(share, firsts, strict=True)
            if n
        ]
        t0 = time.monotonic()
        cpu_connect0 = cpu()
        for c in clients:
            c.start()
        connected = 0
        for _ in clients:
            _kind, n, _elapsed = out.get(timeout=300)
            connected += n
        connect_time = time.monotonic() - t0
        connect_cpu = cpu() - cpu_connect0
        time.sleep(2.0)  # let buffers settle before reading RSS
        rss_per = (sum(rss_bytes(pid) for pid in pids) - rss0) / max(1, connected)
        go.set()
        time.sleep(0.5)
        cpu0 = cpu()
        client_cpu0 = sum(cpu_seconds(c.pid) for c in clients if c.pid)
        writes0 = sum(write_calls(pid) for pid in pids)
        t1 = time.monotonic()
        steal = StealMeter()
        for _ in range(changes):
            target.publish()
            time.sleep(1.0)
        time.sleep(1.0)
        spent = cpu() - cpu0
        writes = sum(write_calls(pid) for pid in pids) - writes0
        client_cpu = sum(cpu_seconds(c.pid) for c in clients if c.pid) - client_cpu0
        window = time.monotonic() - t1
        steal_percent = steal.percent()
        stop.set()
        latencies: list[float] = []
        received = 0
        held = 0
        for _ in clients:
            _kind, results, conns = out.get(timeout=120)
            received += len(results)
            held += conns
            latencies += [lat for _, lat in results]
        for c in clients:
            c.join(10)
        expected = connected * changes
        latencies.sort()

        def pct(p: float) -> float:
            return (
                latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000
                if latencies
                else float("nan")
            )

        return {
            "connected": connected,
            "connect_s": connect_time,
            "connect_cpu_us": connect_cpu / max(1, connected) * 1e6,
            "rss_kb": rss_per / 1024,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
            "lost": expected - received,
            "cpu_us": spent / max(1, received) * 1e6,
            "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
            "steal": steal_percent,
            "checks": checks.value if checks is not None else float("nan"),
            "held": held,
            # write calls per change per connection held (the upstream's few included)
            "writes": writes / max(1, changes) / max(1, held),
            "client_cpu_us": client_cpu / max(1, received) * 1e6,
            # the subscriber processes' share of their one core while changes were published
            "client_busy": 100.0 * client_cpu / max(1e-9, window),
        }
    finally:
        stop.set()
        target.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--processes", type=int, default=4, help="subscriber processes")
    parser.add_argument(
        "--h2-streams",
        type=int,
        default=1,
        help="HTTP/2 and HTTP/3 modes: subscribers (streams) per connection, as a browser multiplexes "
        "its tabs' streams on one connection; 1 = one connection per subscriber",
    )
    parser.add_argument(
        "--authorize",
        type=int,
        default=0,
        metavar="SESSIONS",
        help="authorize on: subscribers carry SESSIONS distinct session cookies (e.g. 1000 "
        "for 10000 subscribers); the checks column counts the app's checks",
    )
    parser.add_argument(
        "--h2-engine", choices=("nghttp2", "h2"), default="nghttp2", help="engines.http2"
    )
    args = parser.parse_args()
    if not shutil.which("taskset"):
        print("note: taskset missing; processes are pinned with sched_setaffinity where possible")
    header = (
        f"{'mode':<11} {'subs':>6} {'conn s':>7} {'µs/conn':>8} {'RSS KB/sub':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'max ms':>8} {'lost':>6} {'CPU µs/deliv':>12} {'steal %':>8} {'checks':>7}"
    )
    print(header)
    for mode in args.modes:
        for n in args.subscribers:
            r = measure(
                mode, n, args.changes, args.processes, args.h2_streams, args.authorize,
                args.h2_engine,
            )  # fmt: skip
            print(
                f"{mode:<11} {r['connected']:6.0f} {r['connect_s']:7.2f} {r['connect_cpu_us']:8.0f} "
                f"{r['rss_kb']:10.1f} "
                f"{r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['max_ms']:8.1f} {r['lost']:6.0f} "
                f"{r['cpu_us']:12.1f} {r['steal']:8.1f} {r['checks']:7.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
