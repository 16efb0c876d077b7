"""`ExchangeHost`: what an exchange and its connection need from the process that serves them.

The server's `ServerContext` is the one implementation; keeping the exchange's view this small
is what lets `stream/` sit below `server/` instead of importing it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .exchange import Exchange

# What answers an exchange: the router, the admin handler, a test's function.
Handler = Callable[["Exchange"], Awaitable[None]]


class ExchangeHost(Protocol):
    @property
    def shutting_down(self) -> bool:
        """No new exchange starts (a graceful stop is under way)."""

    def run_exchange(self, exchange: Exchange) -> Coroutine[Any, Any, None]:
        """Run the handler on `exchange`: the top of its task, where every failure ends."""

    def finish_exchange(self, exchange: Exchange) -> None:
        """The exchange is over (its handler returned, or its detached stream ended): count
        it, log it, tell its connection and release it."""
