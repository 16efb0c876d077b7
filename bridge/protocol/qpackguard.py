"""What a QPACK header block will cost before it is decoded (RFC 9204), so a bomb is refused
unexpanded.

A field line that references the dynamic table is one byte on the wire and up to the table's
capacity once decoded: a 20 KB HEADERS frame naming a 4,000-byte entry 20,000 times decodes
to 80 MB, all of it validated in Python by aioquic before bridge's header limit could apply.
`QpackBudget` mirrors the client's encoder stream, keeping an upper bound on the size of every
dynamic-table entry (no Huffman decoding: a Huffman string decodes to at most 8/5 of its
length, RFC 7541 Appendix B's shortest code being 5 bits), and `estimate()` walks a header
block's field lines adding up what they will decode to, RFC 9114 §4.2.2's way (name, value,
32 per field). It stops as soon as the sum passes the limit, and every field line counts at
least 32, so the walk is bounded by `limit / 32` steps whatever the block.

Entry sizes are kept for the last `capacity // 32` inserts: no table can hold more entries
(each costs at least 32), so every entry the decoder still has is known here. A reference to
anything else is invalid, and the real decoder refuses it; here it counts as `capacity`.

`GuardedDecoder` wraps pylsqpack's `Decoder` with the budget: the same three calls, and
`feed_header` / `resume_header` refuse (`HeaderSectionTooLarge`) before decoding a block
whose estimate is over the limit, after cancelling the stream's block in the real decoder
(its QPACK state stays consistent: RFC 9204 §4.4.2).
"""

from __future__ import annotations

from collections import deque

import pylsqpack

ENTRY_OVERHEAD = 32  # RFC 9204 §3.2.1 / RFC 9114 §4.2.2


def _static_table() -> tuple[tuple[int, int], ...]:
    """(name length, value length) of the 99 static entries (RFC 9204 Appendix A), read from
    pylsqpack itself: one header block of 99 static indexed field lines."""
    block = bytearray(b"\x00\x00")  # Required Insert Count 0, Base 0
    for index in range(99):
        if index < 63:
            block.append(0xC0 | index)
        else:
            block += bytes([0xFF, index - 63])
    _, fields = pylsqpack.Decoder(0, 0).feed_header(0, bytes(block))
    return tuple((len(name), len(value)) for name, value in fields)


STATIC = _static_table()


class HeaderSectionTooLarge(Exception):
    """The block would decode to more than the limit; it was not decoded."""


class _Incomplete(Exception):
    """The encoder stream instruction is not all there yet."""


