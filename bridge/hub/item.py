"""An `Item`: one published change of a stream, rendered at most once per wire format.

Pushpin's lesson (publishitem.h): publish one item, render it per transport, and hand the
same bytes to every subscriber of that transport.
"""

from __future__ import annotations

import enum
import json

from .render import (
    SSE_HEARTBEAT,
    WS_BINARY,
    WS_HEARTBEAT,
    WS_TEXT,
    chunk,
    sse_frame,
    ws_frame,
)


class Format(enum.IntEnum):
    SSE = 0
    SSE_CHUNKED = 1  # the SSE frame as one HTTP/1.1 chunk
    WS_ENVELOPE = 2  # {"id", "event", "data"} text frame
    WS_RAW = 3  # the body alone: text frame if UTF-8, else binary


class Item:
    __slots__ = ("_rendered", "_snapshot", "content_type", "data", "event", "id", "state")

    def __init__(
        self,
        item_id: str | None,
        event: str,
        data: bytes,
        *,
        state: bytes | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.id = item_id
        self.event = event
        self.data = data
        # The whole upstream body after this change (== data for snapshot events).
        self.state = data if state is None else state
        self.content_type = content_type
        self._rendered: list[bytes | None] = [None, None, None, None]
        self._snapshot: Item | None = None

    def render(self, fmt: Format) -> bytes:
        rendered = self._rendered[fmt]
        if rendered is None:
            rendered = self._rendered[fmt] = self._render(fmt)
        return rendered

    def _render(self, fmt: Format) -> bytes:
        if fmt is Format.SSE:
            return sse_frame(self.id, self.event, self.data)
        if fmt is Format.SSE_CHUNKED:
            return chunk(self.render(Format.SSE))
        if fmt is Format.WS_ENVELOPE:
            try:
                data: object = json.loads(self.data)
            except ValueError:
                data = self.data.decode("utf-8", "replace")
            envelope = {"id": self.id, "event": self.event, "data": data}
            text = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False)
            return ws_frame(WS_TEXT, text.encode("utf-8"))
        try:
            self.data.decode("utf-8")
        except UnicodeDecodeError:
            return ws_frame(WS_BINARY, self.data)
        return ws_frame(WS_TEXT, self.data)

    def as_snapshot(self, event: str) -> Item:
        """This state as a full-body event (for newcomers and drained laggers of patch streams)."""
        if self.event == event and self.data is self.state:
            return self
        snap = self._snapshot
        if snap is None or snap.event != event:
            snap = self._snapshot = Item(self.id, event, self.state, content_type=self.content_type)
        return snap

    def renamed(self, event: str) -> Item:
        """The same state under another event name (`reset`), for one resuming subscriber."""
        return Item(self.id, event, self.state, content_type=self.content_type)

    def __repr__(self) -> str:
        return f"Item({self.id!r}, {self.event!r}, {len(self.data)} bytes)"


class Heartbeat(Item):
    """Keeps idle connections (and the proxies between) from timing out; never stored."""

    def __init__(self) -> None:
        super().__init__(None, "", b"")
        self._rendered = [SSE_HEARTBEAT, chunk(SSE_HEARTBEAT), WS_HEARTBEAT, WS_HEARTBEAT]


HEARTBEAT = Heartbeat()
