"""Telling an HTTP/2 prior-knowledge client from an HTTP/1.1 one on the clear-text listener,
from the first bytes (`http2_preface_shape`), however they are cut into reads."""

from __future__ import annotations

import pytest

from bridge import settings
from bridge.protocol.http2 import PREFACE
from bridge.server.connection import http2_preface_shape

CASES = [
    (PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00", True),
    (b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", True),
    (b"INVALID CONNECTION PREFACE\r\n\r\n", True),  # h2spec 3.5 #2
    (b"GARBAGE\r\n\r\n", True),
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", False),
    (b"GET / HTTP/1.0\r\n\r\n", False),
    (b"GET / HTTP/1.2\r\nHost: a\r\n\r\n", False),  # 505 from the HTTP/1.1 adapter
    (b"GET / HTTP/3\r\nHost: a\r\n\r\n", False),
    (b"GARBAGE\r\nHost: a\r\n\r\n", False),  # a field after it: an HTTP/1.1 request, bad
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, False),  # TLS: 400
    (b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", False),  # a leading empty line (RFC 9112 §2.2)
]


@pytest.mark.parametrize(("first", "h2"), CASES)
def test_whole_and_cut_at_every_byte(first: bytes, h2: bool) -> None:
    assert http2_preface_shape(first) is h2
    for cut in range(1, len(first)):
        decided = http2_preface_shape(first[:cut])
        assert decided in (None, h2), (cut, first[:cut])


def test_an_undecided_line_is_held_only_up_to_the_bound() -> None:
    assert http2_preface_shape(b"GET /" + b"a" * 100) is None
    assert http2_preface_shape(b"GET /" + b"a" * settings.H2C_SNIFF_MAX) is False
    assert http2_preface_shape(b"GET /" + b"a" * 100 + b" HTTP/1.1") is False
