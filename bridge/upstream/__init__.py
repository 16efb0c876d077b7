"""bridge's way to its upstream apps: an HTTP/1.1 client on llhttp (httptools) with a keep-alive
pool per origin and the WebSocket Upgrade (`pool`, over `connection`, `attempt`, `response`,
`idle`, `tunnel`), and the header rewriting a reverse proxy owes both sides (`headers`).
"""

from __future__ import annotations

from .errors import UpstreamError, UpstreamTimeout, UpstreamUnreachable
from .headers import HOP_BY_HOP, forward_request_headers, response_headers, strip_hop_by_hop
from .pool import Upgrade, UpstreamPool
from .response import UpstreamResponse
from .tunnel import Tunnel

__all__ = [
    "HOP_BY_HOP",
    "Tunnel",
    "Upgrade",
    "UpstreamError",
    "UpstreamPool",
    "UpstreamResponse",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "forward_request_headers",
    "response_headers",
    "strip_hop_by_hop",
]
