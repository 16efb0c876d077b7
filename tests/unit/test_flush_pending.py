"""ServerContext's end-of-iteration writes: every connection queued in a loop iteration is
written once, at the end of it, even when another connection's write fails."""

from __future__ import annotations

import asyncio

from bridge.server.context import ServerContext
from bridge.settings import Limits


class Conn:
    def __init__(self, ctx: ServerContext, log: list[str], name: str, *, fails: bool = False):
        self.ctx, self.log, self.name, self.fails = ctx, log, name, fails

    def write_later(self) -> None:
        if self.ctx.flush_later(self):
            asyncio.get_running_loop().call_soon(self.ctx.flush_pending)

    def deferred_flush(self) -> None:
        self.log.append(self.name)
        if self.fails:
            raise OSError("gone")


async def _nothing(exchange: object) -> None:
    return None


def test_queued_connections_write_at_the_end_of_the_iteration_and_one_failure_spares_the_rest() -> (
    None
):
    async def main() -> None:
        ctx = ServerContext(limits=Limits(), handler=_nothing, access_log=None)
        log: list[str] = []
        a, b, c = (Conn(ctx, log, n, fails=n == "a") for n in "abc")
        for conn in (a, b, c):
            conn.write_later()
        assert log == []  # nothing before the iteration ends
        await asyncio.sleep(0)
        assert log == ["a", "b", "c"]
        # The next iteration starts a new batch, with its own callback.
        b.write_later()
        await asyncio.sleep(0)
        assert log == ["a", "b", "c", "b"]

    asyncio.run(main())
