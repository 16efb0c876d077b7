"""The life of one HTTP/2 or HTTP/3 stream, as the server adapters see it: one state machine.

A stream carries one request and its response (RFC 9113 §5.1; RFC 9114 §4.1 on the streams
of RFC 9000 §3). Two sides move it. The peer's: the request arrives, then is complete
(END_STREAM, FIN). Ours: the response head goes out, the handler ends the response, and that
end reaches the wire. `StreamState` is the product of the two that can occur:

    state                    response head out   our end asked   request complete
    OPEN                            no                 no               no
    REMOTE_CLOSED                   no                 no               yes
    SENDING                         yes                no               no
    SENDING_REMOTE_CLOSED           yes                no               yes
    ENDING                          yes                yes              no
    ENDING_REMOTE_CLOSED            yes                yes              yes
    CLOSED              our end is on the wire, or the stream was reset: the adapter forgets it

ENDING ("asked for, not on the wire yet") only lasts where an adapter holds bytes back for
flow control (HTTP/2); HTTP/3 hands every byte to QUIC at once and goes from SENDING straight
to CLOSED. A pushed stream starts REMOTE_CLOSED: its request is our own, and complete.

The moves (`Step`) are all in `_TRANSITIONS`; a step a state has no entry for (the request
ending twice) is a bug in an adapter (`InvalidTransition`). A second response head is not refused here but by the library
(which is how the adapters learn of a handler's bug): HEAD leaves a state past it unchanged.

Each state carries what the adapters ask of it on their hot paths as plain attributes
(`receiving`, `head_sent`, `ending`, `takes_body`): one attribute read, like the booleans the
adapters kept before, where a set look-up on an Enum costs several times that.

`StreamKind` is the other thing an adapter remembers about a stream: whether its bytes are a
message body or, after a 2xx answer to an extended CONNECT (RFC 8441, RFC 9220), a tunnel.
"""

from __future__ import annotations

from enum import Enum


class InvalidTransition(RuntimeError):
    """An adapter moved a stream in a way its state does not allow."""


class Step(Enum):
    HEAD = "response head sent"
    REMOTE_END = "request complete"
    END = "end of response asked for"
    LOCAL_END = "end of response on the wire"
    RESET = "reset"


class StreamState(Enum):
    # (name, response head out, our end asked, request complete)
    OPEN = ("open", False, False, False)
    REMOTE_CLOSED = ("remote closed", False, False, True)
    SENDING = ("sending", True, False, False)
    SENDING_REMOTE_CLOSED = ("sending, remote closed", True, False, True)
    ENDING = ("ending", True, True, False)
    ENDING_REMOTE_CLOSED = ("ending, remote closed", True, True, True)
    CLOSED = ("closed", True, True, True)

    def __init__(self, label: str, head_sent: bool, ending: bool, remote_closed: bool) -> None:
        closed = label == "closed"
        self.label = label
        self.head_sent = head_sent
        # Our end is asked for and still to be put on the wire.
        self.ending = ending and not closed
        # The peer may still send request bytes (and its end) on the stream.
        self.receiving = not remote_closed and not closed
        # A body may go out now: the head is out and the end not yet asked for.
        self.takes_body = head_sent and not ending and not closed

    def after(self, step: Step) -> StreamState:
        """The state `step` leads to."""
        following = _TRANSITIONS[self].get(step)
        if following is None:
            raise InvalidTransition(f"{step.value} in state {self.label}")
        return following


_S = StreamState
_ENDS = {Step.LOCAL_END: _S.CLOSED, Step.RESET: _S.CLOSED}
_TRANSITIONS: dict[StreamState, dict[Step, StreamState]] = {
    _S.OPEN: {
        Step.HEAD: _S.SENDING,
        Step.REMOTE_END: _S.REMOTE_CLOSED,
        # An end without a head: the library answers it (an HTTP/3 DATA frame is refused
        # before HEADERS; h2 sends it); once asked for, the response counts as begun.
        Step.END: _S.ENDING,
        **_ENDS,
    },
    _S.REMOTE_CLOSED: {
        Step.HEAD: _S.SENDING_REMOTE_CLOSED,
        Step.END: _S.ENDING_REMOTE_CLOSED,
        **_ENDS,
    },
    _S.SENDING: {
        Step.HEAD: _S.SENDING,
        Step.REMOTE_END: _S.SENDING_REMOTE_CLOSED,
        Step.END: _S.ENDING,
        **_ENDS,
    },
    _S.SENDING_REMOTE_CLOSED: {
        Step.HEAD: _S.SENDING_REMOTE_CLOSED,
        Step.END: _S.ENDING_REMOTE_CLOSED,
        **_ENDS,
    },
    _S.ENDING: {
        Step.HEAD: _S.ENDING,
        Step.REMOTE_END: _S.ENDING_REMOTE_CLOSED,
        Step.END: _S.ENDING,
        **_ENDS,
    },
    _S.ENDING_REMOTE_CLOSED: {
        Step.HEAD: _S.ENDING_REMOTE_CLOSED,
        Step.END: _S.ENDING_REMOTE_CLOSED,
        **_ENDS,
    },
    # Over is over: whatever an adapter still does with the stream changes nothing here.
    _S.CLOSED: dict.fromkeys(Step, _S.CLOSED),
}


class StreamKind(Enum):
    MESSAGE = ("message", False)  # a request and a response with bodies
    CONNECT = ("connect", False)  # an extended CONNECT not answered yet
    TUNNEL = ("tunnel", True)  # an extended CONNECT answered 2xx: Data/EndData both ways

    def __init__(self, label: str, tunnel: bool) -> None:
        self.label = label
        self.tunnel = tunnel

    @staticmethod
    def of(method: str) -> StreamKind:
        return StreamKind.CONNECT if method == "CONNECT" else StreamKind.MESSAGE

    def answered(self, status: int) -> StreamKind:
        """The kind after a final response with `status`: a 2xx makes a CONNECT a tunnel."""
        if self is StreamKind.CONNECT and 200 <= status < 300:
            return StreamKind.TUNNEL
        return self
