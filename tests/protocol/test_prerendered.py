"""Framing of pre-rendered stream bytes is the adapter's job (the stream seam): each adapter
frames what the fan-out writes the way its version wants, and what a real client library
parses back is exactly the rendered bytes, in order, after the response head."""

from __future__ import annotations

import h2.events
import h11
import pytest

from bridge.events import Body, EndBody, Response
from bridge.framing import UNFRAMED
from bridge.protocol.http1 import CHUNKED

from .helpers import H1Pair, H2Pair, parse_response

SSE = [(b"content-type", b"text/event-stream")]
EVENTS = [b"data: one\n\n", b"id: 2\ndata: two\n\n"]


def test_http11_frames_events_as_chunks_after_the_queued_head() -> None:
    pair = H1Pair(False)
    pair.request()
    assert pair.server.body_framing(1) is CHUNKED
    pair.respond(Response(1, 200, SSE))
    first = pair.server.frame_prerendered(1, EVENTS[0])
    # The head was still queued: it leaves first, in the same buffer.
    assert first.startswith(b"HTTP/1.1 200 ")
    assert pair.server.data_to_send() == b""
    # Bytes the hub already framed (its per-event cache) pass as they are.
    second = pair.server.frame_prerendered(1, CHUNKED.frame(EVENTS[1]), framed=True)
    assert second == CHUNKED.frame(EVENTS[1])
    pair.respond(EndBody(1))
    parsed = parse_response(first + second + pair.server.data_to_send())
    assert (parsed.status, parsed.body, parsed.complete) == (200, b"".join(EVENTS), True)


def test_http10_events_are_unframed_and_end_with_the_connection() -> None:
    pair = H1Pair(False)
    pair.raw(b"GET /s HTTP/1.0\r\n\r\n")
    assert pair.server.body_framing(1) is UNFRAMED
    pair.respond(Response(1, 200, SSE))
    wire = pair.server.frame_prerendered(1, EVENTS[0])
    pair.respond(EndBody(1))
    wire += pair.server.data_to_send()
    assert b"transfer-encoding" not in wire.lower()
    parsed = parse_response(wire, eof=True)
    assert (parsed.status, parsed.body, parsed.complete) == (200, EVENTS[0], True)


def test_tunnel_bytes_are_never_chunked() -> None:
    pair = H1Pair(False)
    pair.client_send(
        h11.Request(
            method=b"GET",
            target=b"/ws",
            headers=[(b"host", b"x"), (b"upgrade", b"websocket"), (b"connection", b"upgrade")],
        ),
        h11.EndOfMessage(),
    )
    pair.respond(Response(1, 101, [(b"upgrade", b"websocket"), (b"connection", b"Upgrade")]))
    assert pair.server.body_framing(1) is UNFRAMED
    wire = pair.server.frame_prerendered(1, b"\x81\x02hi")
    assert wire.endswith(b"\r\n\r\n\x81\x02hi")  # the 101 head, then the frame as it is


def h2_stream() -> H2Pair:
    """A handshaken HTTP/2 pair with one GET open on stream 1."""
    pair = H2Pair(False)
    pair.handshake()
    assert pair.get() == 1
    pair.to_server()
    return pair


@pytest.mark.usefixtures("h2_engine")  # on both HTTP/2 engines (tests/conftest.py)
def test_http2_frames_each_event_as_one_data_frame_of_its_stream() -> None:
    pair = h2_stream()
    sid = 1
    assert pair.server.body_framing(sid) is UNFRAMED  # per stream: the frame carries its id
    pair.respond(Response(sid, 200, SSE))
    wire = b""
    for event in EVENTS:
        framed = pair.server.frame_prerendered(sid, event)
        assert framed is not None
        wire += framed
    received = pair.client.receive_data(wire)
    heads = [e for e in received if isinstance(e, h2.events.ResponseReceived)]
    data = [e for e in received if isinstance(e, h2.events.DataReceived)]
    assert [e.stream_id for e in heads] == [sid]
    assert [e.data for e in data] == EVENTS  # one DATA frame per event, in order
    assert all(e.stream_id == sid for e in data)


@pytest.mark.usefixtures("h2_engine")
def test_http2_past_the_window_falls_back_to_flow_controlled_body() -> None:
    pair = h2_stream()
    sid = 1
    pair.respond(Response(sid, 200, SSE))
    big = b"x" * (pair.server.send_window(sid) + 1)
    assert pair.server.frame_prerendered(sid, big) is None  # the caller sends Body instead
    pair.respond(Body(sid, big))
    assert pair.server.pending(sid) > 0
