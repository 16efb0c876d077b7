"""Where the two HTTP/2 engines (libnghttp2, h2) differ, and what bridge makes of each.

RFC 9113 allows both behaviours in each case here; the tests say which one each engine has,
so a change in either library (or in the shims) shows up as a failure rather than a surprise.
Frames are written raw (a client library would refuse to send them) and what the adapter
answers is read frame by frame with hyperframe.
"""

from __future__ import annotations

import tracemalloc

import pytest
from hyperframe.frame import (
    Frame,
    GoAwayFrame,
    HeadersFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from bridge.events import ConnectionClosed, EndBody, Request, Response, StreamClosed
from bridge.protocol.h2engine import H2, NGHTTP2, ErrorCodes
from bridge.protocol.http2 import Http2Protocol

from .helpers import GET, RawClient, goaways, of_type, resets

pytestmark = pytest.mark.usefixtures("h2_engine")


def test_a_stream_beyond_the_acknowledged_limit_is_refused_not_fatal() -> None:
    """RFC 9113 §5.1.2, on both engines, after the client has acknowledged the limit
    (libnghttp2 on its own would end the connection with PROTOCOL_ERROR)."""
    client = RawClient(max_concurrent_streams=2)
    (settings, *_) = client.handshake()
    assert settings.settings[SettingsFrame.MAX_CONCURRENT_STREAMS] == 2
    data = b"".join(client.headers(sid, GET) for sid in (1, 3, 5))
    events = client.send(data)
    assert [r.stream_id for r in of_type(events, Request)] == [1, 3]
    frames = client.read()
    assert resets(frames) == [(5, ErrorCodes.REFUSED_STREAM)]
    assert goaways(frames) == []
    # Once a stream ends, the next one is taken.
    assert client.server.send(Response(1, 204)) == []
    assert client.server.send(EndBody(1)) == [StreamClosed(1)]
    events = client.send(client.headers(7, GET))
    assert [r.stream_id for r in of_type(events, Request)] == [7]
    assert not client.server.closed


def test_a_malformed_request_head(h2_engine: str) -> None:
    """An uppercase field name (RFC 9113 §8.2.1) makes the request malformed (§8.1.1).
    libnghttp2 resets that stream (PROTOCOL_ERROR) and serves the next; h2 ends the
    connection (GOAWAY PROTOCOL_ERROR). No handler sees the request on either."""
    client = RawClient()
    client.handshake()
    events = client.send(client.headers(1, [*GET, (b"X-Upper", b"1")]))
    assert of_type(events, Request) == []
    frames = client.read()
    if h2_engine == NGHTTP2:
        assert resets(frames) == [(1, ErrorCodes.PROTOCOL_ERROR)]
        assert goaways(frames) == []
        events = client.send(client.headers(3, GET))
        assert [r.stream_id for r in of_type(events, Request)] == [3]
    else:
        assert h2_engine == H2
        assert goaways(frames) == [ErrorCodes.PROTOCOL_ERROR]
        assert isinstance(events[-1], ConnectionClosed)
        assert client.server.closed


def test_the_connection_window_past_the_maximum_ends_the_connection() -> None:
    client = RawClient()
    client.handshake()
    events = client.send(WindowUpdateFrame(0, window_increment=2**31 - 1).serialize())
    assert isinstance(events[-1], ConnectionClosed)
    assert goaways(client.read()) == [ErrorCodes.FLOW_CONTROL_ERROR]


@pytest.mark.parametrize(
    "garbage", [b"GET / HTTP/1.1\r\n\r\nxxxxxx", b"INVALID CONNECTION PREFACE"]
)
def test_a_bad_preface_gets_settings_then_goaway(garbage: bytes) -> None:
    """RFC 9113 §3.4: PROTOCOL_ERROR, after the adapter's own SETTINGS, with no stream
    processed (libnghttp2 raises and writes nothing; the engine writes the GOAWAY)."""
    server = Http2Protocol(scheme="https")
    events = server.receive_data(garbage)
    assert isinstance(events[-1], ConnectionClosed)
    data = server.data_to_send()
    frames = []
    while data:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    assert isinstance(frames[0], SettingsFrame)
    (goaway,) = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert (goaway.error_code, goaway.last_stream_id) == (ErrorCodes.PROTOCOL_ERROR, 0)
    assert server.receive_data(b"more") == []


def test_hpack_that_does_not_decode_is_a_compression_error() -> None:
    client = RawClient()
    client.handshake()
    frame = HeadersFrame(1, data=b"\xff\xff\xff\xff", flags=["END_HEADERS"])
    events = client.send(frame.serialize())
    assert isinstance(events[-1], ConnectionClosed)
    assert goaways(client.read()) == [ErrorCodes.COMPRESSION_ERROR]


def _hpack_int(value: int, prefix_bits: int, first: int = 0) -> bytes:
    """An HPACK integer (RFC 7541 §5.1)."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 127) | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def test_an_hpack_bomb_ends_the_connection_without_decoding_it() -> None:
    """One 4,000-byte field put in the dynamic table, then referenced 12,000 times at one
    byte each (RFC 7541 §7.3): 48 MB of header list from 16 KB. Both engines stop at the
    advertised MAX_HEADER_LIST_SIZE: GOAWAY ENHANCE_YOUR_CALM, no request, little memory."""
    client = RawClient()
    client.handshake()
    name, value = b"x-bomb", b"v" * 4000
    block = (
        client.encoder.encode(GET)
        + b"\x40"  # literal with incremental indexing, new name (§6.2.1)
        + _hpack_int(len(name), 7)
        + name
        + _hpack_int(len(value), 7)
        + value
        + b"\xbe" * 12_000  # indexed field 62: the newest dynamic entry (§6.1)
    )
    tracemalloc.start()
    try:
        events = client.send(
            HeadersFrame(1, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize()
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert of_type(events, Request) == []
    assert isinstance(events[-1], ConnectionClosed)
    assert goaways(client.read()) == [ErrorCodes.ENHANCE_YOUR_CALM]
    assert peak < 1024 * 1024, peak
