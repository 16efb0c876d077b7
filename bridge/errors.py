"""Error vocabulary: what went wrong with a stream, and what went wrong with a config file.

Handlers raise `StreamError(ErrorCode...)` or emit `StreamReset(code)`; each protocol adapter maps
the code: before response headers to an HTTP status, after them to a stream reset (HTTP/2,
HTTP/3) or a closed connection (HTTP/1.1).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class ErrorCode(enum.Enum):
    BAD_REQUEST = 400
    FORBIDDEN = 403
    NOT_FOUND = 404
    METHOD_NOT_ALLOWED = 405
    REQUEST_TIMEOUT = 408
    PAYLOAD_TOO_LARGE = 413
    URI_TOO_LONG = 414
    UPGRADE_REQUIRED = 426
    HEADERS_TOO_LARGE = 431
    INTERNAL_ERROR = 500
    NOT_IMPLEMENTED = 501
    UPSTREAM_UNREACHABLE = 502
    OVERLOADED = 503
    UPSTREAM_TIMEOUT = 504
    HTTP_VERSION_NOT_SUPPORTED = 505
    CANCELLED = 499  # the client went away; nothing is sent

    @property
    def status(self) -> int:
        return 502 if self is ErrorCode.UPSTREAM_UNREACHABLE else self.value

    @property
    def reason(self) -> str:
        return _REASONS.get(self, self.name.replace("_", " ").lower())


_REASONS = {
    ErrorCode.UPSTREAM_UNREACHABLE: "upstream unreachable",
    ErrorCode.UPSTREAM_TIMEOUT: "upstream timed out",
    ErrorCode.NOT_FOUND: "no route",
    ErrorCode.HEADERS_TOO_LARGE: "request header fields too large",
    ErrorCode.PAYLOAD_TOO_LARGE: "request body too large",
    ErrorCode.OVERLOADED: "too many subscribers, retry later",
}


class StreamError(Exception):
    """A handler's way of ending one request with a status (or a reset, if too late)."""

    def __init__(
        self, code: ErrorCode, detail: str = "", headers: list[tuple[bytes, bytes]] | None = None
    ):
        super().__init__(detail or code.reason)
        self.code = code
        self.detail = detail or code.reason
        self.headers = headers or []


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    path: str
    line: int  # 1-based
    col: int  # 1-based
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.col}: {self.message}"


class ConfigError(Exception):
    """All the problems found in one config file, reported together."""

    def __init__(self, problems: list[ConfigProblem]):
        self.problems = sorted(problems, key=lambda p: (p.line, p.col))
        super().__init__("\n".join(str(p) for p in self.problems))
