"""`qpackguard`: the estimate of a header block bounds what pylsqpack decodes it to, closely,
whatever mix of static, dynamic, Huffman and literal field lines a real encoder chooses."""

from __future__ import annotations

import random

import pylsqpack
import pytest

from bridge.protocol.qpackguard import STATIC, GuardedDecoder, HeaderSectionTooLarge


def rfc_size(fields: list[tuple[bytes, bytes]]) -> int:
    return sum(len(name) + len(value) + 32 for name, value in fields)


def test_static_table_is_rfc_9204s() -> None:
    assert len(STATIC) == 99
    assert STATIC[0] == (len(b":authority"), 0)
    assert STATIC[17] == (len(b":method"), len(b"GET"))


def test_estimate_bounds_real_encoders_blocks_closely() -> None:
    rng = random.Random(20)
    encoder = pylsqpack.Encoder()
    decoder = GuardedDecoder(4096, 16, limit=65536)
    decoder.feed_encoder(encoder.apply_settings(4096, 16))
    for n in range(200):
        cookie = bytes(rng.choice(b"abcdef0123") for _ in range(rng.choice([20, 300, 2000])))
        fields = [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", b"example.com"),
            (b":path", f"/prices/{n % 7}".encode()),
            (b"user-agent", b"Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0 Safari/537.36"),
            (b"accept", b"text/event-stream"),
            (b"cookie", b"session=" + cookie),
            (b"x-n", str(n).encode()),
        ]
        instructions, block = encoder.encode(n * 4, fields)
        decoder.feed_encoder(instructions)
        estimate = decoder.budget.estimate(block, 65536)
        _, decoded = decoder.feed_header(n * 4, block)
        assert decoded == fields
        assert rfc_size(fields) <= estimate <= 1.25 * rfc_size(fields)


def test_a_block_naming_a_big_entry_many_times_is_refused_undecoded() -> None:
    decoder = GuardedDecoder(4096, 16, limit=65536)
    # Set Dynamic Table Capacity 4096, then Insert with Literal Name "x": 4000 x "v".
    decoder.feed_encoder(b"\x3f\xe1\x1f" + b"\x41x" + b"\x7f\xa1\x1e" + b"v" * 4000)
    assert decoder.budget.inserts == 1
    with pytest.raises(HeaderSectionTooLarge):
        decoder.feed_header(0, b"\x02\x00" + b"\x80" * 17)  # 17 x 4033 > 64 KiB
    _, fields = decoder.feed_header(4, b"\x02\x00" + b"\x80" * 15)
    assert fields == [(b"x", b"v" * 4000)] * 15


def test_a_block_that_cannot_be_measured_is_refused() -> None:
    decoder = GuardedDecoder(4096, 16, limit=65536)
    with pytest.raises(HeaderSectionTooLarge):
        decoder.feed_header(0, b"\x00\x00\x5f")  # a literal whose length never comes
