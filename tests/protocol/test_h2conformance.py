"""RFC 9113 cases that h2spec runs, with h2spec's own frames, on both HTTP/2 engines.

libnghttp2 (1.65 on) keeps no closed streams and ignores PRIORITY frames, so it lets through
frames RFC 9113 makes errors, and it ends the connection where a stream's window overflows;
the nghttp2 engine checks these itself (ngh2shim `_walk`). h2 answers each on its own. Each
case runs with the frames in one write, one write each, and one byte at a time, since
`_walk` holds back a frame it must read before libnghttp2 does.

What h2spec accepts is asserted, not one engine's choice where RFC 9113 allows two: a stream
error may be answered as a connection error (§5.4.1).
"""

from __future__ import annotations

import pytest
from hyperframe.frame import (
    DataFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from bridge import settings
from bridge.events import Body, ConnectionClosed, EndBody, Request, Response
from bridge.protocol.h2engine import ErrorCodes

from .helpers import GET, RawClient, goaways, of_type, resets

pytestmark = pytest.mark.usefixtures("h2_engine")

deliveries = pytest.mark.parametrize("delivery", ["whole", "frames", "bytes"])
POST = [(b":method", b"POST"), *GET[1:]]
MAX_WINDOW = 2**31 - 1


def _stream_closed(client: RawClient, events: list[object], sid: int) -> None:
    """h2spec's verdict for a frame on a closed stream: STREAM_CLOSED, for the stream or the
    connection."""
    frames = client.read()
    if goaways(frames):
        assert goaways(frames) == [ErrorCodes.STREAM_CLOSED]
        assert isinstance(events[-1], ConnectionClosed)
    else:
        assert (sid, ErrorCodes.STREAM_CLOSED) in resets(frames)


def _protocol_error(client: RawClient, events: list[object]) -> None:
    assert goaways(client.read()) == [ErrorCodes.PROTOCOL_ERROR]
    assert isinstance(events[-1], ConnectionClosed)
    assert client.server.closed


def _answer(client: RawClient, sid: int) -> None:
    client.server.send(Response(sid, 200))
    client.server.send(Body(sid, b"hello"))
    client.server.send(EndBody(sid))


@deliveries
@pytest.mark.parametrize("late", ["data", "headers"])
def test_a_frame_after_the_clients_reset(delivery: str, late: str) -> None:
    """h2spec http2/5.1/8 and /9: RST_STREAM from the client, then DATA or HEADERS on that
    stream (RFC 9113 §5.1, closed: STREAM_CLOSED)."""
    client = RawClient()
    client.handshake()
    frames = [
        client.headers(1, POST, end=False),
        RstStreamFrame(1, error_code=ErrorCodes.CANCEL).serialize(),
        DataFrame(1, data=b"test", flags=["END_STREAM"]).serialize()
        if late == "data"
        else client.headers(1, GET),
    ]
    events = client.send_frames(frames, delivery)
    _stream_closed(client, events, 1)


@deliveries
def test_data_after_the_clients_end_stream_and_the_response(delivery: str) -> None:
    """h2spec http2/5.1/11: the stream closed both ways, then DATA on it (§5.1)."""
    client = RawClient()
    client.handshake()
    assert [r.stream_id for r in of_type(client.send(client.headers(1, GET)), Request)] == [1]
    _answer(client, 1)
    client.read()
    events = client.send_frames(
        [DataFrame(1, data=b"test", flags=["END_STREAM"]).serialize()], delivery
    )
    _stream_closed(client, events, 1)


@deliveries
def test_headers_after_the_clients_end_stream_and_the_response(delivery: str) -> None:
    """h2spec http2/5.1/12: the stream closed both ways, then HEADERS on it: a connection
    error STREAM_CLOSED (§5.1: any frame after END_STREAM)."""
    client = RawClient()
    client.handshake()
    client.send(client.headers(1, GET))
    _answer(client, 1)
    client.read()
    events = client.send_frames([client.headers(1, GET)], delivery)
    assert goaways(client.read()) == [ErrorCodes.STREAM_CLOSED]
    assert isinstance(events[-1], ConnectionClosed)


@deliveries
def test_a_stream_id_lower_than_one_already_used(delivery: str) -> None:
    """h2spec http2/5.1.1/2: HEADERS on stream 5, then on 3 (§5.1.1: PROTOCOL_ERROR for the
    connection)."""
    client = RawClient()
    client.handshake()
    events = client.send_frames([client.headers(5, GET), client.headers(3, GET)], delivery)
    _protocol_error(client, events)


@deliveries
def test_priority_that_depends_on_its_own_stream(delivery: str) -> None:
    """h2spec http2/5.3.1/2 (§5.3.1: a stream cannot depend on itself). Both engines answer
    it as they answer a HEADERS that does: a connection error PROTOCOL_ERROR."""
    client = RawClient()
    client.handshake()
    frame = PriorityFrame(1, depends_on=1, stream_weight=255).serialize()
    events = client.send_frames([frame], delivery)
    _protocol_error(client, events)


@deliveries
def test_priority_on_stream_zero(delivery: str) -> None:
    """h2spec http2/6.3/1 (§6.3: a connection error PROTOCOL_ERROR). Written by hand:
    hyperframe refuses a PRIORITY frame without a stream."""
    client = RawClient()
    client.handshake()
    frame = b"\x00\x00\x05\x02\x00\x00\x00\x00\x00" + b"\x80\x00\x00\x01\x0a"
    events = client.send_frames([frame], delivery)
    _protocol_error(client, events)


@deliveries
def test_a_stream_window_past_the_maximum_resets_only_that_stream(delivery: str) -> None:
    """h2spec http2/6.9.1/3: WINDOW_UPDATEs taking a stream's window past 2^31-1 (§6.9.1: for
    a stream, RST_STREAM FLOW_CONTROL_ERROR). The connection goes on."""
    client = RawClient()
    client.handshake()
    update = WindowUpdateFrame(1, window_increment=MAX_WINDOW).serialize()
    events = client.send_frames([client.headers(1, GET, end=False), update, update], delivery)
    assert [r.stream_id for r in of_type(events, Request)] == [1]
    frames = client.read()
    assert resets(frames) == [(1, ErrorCodes.FLOW_CONTROL_ERROR)]
    assert goaways(frames) == []
    assert not client.server.closed
    events = client.send(client.headers(3, GET))
    assert [r.stream_id for r in of_type(events, Request)] == [3]


@deliveries
@pytest.mark.parametrize(("increment", "overflows"), [(1, False), (2, True)])
def test_a_stream_window_grown_by_settings_in_the_same_write(
    delivery: str, increment: int, overflows: bool
) -> None:
    """A SETTINGS raising every stream's window to 2^31-2 ahead of a WINDOW_UPDATE in the
    same write: the update is judged against the window the SETTINGS made."""
    client = RawClient()
    client.handshake()
    grow = SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: MAX_WINDOW - 1})
    update = WindowUpdateFrame(1, window_increment=increment).serialize()
    frames_in = [client.headers(1, GET), grow.serialize(), update]
    events = client.send_frames(frames_in, delivery)
    assert [r.stream_id for r in of_type(events, Request)] == [1]
    frames = client.read()
    expected = [(1, ErrorCodes.FLOW_CONTROL_ERROR)] if overflows else []
    assert resets(frames) == expected
    assert goaways(frames) == []
    assert not client.server.closed


