"""How an upstream fails us: the errors of the upstream client, each a `StreamError` whose code
the client is answered with (502 or 504)."""

from __future__ import annotations

from ..errors import ErrorCode, StreamError


class UpstreamError(StreamError):
    """The upstream failed us; the subclass (or `code`) says how."""


class UpstreamUnreachable(UpstreamError):
    """Connect refused or reset, closed before a whole answer, or an answer that is not HTTP."""

    def __init__(self, detail: str) -> None:
        super().__init__(ErrorCode.UPSTREAM_UNREACHABLE, detail)


class UpstreamTooLarge(UpstreamUnreachable):
    """A whole-body read (`UpstreamPool.fetch`) found more than its caller's limit."""


class UpstreamTimeout(UpstreamError):
    def __init__(self, detail: str) -> None:
        super().__init__(ErrorCode.UPSTREAM_TIMEOUT, detail)
