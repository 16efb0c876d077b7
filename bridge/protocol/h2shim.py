"""The HTTP/2 engine's seam: everything bridge needs from h2 (and hpack, hyperframe) beyond
their documented API, in one place.

Written against h2 4.4.1, hpack 4.2.0 and hyperframe 6.1.0. `pyproject.toml` bounds them from
above and tests/unit/test_library_versions.py fails when an installed version is outside the
range, so a new release is checked against this file before it runs: the adapter
(`http2.py`) uses h2's public API and these names only, and no other module touches h2's
private names (tests/unit/test_layers.py).

What is reached into, and why h2's public API does not do:

- `_data_to_send`, appended to (`queue_goaway`): h2 sends a GOAWAY only from its own state
  machine, and not at all for an invalid preface; bridge also answers floods and oversized
  frames with codes h2 would not choose. Read (`data_frame_now`): h2 has no "anything
  queued?" short of `data_to_send()`, which empties the buffer.
- `incoming_buffer._data` (`partial_frame_length`): h2 checks a frame's length only once the
  whole frame has arrived, so an oversized one would sit in its buffer until then.
- `_frame_dispatch_table` (`release`): a table of bound methods, so every H2Connection is a
  reference cycle; dropping it frees a closed connection without the cycle collector.
- `streams[...]` and the `outbound_flow_control_window` attributes (`data_frame_now`):
  public names but h2's own bookkeeping; the fan-out frames DATA itself and charges the
  windows exactly as `send_data` would.
- `local_settings` replaced by `UnenforcedSettings`, `encoder` by bridge's `LeanEncoder`,
  `decoder.max_header_list_size` set: attributes h2 reads but does not document as settable.
- Errors h2 raises as a plain `ProtocolError` whose kind only its message says
  (`is_flood`, `is_bad_preface`), and HPACK failures it reports as PROTOCOL_ERROR
  (`is_compression_error`).
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.errors
import h2.exceptions
import h2.settings
from hpack.exceptions import HPACKError, OversizedHeaderListError
from hyperframe.frame import GoAwayFrame

from .hpackenc import LeanEncoder


class UnenforcedSettings(h2.settings.Settings):
    """Local settings whose stream limit h2 does not enforce itself.

    h2 answers a stream beyond MAX_CONCURRENT_STREAMS by killing the whole connection;
    RFC 9113 §5.1.2 wants that one stream refused (REFUSED_STREAM), which the adapter does.
    The advertised value is still the real limit: only the property h2 checks is lifted.
    """

    @property  # type: ignore[misc]  # h2's is read-write; we only ever read it
    def max_concurrent_streams(self) -> int:
        return 2**31 - 1


class ServerConnection(h2.connection.H2Connection):
    """h2's server-side connection as bridge configures it, with the internals it needs as
    methods (see the module docstring for why each exists)."""

    def __init__(
        self, *, max_concurrent_streams: int, max_header_bytes: int, initial_window: int
    ) -> None:
        # What a client sends is validated by h2. What we send is built by `response_fields`
        # from heads llhttp already checked (an upstream's) or from our own constants, and
        # h2's outbound normalising and validation cost more than the rest of a response.
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=True,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        super().__init__(config=config)
        self.encoder = LeanEncoder()  # type: ignore[assignment]  # h2 needs only encode()
        self.local_settings = UnenforcedSettings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: max_header_bytes,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: initial_window,
                h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: 1,
            },
        )
        self.decoder.max_header_list_size = max_header_bytes

    def queue_goaway(
        self, last_stream_id: int, code: h2.errors.ErrorCodes, debug: bytes = b""
    ) -> None:
        """Queue a GOAWAY frame after whatever h2 has queued, outside h2's state machine."""
        frame = GoAwayFrame(stream_id=0)
        frame.last_stream_id = last_stream_id
        frame.error_code = code
        frame.additional_data = debug
        self._data_to_send += frame.serialize()

    def partial_frame_length(self) -> int:
        """The length announced by the frame h2 is still waiting to complete (0: none)."""
        pending = self.incoming_buffer._data
        return int.from_bytes(pending[:3], "big") if len(pending) >= 9 else 0

    def data_frame_now(self, stream_id: int, prefix: bytes, data: bytes) -> bytes | None:
        """`data` as one DATA frame (`prefix`: its type, flags and stream id, RFC 9113 §4.1),
        after anything h2 has queued, with the connection's and the stream's send windows
        charged as h2's `send_data` charges them (§6.9); None when the frame size or either
        window does not take it now."""
        size = len(data)
        if size > self.max_outbound_frame_size or size > self.outbound_flow_control_window:
            return None
        stream = self.streams.get(stream_id)
        if stream is None or size > stream.outbound_flow_control_window:
            return None
        self.outbound_flow_control_window -= size
        stream.outbound_flow_control_window -= size
        frame = size.to_bytes(3, "big") + prefix + data
        if self._data_to_send:
            return self.data_to_send() + frame
        return frame

    def release(self) -> None:
        """Closed for good: drop unsent bytes and the cycle h2's frame-dispatch table makes
        (nothing parses frames any more)."""
        self.clear_outbound_data_buffer()
        self._frame_dispatch_table = {}


def is_flood(exc: h2.exceptions.ProtocolError) -> bool:
    """A header block of too many CONTINUATION frames (RFC 9113 §10.5; h2 raises a plain
    ProtocolError, "Too many continuation frames received.") or another flood h2 caught."""
    return "continuation" in str(exc).lower() or isinstance(exc, h2.exceptions.DenialOfServiceError)


def is_bad_preface(exc: h2.exceptions.ProtocolError) -> bool:
    """The client's connection preface was wrong (h2: "Invalid HTTP/2 preamble.")."""
    return "preamble" in str(exc).lower()


def is_compression_error(exc: h2.exceptions.ProtocolError) -> bool:
    """A header block that does not decode (a table-size update above our
    SETTINGS_HEADER_TABLE_SIZE, a bad index or Huffman code: RFC 7541 §4.2, §6.3), which h2
    reports as PROTOCOL_ERROR with hpack's error as the cause. An oversized header list
    decodes fine and is not one."""
    cause = exc.__cause__
    return isinstance(cause, HPACKError) and not isinstance(cause, OversizedHeaderListError)
