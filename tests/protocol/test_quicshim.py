"""`quicshim`'s replacements of aioquic's own steps behave exactly as the steps they replace."""

from __future__ import annotations

from aioquic.buffer import Buffer
from aioquic.quic.connection import QuicConnection
from hypothesis import given
from hypothesis import strategies as st

from bridge.protocol.quicshim import AppWindowQuic

# A PADDING run starts at `start` (the frame type byte already read), then anything follows.
frames = st.tuples(
    st.integers(min_value=0, max_value=1500),  # zeros
    st.binary(max_size=64),  # what follows them: another frame, or nothing
    st.integers(min_value=0, max_value=8),  # bytes before the run (earlier frames)
)


def after_padding(handler: object, data: bytes, start: int) -> int:
    buf = Buffer(data=data)
    buf.seek(start)
    handler(None, 0, buf)  # type: ignore[operator]
    return buf.tell()


class _Plain:
    """Just enough of a connection for the unbound padding handlers."""

    _quic_logger = None


@given(frames)
def test_padding_ends_where_aioquics_own_loop_ends(frame: tuple[int, bytes, int]) -> None:
    zeros, rest, before = frame
    data = b"\x07" * before + b"\x00" * zeros + rest
    ours = AppWindowQuic._handle_padding_frame.__get__(_Plain())
    theirs = QuicConnection._handle_padding_frame.__get__(_Plain())
    assert after_padding(ours, data, before) == after_padding(theirs, data, before)
