"""Wire renderings of an item — SSE frames, HTTP/1.1 chunks, WebSocket frames — checked by
parsing them back the way clients do: a WHATWG event-stream parser, a chunk decoder, wsproto's
client side. Also the parser itself against the examples of the HTML standard."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto.events import BytesMessage, Ping, TextMessage

from bridge.hub.item import HEARTBEAT, Format, Item, slot
from bridge.hub.render import sse_frame, sse_retry, ws_envelope, ws_frame
from bridge.protocol.http1 import CHUNKED, chunk
from tests.support.sse import SseEvent, SseParser, parse
from tests.unit.hubfakes import unchunk, ws_messages

# Text with every line-break spelling and NUL among ordinary characters (no lone surrogates:
# bodies are bytes, and UTF-8 cannot carry those).
texts = st.lists(
    st.one_of(
        st.sampled_from(["\r", "\n", "\r\n", "\0", ":", " ", "\ufeff", "é", "😀"]),
        st.characters(blacklist_categories=("Cs",)),
    ),
    max_size=40,
).map("".join)


def normalise_breaks(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


# --- SSE ------------------------------------------------------------------------------------------


@given(data=texts, event=texts, event_id=texts)
def test_sse_frame_round_trips_through_a_whatwg_parser(
    data: str, event: str, event_id: str
) -> None:
    frame = sse_frame(event_id, event, data.encode())
    events, retry = parse(frame)
    assert retry is None
    assert len(events) == 1  # one frame is exactly one event, whatever the payload
    [got] = events
    # Any CR, LF or CRLF in data arrives as LF; nothing else changes.
    assert got.data == normalise_breaks(data)
    # Names and ids are single lines without NUL; a break becomes a space.
    one_line = normalise_breaks(event).replace("\n", " ").replace("\0", "")
    assert got.event == (one_line if one_line else "message")
    assert got.id == normalise_breaks(event_id).replace("\n", " ").replace("\0", "")


@given(evil=texts)
def test_data_can_never_inject_a_field_or_end_the_event(evil: str) -> None:
    payload = f"x\nid: forged\r\nevent: forged\rretry: 1\n\n\r\r\n{evil}\n\ndata: more"
    events, retry = parse(sse_frame("0000000000001-000001", "price", payload.encode()))
    assert [(e.id, e.event) for e in events] == [("0000000000001-000001", "price")]
    assert retry is None
    assert events[0].data == normalise_breaks(payload)


@given(st.lists(st.tuples(texts, st.sampled_from(["price", "message", "reset"])), max_size=6))
def test_a_stream_of_frames_parses_fed_in_any_pieces(frames: list[tuple[str, str]]) -> None:
    stream = sse_retry(1500) + b"".join(
        sse_frame(f"1-{i}", event, data.encode()) + b":\n\n"
        for i, (data, event) in enumerate(frames)
    )
    whole, retry = parse(stream)
    assert retry == 1500
    assert [(e.id, e.event, e.data) for e in whole] == [
        (f"1-{i}", event, normalise_breaks(data)) for i, (data, event) in enumerate(frames)
    ]
    parser = SseParser()  # byte by byte: split CRLFs and UTF-8 sequences too
    bytewise = [e for i in range(len(stream)) for e in parser.feed(stream[i : i + 1])]
    assert bytewise == whole
    assert len(parser.comments) == len(frames)


def test_empty_data_is_an_event_and_message_is_the_default_type() -> None:
    assert sse_frame("1-1", "message", b"") == b"id: 1-1\ndata: \n\n"
    assert parse(sse_frame("1-1", "message", b""))[0] == [SseEvent("1-1", "message", "")]
    assert sse_frame("2-1", "price", b'{"p":1}') == b'id: 2-1\nevent: price\ndata: {"p":1}\n\n'


def test_retry_and_heartbeat_are_not_events() -> None:
    assert sse_retry(2500) == b"retry: 2500\n\n"
    events, retry = parse(sse_retry(2500) + HEARTBEAT.render(Format.SSE))
    assert events == [] and retry == 2500
    assert HEARTBEAT.render(Format.SSE) == b":\n\n"


# --- the parser against HTML §9.2.6 -------------------------------------------------------------


def test_parser_follows_the_standard_examples() -> None:
    # "data: YHOO / data: +2 / data: 10" → one event, lines joined with LF
    assert parse(b"data: YHOO\ndata: +2\ndata: 10\n\n")[0] == [
        SseEvent("", "message", "YHOO\n+2\n10")
    ]
    # comments, ids that persist, an `id` line without value resetting it, one space stripped
    stream = (
        b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\n"
        b"data:  third event\n\n"
    )
    assert parse(stream)[0] == [
        SseEvent("1", "message", "first event"),
        SseEvent("", "message", "second event"),
        SseEvent("", "message", " third event"),
    ]
    # `data` alone is an empty value; a block without a blank line at the end is discarded
    assert parse(b"data\n\ndata\ndata\n\ndata:")[0] == [
        SseEvent("", "message", ""),
        SseEvent("", "message", "\n"),
    ]
    # "data:test" and "data: test" are the same
    assert parse(b"data:test\n\ndata: test\n\n")[0] == [SseEvent("", "message", "test")] * 2


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        (b"\xef\xbb\xbfdata: a\r\n\r\n", [SseEvent("", "message", "a")]),  # one BOM dropped
        (b"\xef\xbb\xbf\xef\xbb\xbfdata: a\n\n", []),  # a second BOM is part of a field name
        (b"data: a\rdata: b\r\r", [SseEvent("", "message", "a\nb")]),  # CR alone ends lines
        (b"id: a\0b\ndata: x\n\n", [SseEvent("", "message", "x")]),  # NUL: the id is ignored
        (b"data: a\0b\n\n", [SseEvent("", "message", "a\0b")]),  # NUL is fine in data
        (b"event: e\nid: 7\n\ndata: x\n\n", [SseEvent("7", "message", "x")]),  # no data, no event
        (b"data: \xff\n\n", [SseEvent("", "message", "\ufffd")]),  # invalid UTF-8 replaced
        (b"Data: x\n\n", []),  # field names are case-sensitive
    ],
)
def test_parser_edges(stream: bytes, expected: list[SseEvent]) -> None:
    assert parse(stream)[0] == expected


@pytest.mark.parametrize(
    ("line", "retry"),
    [(b"retry: 100", 100), (b"retry:7", 7), (b"retry: 1.5", None), (b"retry: -1", None),
     (b"retry: \xd9\xa1", None), (b"retry:", None), (b"retry:  5", None)],
)  # fmt: skip
def test_retry_takes_ascii_digits_only(line: bytes, retry: int | None) -> None:
    assert parse(line + b"\n\n")[1] == retry


def test_a_crlf_split_between_reads_is_one_line_end() -> None:
    parser = SseParser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n\r") == [SseEvent("", "message", "a")]
    assert parser.feed(b"\ndata: b\n\n") == [SseEvent("", "message", "b")]


# --- HTTP/1.1 chunks ------------------------------------------------------------------------------


@given(st.binary(max_size=5000))
def test_chunk_framing(data: bytes) -> None:
    framed = chunk(data)
    assert framed.startswith(b"%x\r\n" % len(data))
    assert unchunk(framed) == data


def test_chunked_sse_is_the_sse_frame_as_one_chunk() -> None:
    """HTTP/1.1's shared framing is cached beside the plain rendering, framed once."""
    item = Item("1-1", "price", b'{"p":1}\r\n{"q":2}')
    sse = item.render(Format.SSE)
    chunked = slot(Format.SSE, CHUNKED)
    assert chunked != Format.SSE
    assert item.render(chunked) == b"%x\r\n%s\r\n" % (len(sse), sse)
    assert item.render(chunked) is item.render(chunked)
    assert unchunk(HEARTBEAT.render(chunked)) == b":\n\n"
    ws = slot(Format.WS_ENVELOPE, CHUNKED)
    assert unchunk(item.render(ws)) == item.render(Format.WS_ENVELOPE)


