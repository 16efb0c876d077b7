"""The broker: how a stream's records travel from its one poller to every process's channel.

`base` is the seam (`Broker`, `Lease`, `Listener`, and the `Record`s and `Status`es that cross
it); `local` is the single-process broker; `redis` the cluster one (imported only when
routes.yaml configures `broker:`, so the Redis client stays optional at import time). Nothing
here knows the hub: the hub's channels are `Listener`s, its pollers publish through a `Broker`.
"""

from __future__ import annotations

from .base import Broker, Lease, Listener, Notice, Record, Status
from .local import LocalBroker

__all__ = ["Broker", "Lease", "Listener", "LocalBroker", "Notice", "Record", "Status"]
