"""The never-blocking QPACK field sections of PUSH_PROMISE frames, decoded by pylsqpack (the
library aioquic and qh3 decode with)."""

from __future__ import annotations

import pylsqpack
from hypothesis import given
from hypothesis import strategies as st

from bridge.protocol.qpackliteral import encode_literal

_names = st.binary(min_size=1, max_size=300).map(lambda b: bytes(c % 26 + 97 for c in b))
_values = st.binary(max_size=3000).filter(lambda v: b"\x00" not in v and b"\r" not in v)


def _decode(section: bytes) -> list[tuple[bytes, bytes]]:
    decoder = pylsqpack.Decoder(4096, 16)
    _, headers = decoder.feed_header(0, section)
    return list(headers)


def test_a_push_promise_section_decodes_without_the_encoder_stream() -> None:
    headers = [
        (b":method", b"GET"),
        (b":scheme", b"https"),
        (b":authority", b"localhost:8443"),
        (b":path", b"/static/app.css"),
        (b"accept-encoding", b"gzip"),
    ]
    section = encode_literal(headers)
    assert section[:2] == b"\x00\x00"  # Required Insert Count 0: nothing to wait for
    assert _decode(section) == headers


@given(st.lists(st.tuples(_names, _values), min_size=1, max_size=8))
def test_any_fields_round_trip(headers: list[tuple[bytes, bytes]]) -> None:
    assert _decode(encode_literal(headers)) == headers