# --- WebSocket ------------------------------------------------------------------------------------

sizes = st.sampled_from([0, 1, 125, 126, 127, 65535, 65536, 70000])


@given(st.one_of(st.binary(max_size=300), sizes.map(lambda n: b"x" * n), texts.map(str.encode)))
def test_raw_frames_parse_back_with_wsproto(body: bytes) -> None:
    [message] = ws_messages(Item("3-4", "price", body).render(Format.WS_RAW))
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        assert isinstance(message, BytesMessage) and message.data == body
    else:
        assert isinstance(message, TextMessage) and message.data == text


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=12,
)


@given(json_values, st.sampled_from(["price", "patch", "ünï"]))
def test_envelope_frames_carry_parsed_json(value: object, event: str) -> None:
    body = json.dumps(value, ensure_ascii=False).encode()
    [message] = ws_messages(Item("9-1", event, body).render(Format.WS_ENVELOPE))
    assert isinstance(message, TextMessage)
    envelope = json.loads(message.data)
    assert envelope == {"id": "9-1", "event": event, "data": value}


@given(st.binary(max_size=200) | texts.map(str.encode))
def test_envelope_of_a_non_json_body_is_a_string(body: bytes) -> None:
    [message] = ws_messages(Item("9-1", "e", body).render(Format.WS_ENVELOPE))
    envelope = json.loads(message.data)
    try:  # strict: UTF-8 only (RFC 8259 §8.1), and no NaN / Infinity
        expected = json.loads(body.decode("utf-8"), parse_constant=_not_json)
    except ValueError:
        expected = body.decode("utf-8", "replace")
    assert envelope["data"] == expected


