"""What the wire libraries cost per proxied request, in memory: the floor under `proxy.py`.

A proxied HTTP/1.1 request is parsed and framed twice: by the client-facing adapter (request
in, response out) and by the upstream client (request out, response in). This times, with the
small request and answer the proxy benchmark uses, no sockets and no event loop:

- h11, the pure-Python state machine bridge used to run on (and the tests' peer still);
- llhttp alone (httptools' parsers with empty callbacks): the C parser's own share;
- bridge's adapters on llhttp (`Http1Protocol`, `upstream.reader`): llhttp plus bridge's own
  framing, validation and event building, i.e. what the proxy really runs;
- HTTP/2: h2 alone and libnghttp2 alone (ngh2; server side: a request's HEADERS in,
  HEADERS + DATA out), and bridge's `Http2Protocol` on each engine (`engines.http2`), so the
  glue's share is the difference.

    python3 benchmarks/wire_cost.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import h2.config
import h2.connection
import h2.settings
import h11
import httptools
import ngh2

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bridge.events import Body, EndBody, Response
from bridge.protocol.h2engine import EngineFactory
from bridge.protocol.h2shim import H2Engine
from bridge.protocol.http1 import Http1Protocol
from bridge.protocol.http2 import Http2Protocol
from bridge.protocol.ngh2shim import NghttpEngine
from bridge.upstream import reader as wire

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:18080\r\nUser-Agent: wrk\r\n\r\n"
RESPONSE = (
    b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 12\r\n\r\n{"ok":true}\n'
)
BODY = b'{"ok":true}\n'
RESPONSE_HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", b"12"),
    (b"via", b"1.1 bridge"),
]
FORWARDED = [
    (b"host", b"127.0.0.1:18080"),
    (b"user-agent", b"wrk"),
    (b"x-forwarded-for", b"127.0.0.1"),
    (b"x-forwarded-proto", b"http"),
    (b"x-forwarded-host", b"127.0.0.1:18080"),
    (b"forwarded", b"for=127.0.0.1;proto=http;host=127.0.0.1:18080"),
    (b"via", b"1.1 bridge"),
]


def h11_server(n: int) -> float:
    conn = h11.Connection(h11.SERVER)
    start = time.perf_counter()
    for _ in range(n):
        conn.receive_data(REQUEST)
        conn.next_event()  # Request
        conn.next_event()  # EndOfMessage
        conn.send(h11.Response(status_code=200, headers=RESPONSE_HEADERS))
        conn.send(h11.Data(data=BODY))
        conn.send(h11.EndOfMessage())
        conn.start_next_cycle()
    return (time.perf_counter() - start) / n


def h11_client(n: int) -> float:
    conn = h11.Connection(h11.CLIENT)
    start = time.perf_counter()
    for _ in range(n):
        conn.send(h11.Request(method=b"GET", target=b"/", headers=FORWARDED))
        conn.send(h11.EndOfMessage())
        conn.receive_data(RESPONSE)
        conn.next_event()  # Response
        conn.next_event()  # Data
        conn.next_event()  # EndOfMessage
        conn.start_next_cycle()
    return (time.perf_counter() - start) / n


class _Quiet:
    def on_url(self, url: bytes) -> None: ...
    def on_header(self, name: bytes, value: bytes) -> None: ...
    def on_headers_complete(self) -> None: ...
    def on_body(self, body: bytes) -> None: ...
    def on_message_complete(self) -> None: ...


def llhttp_alone(n: int) -> float:
    request = httptools.HttpRequestParser(_Quiet())
    response = httptools.HttpResponseParser(_Quiet())
    start = time.perf_counter()
    for _ in range(n):
        request.feed_data(REQUEST)
        response.feed_data(RESPONSE)
    return (time.perf_counter() - start) / n


def bridge_server(n: int) -> float:
    conn = Http1Protocol(scheme="http")
    head, body, end = Response(1, 200, RESPONSE_HEADERS), Body(1, BODY), EndBody(1)
    start = time.perf_counter()
    for _ in range(n):
        conn.receive_data(REQUEST)  # Request, EndBody
        conn.send(head)
        conn.send(body)
        conn.send(end)
        conn.data_to_send()
    return (time.perf_counter() - start) / n


def bridge_client(n: int) -> float:
    reader = wire.ResponseReader()
    start = time.perf_counter()
    for _ in range(n):
        wire.request_head("GET", "/", FORWARDED)
        reader.begin("GET")
        reader.feed(RESPONSE)
        reader.next()  # HEAD
        reader.next()  # DATA
        reader.next()  # END
    return (time.perf_counter() - start) / n


def _h2_requests(n: int) -> tuple[bytes, list[bytes]]:
    """A client's preface and `n` request HEADERS frames, each as its own bytes."""
    config = h2.config.H2Configuration(client_side=True, header_encoding=None)
    client = h2.connection.H2Connection(config=config)
    client.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1}
    )
    client.initiate_connection()
    client.increment_flow_control_window(2**31 - 1 - 65535)
    preface = client.data_to_send()
    headers = [
        (b":method", b"GET"),
        (b":path", b"/"),
        (b":scheme", b"https"),
        (b":authority", b"127.0.0.1:18443"),
        (b"user-agent", b"h2load"),
    ]
    frames = []
    for i in range(n):
        client.send_headers(2 * i + 1, headers, end_stream=True)
        frames.append(client.data_to_send())
        # The client never reads an answer, so h2 would count every stream as open and
        # recount them at each send (quadratic); a reset it never sends closes it here.
        client.reset_stream(2 * i + 1)
        client.data_to_send()
    return preface, frames


