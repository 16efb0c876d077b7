"""QUIC for the server side, sans-IO: which datagram goes where, and one server connection.

Nothing here touches a socket or a clock: callers pass datagrams, addresses and `now`, and
get back decisions (`Admission`) and datagrams to send. `bridge.server.datagram` does the I/O.

- `QuicGate` decides, for a datagram no connection claims, whether it starts a connection
  (RFC 9000 §14.1: only an Initial in a datagram of at least 1200 bytes may), earns a Version
  Negotiation packet (§6), a stateless Retry (§8.1.2, when many handshakes are in flight),
  an INVALID_TOKEN close, or nothing at all. Garbage and truncated packets are dropped here,
  before any connection sees them.
- `ServerQuic` is aioquic's `QuicConnection` with receive flow control tied to what bridge
  has consumed: aioquic doubles a stream's receive window whenever half of it has arrived,
  whether or not anyone read the bytes, so a client could make the server buffer a request
  body without limit. Here the window only moves as the application acknowledges bytes
  (the mechanism, an override of aioquic internals, is `quicshim.AppWindowQuic`'s).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

from aioquic.buffer import Buffer, BufferReadError
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import NetworkAddress
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import (
    QuicErrorCode,
    QuicFrameType,
    QuicHeader,
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.retry import QuicRetryTokenHandler

from .. import settings
from .quicshim import AppWindowQuic

# RFC 9000 §14.1: a client's first datagram is padded to at least this size.
MIN_INITIAL_SIZE = 1200
CID_LENGTH = 8


def server_configuration(
    cert: str, key: str, *, idle_timeout: float, stream_window: int = settings.H3_STREAM_WINDOW
) -> QuicConfiguration:
    """The QUIC/TLS 1.3 settings of bridge's UDP listener: the TCP listener's certificate,
    ALPN h3 (RFC 9114 §3.1), and receive windows bounded as `settings` says."""
    config = QuicConfiguration(
        is_client=False,
        alpn_protocols=list(H3_ALPN),
        idle_timeout=idle_timeout,
        max_stream_data=stream_window,
        max_data=stream_window * settings.H3_MAX_STREAMS,
        connection_id_length=CID_LENGTH,
    )
    config.load_cert_chain(cert, key)
    return config


class Verdict(Enum):
    DROP = "drop"  # garbage, truncated, a stray short header, or a reply we owe nobody
    REPLY = "reply"  # send `Admission.reply` and forget the datagram
    ACCEPT = "accept"  # start a connection with `Admission`'s connection ids


@dataclass(frozen=True, slots=True)
class Admission:
    verdict: Verdict
    reply: bytes = b""
    original_cid: bytes | None = None
    retry_cid: bytes | None = None
    why: str = ""


def peek_header(data: bytes) -> QuicHeader | None:
    """The packet header of a datagram, or None when it is not a QUIC packet at all."""
    try:
        return pull_quic_header(Buffer(data=data), host_cid_length=CID_LENGTH)
    except (ValueError, BufferReadError):
        return None


class QuicGate:
    """Admission of new QUIC connections (no per-datagram state of its own)."""

    def __init__(self, supported_versions: list[int], *, retry_above: int) -> None:
        self.supported_versions = supported_versions
        self.retry_above = retry_above
        self.retrying = False
        # Client ids we answered with a Retry, and when (bounded, oldest forgotten first).
        self._retried: OrderedDict[bytes, float] = OrderedDict()
        self._tokens = QuicRetryTokenHandler()

    def admit(
        self, data: bytes, header: QuicHeader, addr: NetworkAddress, now: float, handshaking: int
    ) -> Admission:
        if header.packet_type == QuicPacketType.VERSION_NEGOTIATION or header.version is None:
            # Never answer a Version Negotiation packet (§6.1): two servers with spoofed
            # addresses would bounce them forever. Short headers of unknown ids: drop (no
            # stateless reset is sent, so nothing can be amplified off this port).
            return Admission(Verdict.DROP, why="not a new connection")
        if header.version not in self.supported_versions:
            if len(data) < MIN_INITIAL_SIZE:
                # §6.1: "MUST NOT send a Version Negotiation packet in response to" less.
                return Admission(Verdict.DROP, why="short unknown-version packet")
            reply = encode_quic_version_negotiation(
                source_cid=header.destination_cid,
                destination_cid=header.source_cid,
                supported_versions=self.supported_versions,
            )
            return Admission(Verdict.REPLY, reply, why="version negotiation")
        if header.packet_type != QuicPacketType.INITIAL or len(data) < MIN_INITIAL_SIZE:
            return Admission(Verdict.DROP, why="not a full-size Initial")
        # Retry mode with hysteresis: on at `retry_above` handshakes, off below half of it,
        # so it does not flap with every handshake that completes.
        if handshaking >= self.retry_above:
            self.retrying = True
        elif handshaking < self.retry_above // 2:
            self.retrying = False
        if header.token:
            try:
                original = self._tokens.validate_token(
                    address=addr,
                    destination_cid=header.destination_cid,
                    token=header.token,
                    now=now,
                )
            except ValueError:
                if not self.retrying:
                    # A NEW_TOKEN from an earlier connection (we send none) or a stale one:
                    # under light load just take the client as if it had none.
                    return Admission(Verdict.ACCEPT, original_cid=header.destination_cid)
                # §8.1.3: a bad Retry token closes with INVALID_TOKEN.
                return Admission(Verdict.REPLY, _invalid_token_close(header), why="bad token")
            return Admission(
                Verdict.ACCEPT, original_cid=original, retry_cid=header.destination_cid
            )
        if self.retrying or self._was_retried(header.destination_cid, now):
            # §8.1: prove the address before we spend a handshake's CPU and memory on it. A
            # client resends its first Initial when our Retry is slow to arrive; once load
            # has dropped, accepting that copy would start a handshake (a signature, the
            # costliest step) for a connection the client has abandoned for the retried one.
            source_cid = os.urandom(CID_LENGTH)
            token = self._tokens.create_token(
                address=addr,
                original_destination_connection_id=header.destination_cid,
                retry_source_connection_id=source_cid,
                now=now,
            )
            reply = encode_quic_retry(
                version=header.version,
                source_cid=source_cid,
                destination_cid=header.source_cid,
                original_destination_cid=header.destination_cid,
                retry_token=token,
            )
            self._remember_retry(header.destination_cid, now)
            return Admission(Verdict.REPLY, reply, why="retry")
        return Admission(Verdict.ACCEPT, original_cid=header.destination_cid)

    def _remember_retry(self, cid: bytes, now: float) -> None:
        retried = self._retried
        retried[cid] = now
        retried.move_to_end(cid)
        while len(retried) > settings.QUIC_RETRY_MEMORY:
            retried.popitem(last=False)

    def _was_retried(self, cid: bytes, now: float) -> bool:
        at = self._retried.get(cid)
        if at is None:
            return False
        if now - at > settings.QUIC_RETRY_MEMORY_SECONDS:
            del self._retried[cid]
            return False
        return True


def _invalid_token_close(header: QuicHeader) -> bytes:
    """A server Initial with CONNECTION_CLOSE(INVALID_TOKEN), keyed from the client's id."""
    assert header.version is not None
    crypto = CryptoPair()
    crypto.setup_initial(cid=header.destination_cid, is_client=False, version=header.version)
    builder = QuicPacketBuilder(
        host_cid=header.destination_cid,
        is_client=False,
        max_datagram_size=MIN_INITIAL_SIZE,
        peer_cid=header.source_cid,
        version=header.version,
    )
    builder.start_packet(QuicPacketType.INITIAL, crypto)
    buf = builder.start_frame(QuicFrameType.TRANSPORT_CLOSE, capacity=16)
    buf.push_uint_var(QuicErrorCode.INVALID_TOKEN)
    buf.push_uint_var(QuicFrameType.PADDING)
    buf.push_uint_var(0)
    datagrams, _ = builder.flush()
    return datagrams[0]


class ServerQuic(AppWindowQuic):
    """A server `QuicConnection` whose stream receive windows follow consumption.

    `consumed(stream_id, n)` is called as the HTTP/3 layer hands bytes on (framing at once,
    body bytes when the handler reads them); MAX_STREAM_DATA then offers the client
    `stream_window` bytes beyond what was consumed (RFC 9000 §4.1), never more. So a slow
    upstream slows the client's upload instead of filling our memory.
    """

    def __init__(self, *, stream_window: int, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.stream_window = stream_window
        self._consumed: dict[int, int] = {}

    def consumed(self, stream_id: int, size: int) -> None:
        total = self._consumed[stream_id] = self._consumed.get(stream_id, 0) + size
        self.raise_receive_limit(stream_id, total + self.stream_window)

    def forget(self, stream_id: int) -> None:
        self._consumed.pop(stream_id, None)


__all__ = [
    "MIN_INITIAL_SIZE",
    "Admission",
    "QuicGate",
    "ServerQuic",
    "Verdict",
    "peek_header",
    "server_configuration",
]
