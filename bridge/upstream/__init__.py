"""bridge's way to its upstream apps: an HTTP/1.1 client on llhttp (httptools) with a keep-alive pool per
origin (`client`, `pool`), and the header rewriting a reverse proxy owes both sides (`headers`).
"""

from __future__ import annotations

from .client import (
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
    UpstreamTimeout,
    UpstreamUnreachable,
)
from .headers import HOP_BY_HOP, forward_request_headers, response_headers, strip_hop_by_hop

__all__ = [
    "HOP_BY_HOP",
    "UpstreamError",
    "UpstreamPool",
    "UpstreamResponse",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "forward_request_headers",
    "response_headers",
    "strip_hop_by_hop",
]
