"""What one HTTP/3 delivery costs the QUIC engine, and whether qh3 can be bridge's engine yet.

In memory, no sockets and no event loop: a client and a server QUIC connection trade whole
datagrams on a fake clock. Two parts:

1. **Readiness of qh3** (the native-core QUIC library bridge may adopt as a second HTTP/3
   engine, `engines.http3`, only once it passes bridge's HTTP/3 suite): the checks below are
   the properties that suite depends on, each run against the installed qh3 and, for
   comparison, against bridge's own aioquic setup (`bridge.protocol.quic.ServerQuic`):
   - the handshake with a client whose Initial datagrams are 1,200 and 1,350 bytes (RFC 9000
     §14.1 allows 1,200; aioquic's client sends 1,200, Chromium 1,250, qh3's own 1,280);
   - receive windows that follow consumption: a client uploads 1 MB on one stream that the
     server reads off the connection but never consumes; what it admits should stay near one
     stream window (the suite's `test_request_body_window_follows_consumption`);
   - a per-frame hook for PING, which bridge counts to close PING floods with
     H3_EXCESSIVE_LOAD (`test_floods_of_frames_that_carry_nothing_are_closed_excessive_load`).
2. **Server CPU per delivery**: one 100-byte event written on one stream, its packet built
   and encrypted, the client's ACK received and processed, and the transmit that follows it,
   timed on the server's calls only (min / median / max of rounds). For aioquic this is
   bridge's `ServerQuic` with the `Http3Protocol` adapter (what `bridge run` does per
   delivery); for qh3, its `QuicConnection` alone (no HTTP/3 layer), against its own client.

    python3 benchmarks/quic_engines.py [--deliveries 3000] [--rounds 5]

Figures and their reading are in docs/performance.md (HTTP/3).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aioquic
from aioquic.h3.connection import H3Connection
from aioquic.quic.configuration import QuicConfiguration as AioConfiguration
from aioquic.quic.connection import QuicConnection as AioConnection

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bridge import settings
from bridge.certs import ensure_dev_certs
from bridge.events import Response
from bridge.protocol.http3 import Http3Protocol
from bridge.protocol.quic import ServerQuic, peek_header, server_configuration

try:
    import qh3
    from qh3.quic.configuration import QuicConfiguration as Qh3Configuration
    from qh3.quic.connection import QuicConnection as Qh3Connection
except ImportError:  # qh3 is optional: only its half of the table is skipped
    qh3 = None  # type: ignore[assignment]

CLIENT = ("127.0.0.2", 50000)
SERVER = ("127.0.0.1", 443)
WINDOW = 64 * 1024
EVENT = b"data: " + b"x" * 92 + b"\n\n"  # 100 bytes, as benchmarks/fanout.py's events


class Link:
    """A client and a server connection joined by lists of datagrams on a fake clock."""

    def __init__(self, certs: Path, client_lib: str, server_lib: str, initial: int) -> None:
        self.now = 1000.0
        self.server: Any = None
        self.adapter: Http3Protocol | None = None
        self.server_lib = server_lib
        self.certs = certs
        self.client = _client(certs, client_lib, initial)
        self.client.connect(SERVER, now=self.now)
        self.received = 0  # stream bytes the server read off the connection
        self.error = ""

    def _make_server(self, first: bytes) -> None:
        header = peek_header(first)
        assert header is not None
        cert, key = str(self.certs / "server.crt"), str(self.certs / "server.key")
        if self.server_lib == "aioquic":
            config = server_configuration(cert, key, idle_timeout=60.0, stream_window=WINDOW)
            self.server = ServerQuic(
                stream_window=WINDOW,
                configuration=config,
                original_destination_connection_id=header.destination_cid,
            )
            self.adapter = Http3Protocol(self.server)
        else:
            qconfig = Qh3Configuration(
                is_client=False,
                alpn_protocols=["h3"],
                idle_timeout=60.0,
                max_stream_data=WINDOW,
                max_data=WINDOW * settings.H3_MAX_STREAMS,
                connection_id_length=8,
            )
            qconfig.load_cert_chain(cert, key)
            self.server = Qh3Connection(
                configuration=qconfig, original_destination_connection_id=header.destination_cid
            )

    def pump(self, rounds: int = 50) -> None:
        for _ in range(rounds):
            moved = False
            for data, _addr in self.client.datagrams_to_send(now=self.now):
                moved = True
                if self.server is None:
                    self._make_server(data)
                self.server.receive_datagram(data, CLIENT, now=self.now)
            if self.server is not None:
                self.server_events()
                try:
                    out = self.server.datagrams_to_send(now=self.now)
                except Exception as exc:  # the probe reports whatever the engine raised
                    self.error = f"{type(exc).__name__}: {exc}"
                    return
                for data, _addr in out:
                    moved = True
                    self.client.receive_datagram(data, SERVER, now=self.now)
            while self.client.next_event() is not None:
                pass
            self.now += 0.001
            if not moved:
                return

    def server_events(self) -> None:
        while (event := self.server.next_event()) is not None:
            if type(event).__name__ == "StreamDataReceived":
                self.received += len(event.data)
            if self.adapter is not None:
                self.adapter.receive_event(event)

    @property
    def connected(self) -> bool:
        return bool(getattr(self.client, "_handshake_complete", False)) and not self.error


def _client(certs: Path, lib: str, initial: int) -> Any:
    if lib == "aioquic":
        config = AioConfiguration(is_client=True, alpn_protocols=["h3"], max_datagram_size=initial)
        config.load_verify_locations(str(certs / "ca.crt"))
        config.server_name = "localhost"
        return AioConnection(configuration=config)
    qconfig = Qh3Configuration(is_client=True, alpn_protocols=["h3"], max_datagram_size=initial)
    qconfig.load_verify_locations(str(certs / "ca.crt"))
    qconfig.server_name = "localhost"
    return Qh3Connection(configuration=qconfig)


def handshake(certs: Path, client_lib: str, server_lib: str, initial: int) -> str:
    link = Link(certs, client_lib, server_lib, initial)
    link.pump()
    if link.connected:
        return "ok"
    return link.error or "did not complete"


def admitted(certs: Path, client_lib: str, server_lib: str) -> str:
    """Bytes the server admits on one stream it never consumes, uploaded 1 MB."""
    link = Link(certs, client_lib, server_lib, 1350)
    link.pump()
    if not link.connected:
        return f"no handshake ({link.error or 'incomplete'})"
    sid = link.client.get_next_available_stream_id()
    link.client.send_stream_data(sid, os.urandom(1_000_000), end_stream=True)
    link.pump(3000)
    return f"{link.received:,} B"


def ping_hook(server_lib: str) -> str:
    cls = ServerQuic if server_lib == "aioquic" else Qh3Connection
    return "yes" if hasattr(cls, "_handle_ping_frame") else "no (frames are parsed natively)"


def delivery_cost(certs: Path, lib: str, deliveries: int) -> float | str:
    """Server µs per delivery, averaged over `deliveries` events (or why none could be timed)."""
    link = Link(certs, lib, lib, 1350)
    link.pump()
    if not link.connected:
        return f"no handshake ({link.error or 'incomplete'})"
    server = link.server
    if link.adapter is not None:  # bridge's adapter: a request, its event-stream head
        adapter = link.adapter
        h3 = H3Connection(link.client)
        sid = link.client.get_next_available_stream_id()
        h3.send_headers(
            sid,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", b"localhost"),
                (b":path", b"/events"),
            ],
            end_stream=True,
        )
        link.pump()
        adapter.send(Response(sid, 200, [(b"content-type", b"text/event-stream")]))
        link.pump()
        frame = adapter.frame_prerendered(sid, EVENT)
        assert frame is not None

        def write() -> None:
            adapter.write_framed(sid, frame)
    else:
        sid = server.get_next_available_stream_id()

        def write() -> None:
            server.send_stream_data(sid, EVENT)

    pc = time.perf_counter
    spent = 0.0
    for _ in range(deliveries):
        t0 = pc()
        write()
        out = server.datagrams_to_send(now=link.now)
        spent += pc() - t0
        for data, _addr in out:
            link.client.receive_datagram(data, SERVER, now=link.now)
        while link.client.next_event() is not None:
            pass
        link.now += 0.030  # past the client's ack delay: one ACK per event, as on the wire
        timer = link.client.get_timer()
        if timer is not None and timer <= link.now:
            link.client.handle_timer(now=link.now)
        acks = link.client.datagrams_to_send(now=link.now)
        t0 = pc()
        for data, _addr in acks:
            server.receive_datagram(data, CLIENT, now=link.now)
        link.server_events()
        if link.adapter is not None:
            link.adapter.drained()
        timer = server.get_timer()
        if timer is not None and timer <= link.now:
            server.handle_timer(now=link.now)
        server.datagrams_to_send(now=link.now)
        spent += pc() - t0
    return spent / deliveries * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deliveries", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    engines = ["aioquic"] + (["qh3"] if qh3 is not None else [])
    print(f"aioquic {aioquic.__version__}; qh3 {qh3.__version__ if qh3 else 'not installed'}")
    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp)
        ensure_dev_certs(certs)
        print("\n## readiness (server engine ← client)")
        rows: list[tuple[str, str, str]] = []
        for server_lib in engines:
            for client_lib in engines:
                for initial in (1200, 1350):
                    rows.append(
                        (
                            f"handshake, {client_lib} client, {initial} B Initials",
                            server_lib,
                            handshake(certs, client_lib, server_lib, initial),
                        )
                    )
            rows.append(
                (
                    f"admitted of 1 MB never consumed (window {WINDOW // 1024} KiB)",
                    server_lib,
                    admitted(certs, server_lib, server_lib),
                )
            )
            rows.append(("per-frame PING hook", server_lib, ping_hook(server_lib)))
        for what, lib, result in rows:
            print(f"  {lib:8s} {what:48s} {result}")

        print(f"\n## server CPU per delivery, µs ({args.rounds} rounds of {args.deliveries})")
        samples: dict[str, list[float]] = {lib: [] for lib in engines}
        failed: dict[str, str] = {}
        for _ in range(args.rounds):  # interleaved: the machine's noise hits both alike
            for lib in engines:
                got = delivery_cost(certs, lib, args.deliveries)
                if isinstance(got, str):
                    failed[lib] = got
                else:
                    samples[lib].append(got)
        for lib in engines:
            values = samples[lib]
            if lib in failed:
                print(f"  {lib:8s} {failed[lib]}")
            elif values:
                print(
                    f"  {lib:8s} min {min(values):6.1f}  median {statistics.median(values):6.1f}"
                    f"  max {max(values):6.1f}"
                )


if __name__ == "__main__":
    main()
