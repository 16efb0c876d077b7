"""What h11 alone costs per proxied request: the floor under `benchmarks/proxy.py`.

A proxied HTTP/1.1 request goes through h11 twice: the client-facing server connection
(parse the request, frame the response) and the upstream client connection (frame the
request, parse the response). This times both, in memory, with the same small request and
answer the proxy benchmark uses, so the figure is the library's share with no sockets, no
event loop and none of bridge's own code.

    python3 benchmarks/h11_cost.py [--requests 20000]
"""

from __future__ import annotations

import argparse
import time

import h11

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


def server_side(n: int) -> float:
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


def client_side(n: int) -> float:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args()
    server = min(server_side(args.requests) for _ in range(3))
    client = min(client_side(args.requests) for _ in range(3))
    print(f"h11 {h11.__version__}, best of 3 runs of {args.requests} requests")
    print(f"server side (request in, response out)   {server * 1e6:6.1f} µs")
    print(f"client side (request out, response in)   {client * 1e6:6.1f} µs")
    total = server + client
    print(f"per proxied request                      {total * 1e6:6.1f} µs")
    print(f"ceiling on one core, h11 alone           {1 / total:8.0f} requests/s")


if __name__ == "__main__":
    main()
