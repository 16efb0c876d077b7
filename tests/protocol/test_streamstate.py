"""The stream state machine both multiplexed adapters share (`bridge.protocol.streamstate`)."""

from __future__ import annotations

import pytest

from bridge.protocol.streamstate import InvalidTransition, Step, StreamKind, StreamState

S = StreamState


def walk(*steps: Step, start: StreamState = S.OPEN) -> StreamState:
    state = start
    for step in steps:
        state = state.after(step)
    return state


def test_a_plain_exchange() -> None:
    assert walk(Step.REMOTE_END) is S.REMOTE_CLOSED
    assert walk(Step.REMOTE_END, Step.HEAD) is S.SENDING_REMOTE_CLOSED
    assert walk(Step.REMOTE_END, Step.HEAD, Step.END) is S.ENDING_REMOTE_CLOSED
    assert walk(Step.REMOTE_END, Step.HEAD, Step.END, Step.LOCAL_END) is S.CLOSED


def test_the_request_may_end_at_any_point_of_the_response() -> None:
    assert walk(Step.HEAD, Step.REMOTE_END) is S.SENDING_REMOTE_CLOSED
    assert walk(Step.HEAD, Step.END, Step.REMOTE_END) is S.ENDING_REMOTE_CLOSED


@pytest.mark.parametrize("state", [s for s in S if s is not S.CLOSED])
def test_every_live_state_can_end_or_be_reset(state: StreamState) -> None:
    assert state.after(Step.LOCAL_END) is S.CLOSED
    assert state.after(Step.RESET) is S.CLOSED


@pytest.mark.parametrize("state", [s for s in S if not s.receiving])
def test_a_request_ends_once(state: StreamState) -> None:
    if state is S.CLOSED:
        assert state.after(Step.REMOTE_END) is S.CLOSED  # over is over
        return
    with pytest.raises(InvalidTransition):
        state.after(Step.REMOTE_END)


def test_a_second_head_is_left_to_the_library() -> None:
    for state in (S.SENDING, S.SENDING_REMOTE_CLOSED, S.ENDING, S.ENDING_REMOTE_CLOSED):
        assert state.after(Step.HEAD) is state


def test_what_the_adapters_ask() -> None:
    assert [s for s in S if s.takes_body] == [S.SENDING, S.SENDING_REMOTE_CLOSED]
    assert [s for s in S if s.receiving] == [S.OPEN, S.SENDING, S.ENDING]
    assert [s for s in S if s.ending] == [S.ENDING, S.ENDING_REMOTE_CLOSED]
    assert not S.OPEN.head_sent and not S.REMOTE_CLOSED.head_sent


def test_a_connect_becomes_a_tunnel_on_2xx_only() -> None:
    assert StreamKind.of("CONNECT").answered(200) is StreamKind.TUNNEL
    assert StreamKind.of("CONNECT").answered(404) is StreamKind.CONNECT
    assert StreamKind.of("GET").answered(200) is StreamKind.MESSAGE
    assert StreamKind.TUNNEL.tunnel and not StreamKind.CONNECT.tunnel
