"""The seam between a stream's single writer (the hub's `Poller`) and its readers (`Channel`s):
the `Broker` protocol and the `Record`s and `Status`es that cross it.

A `Poller` publishes plain `Record`s — no rendered bytes, no subscriber state — and poll
`Status`es through a `Broker`; every process's `Channel` for that key receives them, turns each
record into an `Item` and renders it for its own subscribers (rendered bytes never cross
processes). The broker also decides who writes: `lease` is granted to one poller per key.

- `LocalBroker` (`local.py`): one process. Delivery is a synchronous call, the lease is always
  granted, there is no interest elsewhere: the figures of the fused channel it replaced.
- `RedisBroker` (`redis.py`): a cluster. Records go through Redis Streams,
  the lease is a `SET NX PX` key, interest is a counter per key with a TTL.

Besides the per-key traffic, a broker carries `Notice`s (an app's "this changed") to every
process, so the one that leads the stream acts on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Record:
    """One change of a stream as the poller saw it, in a form that can cross processes.

    `prev` is the id of the record this one follows (None for the first state a poller knew
    nothing before): a reader whose latest id differs has missed something, and treats the
    record as a reset instead of replaying across the hole.
    """

    id: str
    event: str
    data: bytes
    state: bytes | None  # the whole body after the change; None when it is `data` itself
    content_type: str
    prev: str | None


@dataclass(frozen=True, slots=True)
class Status:
    """The outcome of a poll, told to every reader: plain GETs and new subscribers waiting for
    a first state must learn that the upstream failed, and how, whichever process polled it.

    `detail` is for the log and /streams. A failure also carries what a client may be told:
    `code`, the upstream's own status when it answered (401, 404, 500, ...), else 502 (could
    not reach it, or its answer was unusable) or 504 (it did not answer in time); `cause`,
    one line naming no address; `challenge`, the upstream's `WWW-Authenticate`, if any.
    """

    ok: bool
    detail: str = ""
    code: int = 0
    cause: str = ""
    challenge: str = ""

    @property
    def refusal(self) -> bool:
        """A 4xx: the upstream refused the request, which is the requester's business."""
        return 400 <= self.code < 500


@dataclass(frozen=True, slots=True)
class Notice:
    """An app's "this changed" for the channels of a stream route, to every process: the
    process that leads such a channel polls it now, or, with `data`, makes `data` its next
    state without a poll (`bridge.hub.notify`). Route and parameters, not stream keys, because
    the process that took the notify may have none of the channels (nor their `vary` values)."""

    route: str  # the route template, e.g. "/prices/{symbol}"
    params: tuple[tuple[str, str], ...] | None  # the path's parameters; None: the whole route
    data: bytes | None = None  # the next state (always UTF-8: it came as JSON)
    content_type: str = ""  # of `data`


class Listener(Protocol):
    """Implemented by `Channel`: what a broker delivers to the readers of one key."""

    def on_history(self, records: Sequence[Record]) -> None:
        """Called once per `subscribe`, before any `on_record`: the key's stored records, oldest
        first (possibly none, e.g. when the store is unreachable)."""

    def on_record(self, record: Record) -> None:
        """A new record, in order; may repeat one already delivered (the reader dedupes)."""

    def on_status(self, status: Status) -> None: ...


class Lease(Protocol):
    """Leadership of one key. `hold` runs the poller for as long as the lease is held and
    returns (the poller cancelled) once it is lost or released."""

    async def hold(self, work: Callable[[], Awaitable[None]]) -> None: ...


class Broker(Protocol):
    def subscribe(self, key: str, listener: Listener, history: int) -> None:
        """Deliver the key's last `history` records (`on_history`, maybe later) and then every
        new record to `listener`, until `unsubscribe`. `history` also bounds what the broker
        stores for the key."""

    def unsubscribe(self, key: str, listener: Listener) -> None: ...

    async def publish(self, key: str, record: Record) -> None:
        """Publish one record (called by the key's leader only). Raises if it could not be
        published: the poller then keeps its old state and detects the change again."""

    def report(self, key: str, status: Status) -> None:
        """A poll outcome (failures, and the return to success). Best effort."""

    async def lease(self, key: str, listener: Listener) -> Lease:
        """Wait (unbounded, cancellable) until this process leads `key`. Before it returns,
        `listener` has every record published so far (a new poller continues from there)."""

    async def interest_elsewhere(self, key: str) -> int:
        """How many other processes still want `key` polled (0 when unknown)."""

    def on_notice(self, listener: Callable[[Notice], None]) -> None:
        """Call `listener` with every notice any process sends (this one's included)."""

    def notify(self, notice: Notice) -> bool:
        """Send `notice` to every process: this one's listener at once, the others' soon (best
        effort: the interval poll is the safety net). False if it was dropped, having too
        many notices in flight."""

    async def close(self) -> None: ...
