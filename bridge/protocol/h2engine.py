"""The HTTP/2 engine: the library under `Http2Protocol`, as the adapter sees it.

`Http2Protocol` (http2.py) owns what bridge decides (its events, stream states, limits, flood
counting, error mapping); an *engine* owns the wire: HPACK, frame parsing, the protocol's state
machine and flow-control windows. Two implement this interface, each in its library's shim:
`ngh2shim.NghttpEngine` (libnghttp2 through ngh2, the default) and `h2shim.H2Engine` (the
pure-Python h2, the fallback). Each turns its library's events into the few below and its
library's errors into `Broken`, `StreamGone` and `SendRefused`, so the adapter never imports
a wire library.

Which engine runs is `engines.http2` in routes.yaml (`ENGINES`); `available` says whether the
one asked for can run here, and `resolve` picks the one that will.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple, Protocol

NGHTTP2 = "nghttp2"
H2 = "h2"
ENGINES = (NGHTTP2, H2)


class ErrorCodes(IntEnum):
    """HTTP/2 error codes (RFC 9113 §7), as RST_STREAM and GOAWAY carry them."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


def goaway_frame(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    """A GOAWAY frame (RFC 9113 §6.8), for the errors an engine does not answer itself."""
    payload = last_stream_id.to_bytes(4, "big") + code.to_bytes(4, "big") + debug
    return len(payload).to_bytes(3, "big") + b"\x07\x00\x00\x00\x00\x00" + payload


# --- what an engine reports from received bytes ---------------------------------------------


class RequestIn(NamedTuple):
    """A request head (HEADERS) opened stream `stream_id`; `ended`: END_STREAM was on it."""

    stream_id: int
    headers: list[tuple[bytes, bytes]] | tuple[tuple[bytes, bytes], ...]
    ended: bool


class DataIn(NamedTuple):
    """Body bytes; `flow_length` is what they cost the window (padding included)."""

    stream_id: int
    data: bytes
    flow_length: int
    ended: bool


class EndIn(NamedTuple):
    """The client ended its side of the stream (END_STREAM not on DATA, e.g. on trailers)."""

    stream_id: int


class ResetIn(NamedTuple):
    """The client reset the stream (RST_STREAM): counted against rapid reset."""

    stream_id: int


class ClosedIn(NamedTuple):
    """The engine ended a stream on its own (a stream error it answered itself)."""

    stream_id: int


class WindowIn(NamedTuple):
    """Send window grew: one stream's, or (0) the connection's or every stream's (SETTINGS)."""

    stream_id: int


class PeerGone(NamedTuple):
    """The client sent GOAWAY."""

    code: int


class Broken(NamedTuple):
    """A connection error. `answered`: the engine has queued its GOAWAY; otherwise the adapter
    writes one with `code`. `at_preface`: the client's preface was wrong (nothing after our
    own SETTINGS is dropped, and no stream counts as processed)."""

    code: int
    why: str
    answered: bool
    at_preface: bool = False


EngineEvent = RequestIn | DataIn | EndIn | ResetIn | ClosedIn | WindowIn | PeerGone | Broken


class StreamGone(Exception):
    """A send to a stream the engine has closed or never had."""


class SendRefused(Exception):
    """The engine refused what bridge sent (bridge's bug, e.g. a header it rejects)."""


class Engine(Protocol):
    """One server-side HTTP/2 connection's wire state. Sends raise `StreamGone` or
    `SendRefused`; `receive` raises nothing (errors are `Broken`)."""

    @property
    def max_outbound_frame_size(self) -> int: ...

    @property
    def highest_inbound_stream_id(self) -> int: ...

    @property
    def peer_push_enabled(self) -> bool: ...

    @property
    def peer_max_concurrent_streams(self) -> int: ...

    def receive(self, data: bytes) -> list[EngineEvent]: ...

    def partial_frame_length(self) -> int:
        """The length announced by a frame still arriving that the engine has not checked."""
        ...

    def send_headers(
        self, stream_id: int, fields: list[tuple[bytes, bytes]], *, end_stream: bool = False
    ) -> None: ...

    def send_informational(self, stream_id: int, fields: list[tuple[bytes, bytes]]) -> None: ...

    def send_data(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None: ...

    def end_stream(self, stream_id: int) -> None: ...

    def reset_stream(self, stream_id: int, code: ErrorCodes) -> None:
        """RST_STREAM; a stream already gone is no error."""
        ...

    def push(self, stream_id: int, request: list[tuple[bytes, bytes]]) -> int:
        """PUSH_PROMISE on `stream_id`: the promised stream's id."""
        ...

    def acknowledge(self, stream_id: int, size: int) -> None:
        """`size` received bytes consumed: their window goes back to the client."""
        ...

    def send_window(self, stream_id: int) -> int:
        """Bytes the stream may send now (both windows, less what is queued); 0 when gone."""
        ...

    def frame_now(self, stream_id: int, prefix: bytes, data: bytes) -> bytes | None:
        """`data` as one DATA frame after everything queued, windows charged; or None."""
        ...

    def go_away(self, code: ErrorCodes, debug: bytes = b"") -> None:
        """Drop what is queued and queue GOAWAY `code`: the connection is done."""
        ...

    def preface_refused(self) -> None:
        """The client's preface was wrong: GOAWAY PROTOCOL_ERROR after our SETTINGS."""
        ...

    def close(self) -> None:
        """GOAWAY NO_ERROR: the connection is closing; nothing is sent after it."""
        ...

    def data_to_send(self) -> bytes: ...

    def release(self) -> None:
        """Closed for good: drop unsent bytes and anything that keeps the engine alive."""
        ...


class EngineFactory(Protocol):
    def __call__(
        self, *, max_concurrent_streams: int, max_header_bytes: int, initial_window: int
    ) -> Engine: ...
