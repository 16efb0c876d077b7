"""`HubContext`: the process parts every channel and poller of one hub share.

A channel or a poller is built from what differs per stream (its `ChannelSpec`, its
`PollTarget`) plus this one frozen object, so their constructors name only the former. The
hub builds it; a reload that brings new `limits:` gives the hub a new context, and channels
live before the reload keep the one they were made with (as they kept their limits before).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ..broker import Broker
from ..events import Headers
from ..routing.model import Upstream
from ..settings import Limits
from .clock import Clock


class Fetcher(Protocol):
    """Implemented by `bridge.upstream.pool.UpstreamPool`."""

    async def fetch(
        self, upstream: Upstream, target: str, headers: Headers, *, timeout: float, max_bytes: int
    ) -> tuple[int, Headers, bytes]: ...


class Epochs:
    """The epochs of this process's ids: wall-clock milliseconds, but strictly above any epoch
    handed out before, so ids keep growing in this process even if the wall clock steps back."""

    __slots__ = ("_clock", "_last")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._last = 0

    def next(self) -> int:
        epoch = max(int(self._clock.wall() * 1000), self._last + 1)
        self._last = epoch
        return epoch


@dataclass(frozen=True, slots=True)
class HubContext:
    fetcher: Fetcher  # the upstream, for the pollers
    clock: Clock  # every timer and timestamp of the hub
    limits: Limits
    broker: Broker
    log: logging.Logger
    rng: random.Random  # every jitter of the hub, seedable in tests
    epoch: Callable[[], int]  # a new id epoch (`Epochs.next`)
