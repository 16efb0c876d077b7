"""Fuzzing the nghttp2 engine through `Http2Protocol`: random and mutated frame sequences.

Each example is a client's byte stream: the preface, then frames of every type with random
stream ids, flags and payloads (a GET head among them, so streams open and are answered),
then mutated (bytes flipped, cut, spliced), fed in random pieces. Whatever arrives, nothing
may escape the adapter (libnghttp2's errors included), a closed connection says why, and what
the adapter holds stays bounded: streams by the advertised limit, queued body bytes by what
handlers were allowed to send, bytes to write by a frame budget. Seeded (derandomize) and
bounded, so a failure reproduces and the suite's time stays in check.
"""

from __future__ import annotations

import resource

import hpack
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from bridge.events import Body, ConnectionClosed, EndBody, Request, Response
from bridge.protocol.http2 import PREFACE, Http2Protocol
from bridge.protocol.ngh2shim import NghttpEngine

LIMIT = 8  # max_concurrent_streams: small, so the limit is reached
BODY = b"x" * 3000
GET = hpack.Encoder().encode(
    [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")]
)
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"


def frame(kind: int, flags: int, sid: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + sid.to_bytes(4, "big") + payload


stream_ids = st.sampled_from([0, 1, 2, 3, 5, 7, 9, 11, 13, 2**31 - 1]) | st.integers(0, 2**31 - 1)
frames = st.one_of(
    # HEADERS opening a GET (END_HEADERS, sometimes END_STREAM), or with a random block.
    st.builds(lambda s, f: frame(0x1, 0x4 | f, s, GET), stream_ids, st.sampled_from([0, 1])),
    st.builds(lambda s, f, p: frame(0x1, f, s, p), stream_ids, st.integers(0, 255), st.binary()),
    st.builds(lambda s, f, p: frame(0x0, f, s, p), stream_ids, st.integers(0, 255), st.binary()),
    st.builds(lambda s, p: frame(0x9, 0x0, s, p), stream_ids, st.binary(max_size=8)),
    st.builds(lambda p: frame(0x4, 0x0, 0, p), st.binary(max_size=24)),
    st.just(SETTINGS_ACK),
    st.builds(lambda p: frame(0x6, 0x0, 0, p), st.binary(min_size=8, max_size=8)),
    st.builds(lambda s, n: frame(0x8, 0, s, n.to_bytes(4, "big")), stream_ids, st.integers(0, 2**32 - 1)),
    st.builds(lambda s, c: frame(0x3, 0, s, c.to_bytes(4, "big")), stream_ids, st.integers(0, 15)),
    st.builds(lambda s, p: frame(0x2, 0, s, p), stream_ids, st.binary(min_size=5, max_size=5)),
    st.builds(lambda p: frame(0x7, 0, 0, p), st.binary(min_size=8, max_size=16)),
    st.builds(lambda k, f, s, p: frame(k, f, s, p), st.integers(0, 255), st.integers(0, 255), stream_ids, st.binary(max_size=16)),
)  # fmt: skip


@st.composite
def streams(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """A client's byte stream (preface, SETTINGS and its ACK, frames; then mutations anywhere,
    the preface included) and the sizes of the pieces it arrives in."""
    head = PREFACE + frame(0x4, 0, 0, b"") + SETTINGS_ACK
    data = bytearray(head + b"".join(draw(st.lists(frames, max_size=24))))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        match draw(st.sampled_from(["flip", "cut", "splice", "drop"])):
            case "flip":
                data[at] ^= 1 << draw(st.integers(0, 7))
            case "cut":
                del data[at:]
            case "splice":
                data[at:at] = draw(st.binary(min_size=1, max_size=16))
            case "drop":
                del data[at : at + draw(st.integers(1, 9))]
    pieces = draw(st.lists(st.integers(1, 64), min_size=1, max_size=16))
    return bytes(data), pieces


def run_connection(data: bytes, pieces: list[int]) -> None:
    server = Http2Protocol(scheme="https", max_concurrent_streams=LIMIT, engine=NghttpEngine)
    stream = data
    events: list[object] = []
    at = 0
    step = 0
    while at < len(stream):  # bounded: `at` grows by at least one each time
        piece = stream[at : at + pieces[step % len(pieces)]]
        at += len(piece)
        step += 1
        got = server.receive_data(piece)  # must not raise, whatever the bytes
        events += got
        for event in got:
            if isinstance(event, Request) and not server.closed:
                # Answer: head, a body beyond one frame, end; within what the window allows.
                server.send(Response(event.stream_id, 200))
                server.send(Body(event.stream_id, BODY))
                server.send(EndBody(event.stream_id))
        out = server.data_to_send()
        # Bounded: what one read can make us write (answers to the frames it held, and the
        # responses above within the initial window).
        assert len(out) <= 2 * 65_535 + 64 * len(piece) + 4096
        assert server.stream_count <= LIMIT
        assert sum(server.pending(sid) for sid in range(1, 64)) <= LIMIT * len(BODY)
    if server.closed:
        assert any(isinstance(e, ConnectionClosed) for e in events)
    server.release()
    assert server.receive_data(b"\x00" * 9) == []


@hsettings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(streams())
def test_random_and_mutated_frames_never_escape_the_adapter(case: tuple[bytes, list[int]]) -> None:
    data, pieces = case
    run_connection(data, pieces)


def test_many_connections_of_garbage_do_not_grow_the_process() -> None:
    """libnghttp2's memory is freed with each connection: a few thousand connections of mixed
    frames leave the peak resident size where a few hundred left it."""
    import random

    rng = random.Random(21)
    kinds = [0x0, 0x1, 0x2, 0x3, 0x4, 0x6, 0x8, 0x9]

    def one() -> None:
        data = b"".join(
            frame(0x1, 0x5, 1 + 2 * i, GET)
            if rng.random() < 0.3
            else frame(rng.choice(kinds), rng.randrange(256), rng.randrange(16), rng.randbytes(rng.randrange(24)))
            for i in range(rng.randrange(1, 20))
        )  # fmt: skip
        run_connection(
            PREFACE + frame(0x4, 0, 0, b"") + SETTINGS_ACK + data, [rng.randrange(1, 200)]
        )

    for _ in range(300):
        one()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(3000):
        one()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert after - before < 20_000, f"peak RSS grew by {after - before} KB"
