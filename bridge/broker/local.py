"""`LocalBroker`: the `Broker` of a single process. Delivery is a synchronous call, the lease
is always granted, there is no interest elsewhere: the figures of the fused channel it replaced.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .base import Lease, Listener, Notice, Record, Status


class _LocalLease:
    async def hold(self, work: Callable[[], Awaitable[None]]) -> None:
        await work()


_LEASE = _LocalLease()


class LocalBroker:
    """One process: records go straight to the channel, synchronously (no task, no copy)."""

    def __init__(self) -> None:
        self._listeners: dict[str, Listener] = {}
        self._notices: Callable[[Notice], None] | None = None

    def subscribe(self, key: str, listener: Listener, history: int) -> None:
        self._listeners[key] = listener
        listener.on_history(())  # history lives in the channel itself

    def unsubscribe(self, key: str, listener: Listener) -> None:
        if self._listeners.get(key) is listener:
            del self._listeners[key]

    async def publish(self, key: str, record: Record) -> None:
        listener = self._listeners.get(key)
        if listener is not None:
            listener.on_record(record)

    def report(self, key: str, status: Status) -> None:
        listener = self._listeners.get(key)
        if listener is not None:
            listener.on_status(status)

    async def lease(self, key: str, listener: Listener) -> Lease:
        return _LEASE

    async def interest_elsewhere(self, key: str) -> int:
        return 0

    def on_notice(self, listener: Callable[[Notice], None]) -> None:
        self._notices = listener

    def notify(self, notice: Notice) -> bool:
        if self._notices is not None:
            self._notices(notice)  # the only process: delivered in-process, at once
        return True

    async def close(self) -> None:
        self._listeners.clear()
