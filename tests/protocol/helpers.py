"""In-memory pairs of a bridge protocol adapter and the real client-side library.

A *pair* joins a server adapter (`Http1Protocol`, `Http2Protocol`) to a client connection of
the library the wire format belongs to (h11 for HTTP/1.1, h2 for HTTP/2): bytes the client
produces are fed to the adapter, bytes the adapter queues are parsed by the client. Nothing is
mocked, so the tests assert on what a real peer would see.

Every scenario runs twice (`feed_modes`): once with each write fed whole, and once fed to the
adapter one byte at a time, because a parser that only works when a frame or a head arrives in
one piece fails on real networks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events
import h2.settings
import h11
import hpack
import pytest
from hyperframe.frame import Frame, GoAwayFrame, HeadersFrame, RstStreamFrame, SettingsFrame

from bridge.events import Event, Headers
from bridge.protocol.http1 import Http1Protocol
from bridge.protocol.http2 import PREFACE, Http2Protocol

feed_modes = pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])


def feed(adapter: Http1Protocol | Http2Protocol, data: bytes, bytewise: bool) -> list[Event]:
    """Deliver `data` to the adapter whole or one byte per call; all events, in order.

    An empty `data` is not an end of file here: EOF is `adapter.receive_data(b"")`, explicitly.
    """
    if not bytewise:
        return adapter.receive_data(data) if data else []
    events: list[Event] = []
    for i in range(len(data)):
        events += adapter.receive_data(data[i : i + 1])
    return events


def of_type(events: list[object], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


# --- HTTP/1.1 ----------------------------------------------------------------------------------


@dataclass
class ParsedResponse:
    """What an h11 client made of the adapter's bytes for one request."""

    status: int = 0
    reason: bytes = b""
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    informational: list[tuple[int, Headers]] = field(default_factory=list)
    complete: bool = False  # EndOfMessage seen
    http_version: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        values = [v for n, v in self.headers if n == name]
        assert len(values) <= 1, f"{name!r} appears {len(values)} times"
        return values[0] if values else None


def read_response(client: h11.Connection, data: bytes, *, eof: bool = False) -> ParsedResponse:
    """Feed the adapter's bytes to an h11 client (that has sent its request) and parse them."""
    client.receive_data(data)
    if eof:
        client.receive_data(b"")
    parsed = ParsedResponse()
    for _ in range(10_000):  # bounded: one event per iteration
        event = client.next_event()
        if event is h11.NEED_DATA or event is h11.PAUSED:
            break
        if isinstance(event, h11.InformationalResponse):
            parsed.informational.append((event.status_code, list(event.headers)))
            if event.status_code == 101:
                parsed.status = 101
                parsed.headers = list(event.headers)
                break
        elif isinstance(event, h11.Response):
            parsed.status = event.status_code
            parsed.reason = bytes(event.reason)
            parsed.headers = list(event.headers)
            parsed.http_version = bytes(event.http_version)
        elif isinstance(event, h11.Data):
            parsed.body += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            parsed.complete = True
            break
        elif isinstance(event, h11.ConnectionClosed):
            break
    return parsed


def parse_response(raw: bytes, *, method: bytes = b"GET", eof: bool = False) -> ParsedResponse:
    """Parse response bytes the adapter sent for a request an h11 client could not have sent.

    h11 only parses a response after its own request, so a throw-away request is "sent" first
    (its bytes go nowhere); `method` matters because a response to HEAD has no body.
    """
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target=b"/", headers=[(b"host", b"example.com")]))
    client.send(h11.EndOfMessage())
    return read_response(client, raw, eof=eof)


def parse_responses(raw: bytes, count: int, *, eof: bool = False) -> list[ParsedResponse]:
    """Parse `count` consecutive responses (pipelining) from one byte string, in order."""
    client = h11.Connection(h11.CLIENT)
    client.receive_data(raw)
    if eof:
        client.receive_data(b"")
    parsed = []
    for _ in range(count):
        client.send(h11.Request(method=b"GET", target=b"/", headers=[(b"host", b"example.com")]))
        client.send(h11.EndOfMessage())
        parsed.append(read_response(client, b""))
        if client.our_state is h11.DONE and client.their_state is h11.DONE:
            client.start_next_cycle()
    return parsed


class H1Pair:
    """An `Http1Protocol` and an h11 client, joined in memory."""

    def __init__(self, bytewise: bool, *, scheme: str = "http", **kwargs: int) -> None:
        self.server = Http1Protocol(scheme=scheme, **kwargs)
        self.client = h11.Connection(h11.CLIENT)
        self.bytewise = bytewise

    def raw(self, data: bytes) -> list[Event]:
        """Bytes no well-behaved client would send, straight to the adapter."""
        return feed(self.server, data, self.bytewise)

    def client_send(self, *events: h11.Event) -> list[Event]:
        data = b"".join(self.client.send(e) or b"" for e in events)
        return self.raw(data)

    def request(
        self,
        method: bytes = b"GET",
        target: bytes = b"/",
        headers: Headers | None = None,
        body: bytes | None = None,
    ) -> list[Event]:
        """Send one whole request; chunked when `body` is given without a content-length."""
        head = headers if headers is not None else [(b"host", b"example.com")]
        events: list[h11.Event] = [h11.Request(method=method, target=target, headers=head)]
        if body:
            events.append(h11.Data(data=body))
        events.append(h11.EndOfMessage())
        return self.client_send(*events)

    def respond(self, *events: Event) -> list[Event]:
        """Events from a handler to the adapter; the adapter's follow-up events."""
        follow: list[Event] = []
        for event in events:
            follow += self.server.send(event)
        return follow

    def client_read(self, *, eof: bool = False) -> ParsedResponse:
        return read_response(self.client, self.server.data_to_send(), eof=eof)

    def next_cycle(self) -> None:
        self.client.start_next_cycle()


