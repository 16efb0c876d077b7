"""An `Http1Protocol` leaves no reference cycle behind (its parser keeps bound callbacks):
a closed connection's memory returns at once, without a full collection."""

from __future__ import annotations

import gc

from bridge.events import Body, EndBody, Response
from bridge.protocol.http1 import Http1Protocol


def test_a_finished_connection_is_freed_without_the_cycle_collector() -> None:
    gc.collect()
    gc.disable()
    try:
        for _ in range(50):
            server = Http1Protocol(scheme="http")
            server.receive_data(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
            server.send(Response(1, 200, [(b"content-length", b"2")]))
            server.send(Body(1, b"ok"))
            server.send(EndBody(1))
            server.receive_data(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\n")
            server.data_to_send()
            del server
        assert gc.collect() == 0  # nothing was left for the collector to find
    finally:
        gc.enable()
