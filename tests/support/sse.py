"""A WHATWG-conformant `text/event-stream` parser, for checking what bridge sends.

It follows HTML Living Standard §9.2.6 "Interpreting an event stream" step by step, so a test
that passes here passes in a browser's EventSource:

- the stream is UTF-8 decoded (invalid bytes become U+FFFD) and ONE leading BOM is dropped;
- lines end with CRLF, LF or CR — also when a CRLF is split between two reads;
- a line starting with ":" is a comment; `name: value` drops one space after the colon; a line
  without a colon is a field with an empty value;
- `event` sets the type, `data` appends its value and LF, `id` sets the last event id unless
  the value contains NUL (and it persists across events), `retry` is honoured only when it is
  ASCII digits; unknown fields are ignored;
- an empty line dispatches: nothing if no `data` came, otherwise the data minus its final LF,
  the type (default `message`) and the last event id; a block the stream ends inside is
  discarded.

Feed bytes in any pieces with `SseParser.feed`; `parse(whole)` for a complete stream.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_LINE_END = re.compile("\r\n|\r|\n")


@dataclass(frozen=True)
class SseEvent:
    id: str  # the last event id at dispatch ("" if none was ever set)
    event: str  # the type: `message` unless an `event:` field said otherwise
    data: str


class SseParser:
    def __init__(self) -> None:
        # "utf-8-sig" drops exactly one leading BOM, even one split across reads.
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")("replace")
        self._pending = ""  # an incomplete line
        self._skip_lf = False  # the previous read ended in CR: a leading LF belongs to it
        self._data: list[str] = []
        self._event = ""
        self._data_seen = False
        self.last_event_id = ""
        self.retry: int | None = None  # the reconnection time in ms, if the stream set one
        self.comments: list[str] = []

    def feed(self, chunk: bytes) -> list[SseEvent]:
        """Consume bytes; return the events they complete, in order."""
        return self._text(self._decoder.decode(chunk))

    def close(self) -> list[SseEvent]:
        """End of stream: flush the decoder. A partial line still ends nothing and a block
        without its blank line is discarded (§9.2.6), so this returns [] unless the decoder
        held the tail of a complete line."""
        return self._text(self._decoder.decode(b"", final=True))

    def _text(self, text: str) -> list[SseEvent]:
        if not text:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if text.startswith("\n"):
                text = text[1:]
        text = self._pending + text
        events: list[SseEvent] = []
        start = 0
        for match in _LINE_END.finditer(text):
            if match.group() == "\r" and match.end() == len(text):
                self._skip_lf = True  # maybe the first half of a CRLF: the LF is not a line
            self._line(text[start : match.start()], events)
            start = match.end()
        self._pending = text[start:]
        return events

    def _line(self, line: str, events: list[SseEvent]) -> None:
        if line == "":
            self._dispatch(events)
            return
        if line.startswith(":"):
            self.comments.append(line[1:])
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
            self._data_seen = True
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
        elif name == "retry":
            if value and value.isascii() and value.isdigit():
                self.retry = int(value)
        # any other field name is ignored

    def _dispatch(self, events: list[SseEvent]) -> None:
        if self._data_seen:
            # Appending value + LF per field and removing the final LF is joining with LF.
            events.append(
                SseEvent(self.last_event_id, self._event or "message", "\n".join(self._data))
            )
        self._data = []
        self._data_seen = False
        self._event = ""


def parse(stream: bytes) -> tuple[list[SseEvent], int | None]:
    """A whole stream at once: its events and the last `retry` it set (or None)."""
    parser = SseParser()
    events = parser.feed(stream)
    events += parser.close()
    return events, parser.retry
