"""Request ids: one per exchange, in the access log and sent upstream as `X-Request-Id`.

A client's (or an earlier proxy's) own `X-Request-Id` is kept when it is a sane token, so one id
follows a request through every hop; otherwise bridge makes one: a random per-process prefix and
a counter, unique across restarts and cheap (no `uuid4`, no `os.urandom`, per request).
"""

from __future__ import annotations

import itertools
import os
import re

from .events import Headers

MAX_LENGTH = 128
# What may come in and go out again unchanged: no spaces, quotes or control characters, so a
# peer's id can break neither a log line nor the upstream's header block.
_SANE = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,%d}" % MAX_LENGTH)
_PREFIX = os.urandom(4).hex()
_counter = itertools.count(1)


def request_id(headers: Headers) -> str:
    """The request's own `X-Request-Id` if it is sane, else a new one."""
    for name, value in headers:
        if name == b"x-request-id":
            if _SANE.fullmatch(value):
                return value.decode("ascii")
            break
    return f"{_PREFIX}-{next(_counter):x}"