@deliveries
def test_data_after_bridge_reset_the_stream_is_ignored(delivery: str) -> None:
    """The response ended before the request body (RST_STREAM NO_ERROR, RFC 9113 §8.1):
    what the client had in flight on that stream is ignored (§5.1), not an error."""
    client = RawClient()
    client.handshake()
    client.send(client.headers(1, POST, end=False))
    _answer(client, 1)
    assert (1, ErrorCodes.NO_ERROR) in resets(client.read())
    late = [
        DataFrame(1, data=b"late").serialize(),
        client.headers(1, [(b"x-trailer", b"1")]),  # trailers, END_STREAM
    ]
    events = client.send_frames(late, delivery)
    assert not of_type(events, ConnectionClosed)
    assert goaways(client.read()) == []
    events = client.send(client.headers(3, GET))
    assert [r.stream_id for r in of_type(events, Request)] == [3]


def test_data_on_a_refused_stream_is_ignored() -> None:
    """A stream beyond the limit is refused (REFUSED_STREAM) while its client was sending:
    its body is ignored, the connection goes on."""
    client = RawClient(max_concurrent_streams=1)
    client.handshake()
    events = client.send(client.headers(1, POST, end=False) + client.headers(3, POST, end=False))
    assert [r.stream_id for r in of_type(events, Request)] == [1]
    assert resets(client.read()) == [(3, ErrorCodes.REFUSED_STREAM)]
    events = client.send(DataFrame(3, data=b"body", flags=["END_STREAM"]).serialize())
    assert not of_type(events, ConnectionClosed)
    assert goaways(client.read()) == []


def test_the_newest_reset_stream_stays_ignored_past_the_bound() -> None:
    """More than `H2_RESET_STREAMS_KEPT` streams reset while their clients sent: the nghttp2
    engine forgets the oldest (§5.1 lets the period be limited), never the newest."""
    kept = settings.H2_RESET_STREAMS_KEPT
    client = RawClient()
    client.handshake()
    for sid in range(1, 2 * (kept + 1), 2):
        client.send(client.headers(sid, POST, end=False))
        _answer(client, sid)
        client.read()
    newest = 2 * kept + 1
    events = client.send(DataFrame(newest, data=b"late").serialize())
    assert not of_type(events, ConnectionClosed)
    assert goaways(client.read()) == []