def h2_alone(n: int) -> float:
    preface, frames = _h2_requests(n)
    config = h2.config.H2Configuration(client_side=False, header_encoding=None)
    server = h2.connection.H2Connection(config=config)
    server.initiate_connection()
    server.receive_data(preface)
    server.data_to_send()
    answer = [(b":status", b"200"), *RESPONSE_HEADERS]
    start = time.perf_counter()
    for i, frame in enumerate(frames):
        sid = 2 * i + 1
        server.receive_data(frame)
        server.send_headers(sid, answer)
        server.send_data(sid, BODY, end_stream=True)
        server.data_to_send()
    return (time.perf_counter() - start) / n


def ngh2_alone(n: int) -> float:
    preface, frames = _h2_requests(n)
    server = ngh2.Connection(ngh2.Role.SERVER, ngh2.Configuration(auto_window_update=False))
    server.initiate_connection()
    server.receive_data(preface)
    server.events()
    server.data_to_send()
    answer = [(b":status", b"200"), *RESPONSE_HEADERS]
    start = time.perf_counter()
    for i, frame in enumerate(frames):
        sid = 2 * i + 1
        server.receive_data(frame)
        server.events()
        server.send_response(sid, answer)
        server.send_data(sid, BODY, end_stream=True)
        server.data_to_send()
        server.events()  # StreamClosed, once the frames are out
    return (time.perf_counter() - start) / n


def bridge_h2(n: int, engine: EngineFactory = H2Engine) -> float:
    preface, frames = _h2_requests(n)
    server = Http2Protocol(scheme="https", max_concurrent_streams=128, engine=engine)
    server.receive_data(preface)
    server.data_to_send()
    start = time.perf_counter()
    for i, frame in enumerate(frames):
        sid = 2 * i + 1
        server.receive_data(frame)
        server.send(Response(sid, 200, RESPONSE_HEADERS))
        server.send(Body(sid, BODY))
        server.send(EndBody(sid))
        server.data_to_send()
    return (time.perf_counter() - start) / n


def bridge_prerendered(n: int, engine: EngineFactory = H2Engine) -> float:
    """The fan-out's write: one pre-rendered SSE event framed as a DATA frame on one of 100
    open streams (`Http2Protocol.frame_prerendered`), round robin."""
    preface, frames = _h2_requests(100)
    server = Http2Protocol(scheme="https", max_concurrent_streams=128, engine=engine)
    server.receive_data(preface)
    for i, frame in enumerate(frames):
        server.receive_data(frame)
        server.send(Response(2 * i + 1, 200, [(b"content-type", b"text/event-stream")]))
    server.data_to_send()
    event = b"id: 1\ndata: " + b"x" * 48 + b"\n\n"
    sids = [2 * i + 1 for i in range(100)]
    start = time.perf_counter()
    for i in range(n):
        if server.frame_prerendered(sids[i % 100], event) is None:
            raise RuntimeError("the fast path was refused")
    return (time.perf_counter() - start) / n


def best(fn: Callable[[int], float], n: int) -> float:
    return min(fn(n) for _ in range(3))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    n = args.requests
    rows = [
        ("h11, server + client side", best(h11_server, n) + best(h11_client, n)),
        ("llhttp alone, request + response", best(llhttp_alone, n)),
        ("bridge on llhttp, server + client side", best(bridge_server, n) + best(bridge_client, n)),
        ("h2 alone, server side", best(h2_alone, n)),
        ("bridge Http2Protocol (h2 + glue)", best(bridge_h2, n)),
        ("libnghttp2 alone (ngh2), server side", best(ngh2_alone, n)),
        ("bridge Http2Protocol (nghttp2 + glue)", best(lambda k: bridge_h2(k, NghttpEngine), n)),
        ("pre-rendered DATA frame, h2 engine", best(bridge_prerendered, n)),
        (
            "pre-rendered DATA frame, nghttp2 engine",
            best(lambda k: bridge_prerendered(k, NghttpEngine), n),
        ),
    ]
    print(f"h11 {h11.__version__}, httptools {httptools.__version__}, h2 {h2.__version__}, "
          f"ngh2 {ngh2.__version__}; "
          f"best of 3 runs of {n} requests, in memory (a shared VM: compare within one run)")  # fmt: skip
    for name, seconds in rows:
        print(f"{name:42} {seconds * 1e6:6.1f} µs   {1 / seconds:9.0f} /s on one core")


if __name__ == "__main__":
    main()
