"""Which stream a channel is: a `ChannelSpec` (route, path parameters, `vary` values) and the
stream key every process derives from it.

A stream key is a digest of what the upstream sees (origin, filled-in poll target, values of
the route's `vary` headers) and of the rest of the stream's settings: subscribers with the
same key share one channel and so one upstream poller, in this process and, through a cluster
broker, in every process (docs/configuration.md "One upstream poll per stream").
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field

from ..events import Headers
from ..routing.model import Route, StreamSpec
from ..routing.paths import substitute
from ..upstream.headers import HOP_BY_HOP

# Fields a subscriber can never set on the poll, even when `vary` names them: framing and
# hop-by-hop fields would break the GET, and the conditional ones belong to the poller's own
# change detection.
NOT_FORWARDED = HOP_BY_HOP | {
    b"content-length",
    b"expect",
    b"if-match",
    b"if-none-match",
    b"if-modified-since",
    b"if-unmodified-since",
    b"if-range",
    b"range",
}


def vary_headers(spec: StreamSpec, headers: Headers) -> Headers:
    """The subscriber's values of the route's `vary` headers, in `vary` order: the only part of
    a subscriber's request that ever reaches the upstream, and part of the stream key."""
    if not spec.vary:
        return []
    chosen: Headers = []
    for name in spec.vary:
        wanted = name.encode("latin-1")
        if wanted not in NOT_FORWARDED:
            chosen += [(n, v) for n, v in headers if n == wanted]
    return chosen


@functools.lru_cache(maxsize=1024)
def _settings_text(spec: StreamSpec) -> tuple[str, str]:
    """What `stream_key` digests before and after the target and vary values: the same for
    every subscriber of a route, so formatted once per stream spec, not per subscription.
    Joined, the pieces are exactly the repr of the whole tuple, so the keys stay what every
    process of an older version computes too."""
    upstream = spec.upstream
    longpoll = spec.longpoll
    mode = f"every={spec.every}" if longpoll is None else repr(longpoll)
    before = (upstream.scheme, upstream.host, upstream.port, upstream.base_path)
    after = (spec.emit, spec.event, mode, spec.history, spec.heartbeat)
    return repr(before)[:-1] + ", ", ", " + repr(after)[1:]


def stream_key(spec: StreamSpec, target: str, vary: Headers) -> str:
    """The key every process agrees on: a digest of what the upstream sees (origin, filled-in
    poll target, vary values) and of the rest of the stream's settings (emit, event, poll
    mode, history, heartbeat), so two routes polling the same URL share a channel only if it
    would behave the same for both. Not the route's index: processes may order their routes
    differently during a rolling config change. A digest, because vary values may be per-user
    secrets and the key goes to Redis."""
    before, after = _settings_text(spec)
    what = before + repr(target) + ", " + repr(tuple(vary)) + after
    return hashlib.sha256(what.encode("utf-8", "surrogateescape")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One stream: a stream route, the request's path parameters and `vary` values; the rest
    (its `stream:` block, poll target, key, a name for logs) follows from them, once."""

    route: Route
    params: dict[str, str]
    vary: Headers
    stream: StreamSpec = field(init=False)
    target: str = field(init=False)  # the poll target, parameters filled in
    key: str = field(init=False)
    name: str = field(init=False)  # for log lines

    def __post_init__(self) -> None:
        stream = self.route.stream
        if stream is None:
            raise ValueError(f"route {self.route.path} has no stream")
        if (stream.every is None) == (stream.longpoll is None):
            raise ValueError(f"route {self.route.path}: exactly one of every and longpoll")
        target = substitute(stream.poll, self.params)
        # Frozen: the derived fields are set once, here.
        object.__setattr__(self, "stream", stream)
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "key", stream_key(stream, target, self.vary))
        object.__setattr__(self, "name", f"{self.route.path} ({stream.upstream.name} {target})")
