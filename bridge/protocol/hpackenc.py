"""A lean HPACK encoder (RFC 7541) for the header blocks bridge sends over HTTP/2.

h2's own encoder (the `hpack` package) searches and maintains a dynamic table and Huffman-codes
every string, in pure Python: about a third of what an HTTP/2 response costs bridge. An encoder
is free to use neither (RFC 7541 §2.3.2, §5.2), and this one does not:

- a field whose name and value are in the static table is one index byte (`:status: 200`);
- any other field is a literal *without indexing*, its name by static index when there is
  one, its value as raw octets; credentials and cookies are literals *never indexed*
  (§6.2.3), so no intermediary puts them in a compression context either;
- the first block of a connection sets the dynamic table size to 0 (§6.3), so that no later
  SETTINGS_HEADER_TABLE_SIZE from the peer can find our table too large.

Blocks come out somewhat larger than with Huffman coding (response heads are a few hundred
bytes), and each costs a few dictionary look-ups. The decoder side stays h2's (`hpack`):
what a client sends is parsed and checked by the library, not here.
"""

from __future__ import annotations

from collections.abc import Iterable

from hpack.table import HeaderTable

# Fields whose value must never enter any compression context (RFC 7541 §7.1.3).
_SENSITIVE = frozenset({b"authorization", b"proxy-authorization", b"cookie", b"set-cookie"})

_FULL: dict[tuple[bytes, bytes], int] = {}
_NAME: dict[bytes, int] = {}
for _index, (_name, _value) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _FULL.setdefault((_name, _value), _index)
    _NAME.setdefault(_name, _index)

_TABLE_SIZE_ZERO = b"\x20"  # dynamic table size update (001xxxxx) to 0


def _integer(value: int, prefix_bits: int, first: int) -> bytes:
    """RFC 7541 §5.1: `value` in an N-bit prefix, `first` holding the byte's other bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((first | value,))
    out = bytearray((first | limit,))
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _string(data: bytes) -> bytes:
    """A string literal, raw (H = 0): length in a 7-bit prefix, then the octets."""
    size = len(data)
    if size < 127:
        return bytes((size,)) + data
    return _integer(size, 7, 0) + data


class LeanEncoder:
    """Drop-in for `hpack.Encoder` where h2 uses it: `encode()` and `header_table_size`."""

    __slots__ = ("_announced", "header_table_size")

    def __init__(self) -> None:
        self._announced = False
        # h2 writes the peer's SETTINGS_HEADER_TABLE_SIZE here; our table stays at 0, which
        # every value allows.
        self.header_table_size = 0

    def encode(self, headers: Iterable[tuple[bytes, bytes]], huffman: bool = True) -> bytes:
        out: list[bytes] = []
        if not self._announced:
            self._announced = True
            out.append(_TABLE_SIZE_ZERO)
        full = _FULL
        names = _NAME
        for name, value in headers:
            index = full.get((name, value))
            if index is not None:
                out.append(bytes((0x80 | index,)) if index < 127 else _integer(index, 7, 0x80))
                continue
            # 0000xxxx: literal without indexing; 0001xxxx: never indexed (§6.2.2, §6.2.3).
            first = 0x10 if name in _SENSITIVE else 0x00
            index = names.get(name)
            if index is None:
                out.append(bytes((first,)) + _string(name) + _string(value))
            elif index < 15:
                out.append(bytes((first | index,)) + _string(value))
            else:
                out.append(_integer(index, 4, first) + _string(value))
        return b"".join(out)
