"""A WHATWG-conformant `text/event-stream` parser (HTML §9.2.6), for checking what bridge sends.

Feed it bytes in any pieces; it yields complete events exactly as a browser's EventSource
would dispatch them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_BREAK = re.compile("\r\n|\r|\n")


@dataclass
class SseEvent:
    id: str | None
    event: str
    data: str


@dataclass
class EventStreamParser:
    last_id: str | None = None
    retry: int | None = None
    comments: int = 0
    _buffer: str = ""
    _data: list[str] = field(default_factory=list)
    _event: str = ""
    _bom_checked: bool = False
    _decoder: object = None

    def feed(self, chunk: bytes | str) -> list[SseEvent]:
        if isinstance(chunk, bytes):
            import codecs

            if self._decoder is None:
                self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
            chunk = self._decoder.decode(chunk)  # type: ignore[attr-defined]
        text = self._buffer + chunk
        if not self._bom_checked and text:
            self._bom_checked = True
            text = text.removeprefix("\ufeff")
        # A CR at the very end may be the first half of a CRLF split across chunks: hold it.
        held = text.endswith("\r")
        body = text[:-1] if held else text
        cut = max(body.rfind("\n"), body.rfind("\r"))
        if cut < 0:
            self._buffer = text
            return []
        self._buffer = body[cut + 1 :] + ("\r" if held else "")
        events: list[SseEvent] = []
        for line in _BREAK.split(body[: cut + 1])[:-1]:
            self._line(line, events)
        return events

    def _line(self, line: str, events: list[SseEvent]) -> None:
        if line == "":
            if self._data:
                events.append(
                    SseEvent(self.last_id, self._event or "message", "\n".join(self._data))
                )
            self._data = []
            self._event = ""
            return
        if line.startswith(":"):
            self.comments += 1
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_id = value
        elif name == "retry":
            if value.isdigit():
                self.retry = int(value)
