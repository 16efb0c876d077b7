"""bridge's HPACK encoder against the `hpack` package's decoder (the one h2 clients use)."""

from __future__ import annotations

import hpack
from hpack.struct import NeverIndexedHeaderTuple
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.protocol.hpackenc import LeanEncoder

token = st.binary(min_size=1, max_size=40).map(
    lambda b: bytes(c for c in b.lower() if 0x61 <= c <= 0x7A) or b"x"
)
field = st.tuples(
    st.one_of(
        token,
        st.sampled_from([b":status", b"content-type", b"set-cookie", b"www-authenticate", b"via"]),
    ),
    st.binary(max_size=300),
)


def roundtrip(blocks: list[list[tuple[bytes, bytes]]], *, peer_table: int = 4096) -> list:
    encoder = LeanEncoder()
    decoder = hpack.Decoder()
    decoder.max_allowed_table_size = peer_table  # the peer's SETTINGS_HEADER_TABLE_SIZE
    return [decoder.decode(encoder.encode(block), raw=True) for block in blocks]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(field, max_size=20), min_size=1, max_size=4))
def test_any_header_blocks_decode_to_what_was_sent(blocks: list) -> None:
    decoded = roundtrip(blocks)
    assert [[tuple(f) for f in block] for block in decoded] == blocks


def test_static_fields_are_one_byte_and_names_are_indexed() -> None:
    encoder = LeanEncoder()
    encoder.encode([])  # the first block carries the table size update
    assert encoder.encode([(b":status", b"200")]) == b"\x88"  # static index 8
    # content-type is static index 31: a 4-bit prefix overflows into a second byte.
    assert encoder.encode([(b"content-type", b"a/b")]) == b"\x0f\x10\x03a/b"
    long = b"v" * 200
    assert hpack.Decoder().decode(b"\x20" + encoder.encode([(b"x-long", long)]), raw=True) == [
        (b"x-long", long)
    ]


def test_the_dynamic_table_is_set_to_zero_once_and_never_used() -> None:
    encoder = LeanEncoder()
    first = encoder.encode([(b"x-a", b"1")])
    assert first.startswith(b"\x20")
    assert not encoder.encode([(b"x-a", b"1")]).startswith(b"\x20")
    # A peer that allows no dynamic table at all decodes every block.
    blocks = [[(b"x-a", b"1"), (b"date", b"today")]] * 3
    assert [[tuple(f) for f in b] for b in roundtrip(blocks, peer_table=0)] == blocks
    encoder.header_table_size = 0  # what h2 does on SETTINGS_HEADER_TABLE_SIZE: harmless


def test_credentials_are_never_indexed() -> None:
    encoder = LeanEncoder()
    decoded = hpack.Decoder().decode(
        encoder.encode([(b"set-cookie", b"id=1"), (b"authorization", b"x"), (b"x-a", b"1")]),
        raw=True,
    )
    assert [isinstance(f, NeverIndexedHeaderTuple) for f in decoded] == [True, True, False]
