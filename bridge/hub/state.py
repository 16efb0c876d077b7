"""The two state machines of a channel, each an enum with its transitions here and nowhere else.

- `Lifetime` is the channel's own: `NEW` (made, nothing running) → `JOINING` (running; the
  broker has not yet delivered the key's stored history, so subscribers wait to be welcomed)
  → `LIVE` (fanning out) → `STOPPED` (for good). A restart (a reload changed how the stream
  polls) keeps the lifetime where it is.
- `Health` is the upstream's, as the broker reports it: `STARTING` (no answer yet) →
  `POLLING` (the last poll succeeded) ⇄ `BACKOFF` (the last one failed; waiting to retry).
  A restart starts over at `STARTING`.

`/streams` shows one word for both (`Channel.state`): the health, or `stopped`.
"""

from __future__ import annotations

import enum


class Lifetime(enum.Enum):
    NEW = "new"
    JOINING = "joining"
    LIVE = "live"
    STOPPED = "stopped"

    def started(self) -> Lifetime:
        """The first interest: run. Only a new channel starts; anything else stays as it is."""
        return Lifetime.JOINING if self is Lifetime.NEW else self

    def joined(self) -> Lifetime:
        """The broker delivered the history: fan out from now on (a stopped channel stays)."""
        return self if self is Lifetime.STOPPED else Lifetime.LIVE

    def stopped(self) -> Lifetime:
        return Lifetime.STOPPED


class Health(enum.Enum):
    STARTING = "starting"
    POLLING = "polling"
    BACKOFF = "backoff"

    def on_record(self) -> Health:
        """A record arrived: the upstream answered (a failure reported since still stands)."""
        return Health.POLLING if self is Health.STARTING else self

    def on_status(self, ok: bool) -> Health:
        return Health.POLLING if ok else Health.BACKOFF

    def restarted(self) -> Health:
        return Health.STARTING
