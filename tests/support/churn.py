"""A client process that opens TLS connections to bridge and resets each one (RST, not FIN),
after one request of a rotating kind: an HTTP/1.1 GET, an HTTP/2 GET, an SSE subscription over
both versions, a WebSocket handshake. Used by the garbage-after-churn test: being another
process, its own objects do not mix with the bridge's in that process's collector.

    python -m tests.support.churn PORT CA_FILE COUNT
"""

from __future__ import annotations

import socket
import ssl
import struct
import sys

import h2.config
import h2.connection

KINDS = ("h1", "h2", "sse", "h2sse", "ws")


def _h2_request(path: str, *extra: tuple[str, str]) -> bytes:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    head = [(":method", "GET"), (":scheme", "https"), (":authority", "localhost"), (":path", path)]
    conn.send_headers(1, [*head, *extra], end_stream=True)
    return conn.data_to_send()


REQUESTS = {
    "h1": b"GET /echo HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "h2": _h2_request("/echo"),
    "sse": b"GET /prices/A HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n\r\n",
    "h2sse": _h2_request("/prices/A", ("accept", "text/event-stream")),
    "ws": b"GET /prices/A HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
}


def main(port: int, ca: str, count: int) -> None:
    contexts = {}
    for alpn in ("h2", "http/1.1"):
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols([alpn])
        contexts[alpn] = ctx
    for n in range(count):
        kind = KINDS[n % len(KINDS)]
        ctx = contexts["h2" if kind.startswith("h2") else "http/1.1"]
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock = ctx.wrap_socket(raw, server_hostname="localhost")
        sock.sendall(REQUESTS[kind])
        sock.recv(4096)  # the answer has begun: the exchange is under way
        # SO_LINGER 0: close sends RST, a client that vanishes rather than says goodbye
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))