def _integer(data: bytes, pos: int, prefix: int) -> tuple[int, int]:
    """RFC 7541 §5.1 prefix integer at `pos` with a `prefix`-bit prefix: (value, next pos)."""
    if pos >= len(data):
        raise _Incomplete
    mask = (1 << prefix) - 1
    value = data[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    for _ in range(10):  # 62-bit values at most (RFC 9000 §16 sized)
        if pos >= len(data):
            raise _Incomplete
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos
    raise ValueError("QPACK integer too long")


def _string_bound(data: bytes, pos: int, prefix: int) -> tuple[int, int]:
    """A string literal whose H bit sits just above a `prefix`-bit length: (upper bound on
    its decoded length, position after it). The string's bytes are skipped, not read."""
    if pos >= len(data):
        raise _Incomplete
    huffman = data[pos] & (1 << prefix)
    length, pos = _integer(data, pos, prefix)
    end = pos + length
    if end > len(data):
        raise _Incomplete
    return (length * 8 // 5 + 1 if huffman else length), end


class QpackBudget:
    """Upper bounds on the client's dynamic-table entries, from its encoder stream."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity  # the most we allowed (SETTINGS_QPACK_MAX_TABLE_CAPACITY)
        self.max_entries = capacity // ENTRY_OVERHEAD
        # (name, value) length bounds of the newest inserts; index i is insert number
        # `inserts - len(entries) + i`.
        self.entries: deque[tuple[int, int]] = deque(maxlen=max(1, self.max_entries))
        self.inserts = 0
        self._pending = b""

    # --- the encoder stream (RFC 9204 §4.3) ---------------------------------------------------

    def feed_encoder(self, data: bytes) -> None:
        buffer = self._pending + data if self._pending else data
        pos = 0
        for _ in range(len(buffer) + 1):  # every instruction takes at least one byte
            if pos >= len(buffer):
                break
            try:
                pos = self._instruction(buffer, pos)
            except _Incomplete:
                break
        rest = buffer[pos:]
        # An instruction longer than the table could hold is an error the real decoder
        # reports; keep no more than that of it.
        self._pending = rest[: self.capacity + 32]

    def _instruction(self, data: bytes, pos: int) -> int:
        first = data[pos]
        if first & 0x80:  # Insert with Name Reference: 1 T index(6), value
            index, at = _integer(data, pos, 6)
            name = STATIC[index][0] if first & 0x40 and index < len(STATIC) else None
            if not first & 0x40:
                name = self._entry(self.inserts - 1 - index)[0]
            value, at = _string_bound(data, at, 7)
            self._insert(self.capacity if name is None else name, value)
        elif first & 0x40:  # Insert with Literal Name: 01 H length(5) name, value
            name, at = _string_bound(data, pos, 5)
            value, at = _string_bound(data, at, 7)
            self._insert(name, value)
        elif first & 0x20:  # Set Dynamic Table Capacity: 001 capacity(5)
            _, at = _integer(data, pos, 5)
        else:  # Duplicate: 000 index(5)
            index, at = _integer(data, pos, 5)
            self._insert(*self._entry(self.inserts - 1 - index))
        return at

    def _insert(self, name: int, value: int) -> None:
        self.entries.append((min(name, self.capacity), min(value, self.capacity)))
        self.inserts += 1

    def _entry(self, absolute: int) -> tuple[int, int]:
        first = self.inserts - len(self.entries)
        if first <= absolute < self.inserts:
            return self.entries[absolute - first]
        return (self.capacity, 0)  # not in any table: invalid, counted as the most it could be

    def _entry_size(self, absolute: int) -> int:
        name, value = self._entry(absolute)
        return min(name + value, self.capacity)

    # --- header blocks (RFC 9204 §4.5) --------------------------------------------------------

    def required_inserts(self, block: bytes) -> int:
        """The Required Insert Count of a block (§4.5.1.1)."""
        encoded, _ = _integer(block, 0, 8)
        if encoded == 0:
            return 0
        full_range = 2 * max(1, self.max_entries)
        max_value = self.inserts + self.max_entries
        required = (max_value // full_range) * full_range + encoded - 1
        if required > max_value:
            required -= full_range
        return required

    def estimate(self, block: bytes, limit: int) -> int:
        """What the block decodes to, RFC 9114 §4.2.2's way, or a number above `limit` as
        soon as it is sure to pass it. A block this cannot parse (truncated, an integer
        past 62 bits) is malformed: it counts as over the limit, so nothing unmeasured is
        ever expanded."""
        try:
            return self._estimate(block, limit)
        except (_Incomplete, ValueError):
            return limit + 1

    def _estimate(self, block: bytes, limit: int) -> int:
        required = self.required_inserts(block)
        _, pos = _integer(block, 0, 8)
        if pos >= len(block):
            raise _Incomplete
        negative = block[pos] & 0x80
        delta, pos = _integer(block, pos, 7)
        base = required - delta - 1 if negative else required + delta
        total = 0
        end = len(block)
        while pos < end and total <= limit:
            first = block[pos]
            if first & 0x80:  # Indexed Field Line: 1 T index(6)
                index, pos = _integer(block, pos, 6)
                total += self._static(index) if first & 0x40 else self._entry_size(base - 1 - index)
            elif first & 0x40:  # Literal with Name Reference: 01 N T index(4), value
                index, pos = _integer(block, pos, 4)
                if first & 0x10:
                    name = STATIC[index][0] if index < len(STATIC) else self.capacity
                else:
                    name = self._entry(base - 1 - index)[0]
                value, pos = _string_bound(block, pos, 7)
                total += name + value
            elif first & 0x20:  # Literal with Literal Name: 001 N H length(3), value
                name, pos = _string_bound(block, pos, 3)
                value, pos = _string_bound(block, pos, 7)
                total += name + value
            elif first & 0x10:  # Indexed Field Line with Post-Base Index: 0001 index(4)
                index, pos = _integer(block, pos, 4)
                total += self._entry_size(base + index)
            else:  # Literal with Post-Base Name Reference: 0000 N index(3), value
                index, pos = _integer(block, pos, 3)
                value, pos = _string_bound(block, pos, 7)
                total += self._entry(base + index)[0] + value
            total += ENTRY_OVERHEAD
        return total

    def _static(self, index: int) -> int:
        if index < len(STATIC):
            name, value = STATIC[index]
            return name + value
        return self.capacity


class GuardedDecoder:
    """pylsqpack's `Decoder` that refuses a header block over `limit` before decoding it."""

    def __init__(self, capacity: int, blocked_streams: int, *, limit: int) -> None:
        self._decoder = pylsqpack.Decoder(capacity, blocked_streams)
        self.budget = QpackBudget(capacity)
        self.limit = limit
        # Blocks waiting for inserts (at most `blocked_streams`): the estimate needs them
        # when they are resumed.
        self._blocked: dict[int, bytes] = {}

    def feed_encoder(self, data: bytes) -> list[int]:
        unblocked: list[int] = self._decoder.feed_encoder(data)
        self.budget.feed_encoder(data)
        return unblocked

    def feed_header(self, stream_id: int, data: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        budget = self.budget
        if len(data) > self.limit:
            raise HeaderSectionTooLarge
        try:
            waiting = budget.required_inserts(data) > budget.inserts
        except (_Incomplete, ValueError):
            waiting = False  # malformed: the estimate refuses it
        if not waiting and budget.estimate(data, self.limit) > self.limit:
            raise HeaderSectionTooLarge
        try:
            return self._decoder.feed_header(stream_id, data)  # type: ignore[no-any-return]
        except pylsqpack.StreamBlocked:
            self._blocked[stream_id] = data
            raise

    def resume_header(self, stream_id: int) -> tuple[bytes, list[tuple[bytes, bytes]]]:
        data = self._blocked.pop(stream_id, b"")
        if self.budget.estimate(data, self.limit) > self.limit:
            raise HeaderSectionTooLarge
        return self._decoder.resume_header(stream_id)  # type: ignore[no-any-return]

    def cancel_stream(self, stream_id: int) -> bytes:
        self._blocked.pop(stream_id, None)
        return self._decoder.cancel_stream(stream_id)  # type: ignore[no-any-return]
