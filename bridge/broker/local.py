"""`LocalBroker`: the `Broker` of a single process. Delivery is a synchronous call, the lease
is always granted, there is no interest elsewhere: the figures of the fused channel it replaced.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .base import Lease, Listener, Record, Status


class _LocalLease:
    async def hold(self, work: Callable[[], Awaitable[None]]) -> None:
        await work()


_LEASE = _LocalLease()


class LocalBroker:
    """One process: records go straight to the channel, synchronously (no task, no copy)."""

    def __init__(self) -> None:
        self._listeners: dict[str, Listener] = {}

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

    async def close(self) -> None:
        self._listeners.clear()
