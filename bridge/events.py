"""The protocol-neutral vocabulary between protocol adapters and handlers.

Adapters (`bridge.protocol.http1/http2/http3`) turn wire bytes into these events and these
events into wire bytes; handlers only ever see these. Headers are lists of (name, value) byte
pairs with lower-case names, and never contain pseudo-headers or hop-by-hop fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ErrorCode

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Request:
    stream_id: int
    method: str
    target: str  # path + query as sent (not yet normalised)
    authority: str
    scheme: str
    headers: Headers
    http_version: str  # "1.0", "1.1", "2", "3"
    protocol: str | None = None  # `:protocol` of an extended CONNECT (RFC 8441 / RFC 9220)
    pushed: bool = False  # synthesized for a server push

    def with_headers(self, headers: Headers) -> Request:
        """This request with other headers (`dataclasses.replace` costs several times more,
        once per stream subscriber)."""
        return Request(
            self.stream_id,
            self.method,
            self.target,
            self.authority,
            self.scheme,
            headers,
            self.http_version,
            self.protocol,
            self.pushed,
        )


@dataclass(frozen=True, slots=True)
class Body:
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class EndBody:
    stream_id: int


@dataclass(frozen=True, slots=True)
class Data:
    """Tunnel bytes after a WebSocket accept (101 or extended-CONNECT 200)."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class EndData:
    stream_id: int


@dataclass(frozen=True, slots=True)
class Response:
    stream_id: int
    status: int
    headers: Headers = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class InformationalResponse:
    stream_id: int
    status: int
    headers: Headers = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PushPromise:
    stream_id: int
    path: str
    headers: Headers = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class StreamReset:
    stream_id: int
    code: ErrorCode


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The stream is over on the wire (sent and received, or reset); handlers stop."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The adapter wants the connection closed once pending bytes are out."""

    reason: str = ""


@dataclass(frozen=True, slots=True)
class WindowOpened:
    """Flow control allows more bytes on `stream_id` (0: the whole connection)."""

    stream_id: int


Event = (
    Request
    | Body
    | EndBody
    | Data
    | EndData
    | Response
    | InformationalResponse
    | PushPromise
    | StreamReset
    | StreamClosed
    | ConnectionClosed
    | WindowOpened
)