def _not_json(name: str) -> None:
    raise ValueError(name)


def test_envelope_keeps_json_bytes_exactly_and_refuses_nan() -> None:
    body = b'{"price": 1.10, "big": 12345678901234567890123, "e": 1E3}'
    assert ws_envelope("1-1", "p", body) == b'{"id":"1-1","event":"p","data":' + body + b"}"
    # NaN is not JSON: it travels as a string, so every client can parse the envelope
    assert json.loads(ws_envelope("1-1", "p", b"NaN"))["data"] == "NaN"
    assert json.loads(ws_envelope("1-1", "p", b"\xef\xbb\xbf{}"))["data"] == "\ufeff{}"


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_frame_headers_use_the_shortest_length(size: int) -> None:
    frame = ws_frame(0x2, b"\0" * size)
    header = len(frame) - size
    assert header == (2 if size < 126 else 4 if size < 65536 else 10)
    assert frame[0] == 0x82 and not frame[1] & 0x80  # FIN + binary; server frames unmasked


def test_heartbeat_is_a_ping_frame() -> None:
    [ping] = ws_messages(HEARTBEAT.render(Format.WS_ENVELOPE))
    assert isinstance(ping, Ping)
    assert HEARTBEAT.render(Format.WS_RAW) is HEARTBEAT.render(Format.WS_ENVELOPE)


# --- rendering once ---------------------------------------------------------------------------


def test_an_item_renders_once_per_format_and_releases_when_superseded() -> None:
    item = Item("1-1", "patch", b"[]", state=b'{"a":1}')
    for fmt in Format:
        assert item.render(fmt) is item.render(fmt)
    snapshot = item.as_snapshot("snapshot")
    assert (snapshot.id, snapshot.event, snapshot.data) == ("1-1", "snapshot", b'{"a":1}')
    assert item.as_snapshot("snapshot") is snapshot  # shared by every newcomer
    item.release()
    assert not any(item.rendered)
    assert not item.has_state
    with pytest.raises(ValueError):
        item.as_snapshot("snapshot")
    assert item.render(Format.SSE) == b"id: 1-1\nevent: patch\ndata: []\n\n"  # replays still work
    plain = Item("2-1", "price", b"x")
    plain.release()
    assert plain.state == b"x"  # a snapshot item's state is its data: nothing to drop