# --- HTTP/2 ------------------------------------------------------------------------------------


class H2Pair:
    """An `Http2Protocol` and an h2 client connection, joined in memory.

    `client_settings` go into the client's first SETTINGS frame (e.g. a small
    INITIAL_WINDOW_SIZE, or ENABLE_PUSH=0), so they hold from the adapter's first stream on.
    """

    def __init__(
        self,
        bytewise: bool,
        *,
        client_settings: dict[h2.settings.SettingCodes, int] | None = None,
        **server_kwargs: object,
    ) -> None:
        self.server = Http2Protocol(scheme="https", **server_kwargs)  # type: ignore[arg-type]
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self.client = h2.connection.H2Connection(config=config)
        if client_settings:
            self.client.local_settings = h2.settings.Settings(
                client=True, initial_values=client_settings
            )
        self.client.initiate_connection()
        self.bytewise = bytewise

    def to_server(self) -> list[Event]:
        """Everything the client has queued, fed to the adapter; the adapter's events."""
        return feed(self.server, self.client.data_to_send(), self.bytewise)

    def to_client(self) -> list[h2.events.Event]:
        """Everything the adapter has queued, parsed by the client; the client's events."""
        data = self.server.data_to_send()
        return self.client.receive_data(data) if data else []

    def handshake(self) -> tuple[list[Event], list[h2.events.Event]]:
        """Preface and SETTINGS both ways, then the client's ACK back to the adapter."""
        server_events = self.to_server()
        client_events = self.to_client()
        server_events += self.to_server()
        client_events += self.to_client()
        return server_events, client_events

    def respond(self, *events: Event) -> list[Event]:
        follow: list[Event] = []
        for event in events:
            follow += self.server.send(event)
        return follow

    def get(self, path: bytes = b"/", *, extra: Headers | None = None, end: bool = True) -> int:
        """Queue a request on a new client stream; returns its id (nothing is fed yet)."""
        sid = self.client.get_next_available_stream_id()
        headers = [
            (b":method", b"GET" if end else b"POST"),
            (b":scheme", b"https"),
            (b":authority", b"example.com"),
            (b":path", path),
            *(extra or []),
        ]
        self.client.send_headers(sid, headers, end_stream=end)
        return sid


# --- HTTP/2, frame by frame --------------------------------------------------------------------

GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a"), (b":path", b"/")]


class RawClient:
    """An HTTP/2 client that writes whatever frames a test asks for, and parses the answer."""

    def __init__(self, **server_kwargs: int) -> None:
        self.server = Http2Protocol(scheme="https", **server_kwargs)  # type: ignore[arg-type]
        self.encoder = hpack.Encoder()
        self.buffer = b""

    def handshake(self) -> list[Frame]:
        """Preface and empty SETTINGS, then the ACK of the adapter's SETTINGS."""
        assert self.send(PREFACE + SettingsFrame(0).serialize()) == []
        frames = self.read()
        assert isinstance(frames[0], SettingsFrame) and "ACK" not in frames[0].flags
        assert self.send(SettingsFrame(0, flags=["ACK"]).serialize()) == []
        return frames

    def send(self, data: bytes) -> list[object]:
        return list(self.server.receive_data(data))

    def send_frames(self, frames: list[bytes], delivery: str) -> list[object]:
        """`frames` in one write (`whole`), one write each (`frames`) or a byte at a time."""
        if delivery == "whole":
            return self.send(b"".join(frames))
        pieces = frames if delivery == "frames" else [bytes([b]) for b in b"".join(frames)]
        events: list[object] = []
        for piece in pieces:
            events += self.send(piece)
        return events

    def headers(self, sid: int, fields: list[tuple[bytes, bytes]], *, end: bool = True) -> bytes:
        flags = ["END_HEADERS", "END_STREAM"] if end else ["END_HEADERS"]
        return HeadersFrame(sid, data=self.encoder.encode(fields), flags=flags).serialize()

    def read(self) -> list[Frame]:
        """Every whole frame the adapter has queued."""
        self.buffer += self.server.data_to_send()
        frames = []
        while len(self.buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
            if len(self.buffer) < 9 + length:
                break
            frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
            self.buffer = self.buffer[9 + length :]
            frames.append(frame)
        return frames


def resets(frames: list[Frame]) -> list[tuple[int, int]]:
    return [(f.stream_id, f.error_code) for f in frames if isinstance(f, RstStreamFrame)]


def goaways(frames: list[Frame]) -> list[int]:
    return [f.error_code for f in frames if isinstance(f, GoAwayFrame)]
