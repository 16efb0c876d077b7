"""An `Item`: one published change of a stream, rendered at most once per wire format.

Pushpin's lesson (publishitem.h): publish one item, render it per transport, and hand the
same bytes to every subscriber of that transport. `rendered[slot]` holds those bytes (None
until the first subscriber of that slot needs them); `Subscription.offer` reads the list
directly, so the common case is one index and one `write`. A slot is a `Format` and a shared
`Framing` (bridge/framing.py) together: the framing is the protocol's, opaque here, so an
HTTP/1.1 chunk is framed once per event and not once per subscriber.

Ids: `"<epoch>-<seq>"`, both zero-padded decimal — the epoch is the channel's start time in
wall-clock milliseconds (13 digits until the year 2286), the sequence number 6 digits. Ids
only grow, also across a channel restart or a process restart (a later start is a later
epoch), and because the widths are fixed, string order is numeric order. Clients must treat
them as opaque (docs/configuration.md); the format is ours to change.
"""

from __future__ import annotations

import enum
import hashlib

from ..framing import FRAMINGS, MAX_FRAMINGS, UNFRAMED, Framing
from .render import (
    SSE_HEARTBEAT,
    WS_BINARY,
    WS_HEARTBEAT,
    WS_TEXT,
    is_utf8,
    sse_frame,
    ws_envelope,
    ws_frame,
)


class Format(enum.IntEnum):
    """What a subscriber reads; with a `Framing`, it picks the slot of `Item.rendered`."""

    SSE = 0  # the text/event-stream bytes
    WS_ENVELOPE = 1  # one text frame: {"id", "event", "data"}
    WS_RAW = 2  # one frame with the body alone: text if valid UTF-8, else binary


_FORMATS = len(Format)
_SLOTS = _FORMATS * MAX_FRAMINGS


def slot(fmt: Format, framing: Framing = UNFRAMED) -> int:
    """The index into `Item.rendered` for `fmt` wrapped in `framing`."""
    return int(fmt) + _FORMATS * framing.index


def slot_format(index: int) -> Format:
    return Format(index % _FORMATS)


class Item:
    __slots__ = (
        "_etag",
        "_snapshot",
        "_state",
        "content_type",
        "data",
        "event",
        "id",
        "rendered",
    )

    def __init__(
        self,
        item_id: str,
        event: str,
        data: bytes,
        *,
        state: bytes | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.id = item_id  # "" only for the heartbeat, which is not an event
        self.event = event
        self.data = data  # the event's payload: the body, or a patch for patch/merge events
        # The whole upstream body after this change (the same object as `data` for snapshot
        # events). A patch/merge item drops it once superseded (`release`): only the channel's
        # latest item needs it, and history must not hold `history` full copies.
        self._state: bytes | None = data if state is None else state
        self.content_type = content_type
        self.rendered: list[bytes | None] = [None] * _SLOTS
        self._snapshot: Item | None = None
        self._etag: bytes | None = None

    @property
    def etag(self) -> bytes:
        """A strong validator of the whole state (RFC 9110 §8.8.3) for plain GETs, computed on
        first use. A digest of the body rather than the id: the same state keeps its ETag
        across a channel restart (a legacy client polling less often than the linger still
        gets its 304s) and on every bridge process behind one load balancer."""
        etag = self._etag
        if etag is None:
            digest = hashlib.sha256(self.state).hexdigest()[:32]
            etag = self._etag = b'"' + digest.encode("ascii") + b'"'
        return etag

    @property
    def state(self) -> bytes:
        """The whole body after this change; only for the channel's latest item (see `release`)."""
        state = self._state
        if state is None:
            raise ValueError(f"item {self.id} was superseded; its state is gone")
        return state

    @property
    def has_state(self) -> bool:
        return self._state is not None

    def render(self, index: int) -> bytes:
        """The bytes for slot `index` (see `slot`), rendered on first use and cached."""
        rendered = self.rendered[index]
        if rendered is None:
            fmt = index % _FORMATS
            if fmt == index:
                rendered = self._render(fmt)
            else:  # framed: the unframed rendering first, itself cached for other framings
                rendered = FRAMINGS[index // _FORMATS].frame(self.render(fmt))
            self.rendered[index] = rendered
        return rendered

    def _render(self, fmt: int) -> bytes:
        if fmt == Format.SSE:
            return sse_frame(self.id or None, self.event, self.data)
        if fmt == Format.WS_ENVELOPE:
            return ws_frame(WS_TEXT, ws_envelope(self.id, self.event, self.data))
        return ws_frame(WS_TEXT if is_utf8(self.data) else WS_BINARY, self.data)

    def as_snapshot(self, event: str) -> Item:
        """This state as a full-body event named `event`, for newcomers, resets and drained
        laggers. Cached, so a crowd of newcomers shares one rendering."""
        if self.event == event and self.data is self._state:
            return self
        snap = self._snapshot
        if snap is None or snap.event != event:
            snap = Item(self.id, event, self.state, content_type=self.content_type)
            self._snapshot = snap
        return snap

    def release(self) -> None:
        """Superseded by a newer item: keep only what a history replay needs (id, event, data).

        The renderings go too (a replay renders again, once): with 1 MB bodies and history 100,
        three cached formats would otherwise triple the memory history holds.
        """
        if self._state is not self.data:
            self._state = None
        self._snapshot = None
        self.rendered = [None] * _SLOTS

    def __repr__(self) -> str:
        return f"Item({self.id!r}, {self.event!r}, {len(self.data)} bytes)"


class Heartbeat(Item):
    """Keeps idle connections (and the proxies between) from timing out; never stored, no id."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__("", "", b"")
        # Rendered up front; framed renderings are cached on first use like any item's (a
        # framing may register after this module is imported).
        self.rendered[Format.SSE] = SSE_HEARTBEAT
        self.rendered[Format.WS_ENVELOPE] = self.rendered[Format.WS_RAW] = WS_HEARTBEAT

    def release(self) -> None:
        """Shared by every channel and always rendered: nothing to free."""


HEARTBEAT = Heartbeat()
