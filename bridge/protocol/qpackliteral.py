"""A QPACK field section that can never block (RFC 9204): every field a literal with a literal
name, Required Insert Count 0, so the decoder needs nothing from the encoder stream.

Bridge sends its PUSH_PROMISE field sections this way. aioquic's encoder may refer to dynamic
table entries it has just inserted, which is legal (the peer's SETTINGS_QPACK_BLOCKED_STREAMS
allows blocked streams), but a decoder that resumes every blocked section as a HEADERS frame —
as qh3 (niquests' HTTP/3) does — then mistakes a blocked PUSH_PROMISE for the response head and
the request never completes. A promise is a few short fields, sent a handful of times per
page: the bytes the dynamic table would save are not worth a client that hangs.
"""

from __future__ import annotations

from collections.abc import Iterable

# Required Insert Count 0 (§4.5.1.1) and Delta Base 0 with sign 0 (§4.5.1.2).
_PREFIX = b"\x00\x00"


def _integer(value: int, prefix_bits: int, flags: int) -> bytes:
    """RFC 7541 §5.1 prefixed integer (QPACK §4.1.1), `flags` in the bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([flags | value])
    out = bytearray([flags | limit])
    value -= limit
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_literal(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The field section of `headers`, each a Literal Field Line with Literal Name (§4.5.6;
    N=0, no Huffman coding), names as given (lowercase, as HTTP/3 requires)."""
    out = [_PREFIX]
    for name, value in headers:
        out.append(_integer(len(name), 3, 0x20))
        out.append(name)
        out.append(_integer(len(value), 7, 0x00))
        out.append(value)
    return b"".join(out)
