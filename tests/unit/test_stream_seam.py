"""The stream seam: an `Exchange` reaches its connection through a `StreamPort` and the process
through an `ExchangeHost`, and nothing else. A fake of each (no server, no handler) is enough to
drive one, and `ServerContext` is such a host: it fills and reads the exchange's
`AccessRecord`, the only place the access log and the request tally look."""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.accesslog import AccessEntry
from bridge.events import EndBody, Event, Request, Response
from bridge.server.context import ServerContext
from bridge.settings import Limits
from bridge.stream.exchange import Exchange
from bridge.stream.host import ExchangeHost
from bridge.stream.port import HotPath, StreamPort

REQUEST = Request(1, "GET", "/s/A", "example.test", "https", [(b"x-request-id", b"abc-123")], "2")


class Host:
    """An `ExchangeHost` that only records what it is told."""

    def __init__(self) -> None:
        self.shutting_down = False
        self.finished: list[Exchange] = []

    async def run_exchange(self, exchange: Exchange) -> None:
        raise AssertionError("not started here")

    def finish_exchange(self, exchange: Exchange) -> None:
        self.finished.append(exchange)


class Port:
    """A `StreamPort` on no connection: it keeps the events it is handed."""

    multiplexed = True

    def __init__(self, ctx: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.ctx = ctx
        self.client_ip = "192.0.2.7"
        self.body_timeout = 1.0
        self.sent: list[Event] = []
        self.done: list[Exchange] = []

    def send(self, event: Event) -> None:
        self.sent.append(event)

    def send_all(self, events: list[Event]) -> None:
        self.sent += events

    def write_prerendered(self, stream_id: int, data: bytes, *, framed: bool = False) -> None:
        raise AssertionError("no hot path here")

    def hot_path(self, stream_id: int, *, tunnel: bool) -> HotPath:
        raise AssertionError("no hot path here")

    def buffered(self, stream_id: int) -> int:
        return 0

    def congested(self, stream_id: int) -> bool:
        return False

    def acknowledge(self, stream_id: int, size: int) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def can_push(self) -> bool:
        return False

    def is_tunnel(self, stream_id: int) -> bool:
        return False

    def long_lived(self) -> None:
        pass

    def exchange_done(self, exchange: Exchange) -> None:
        self.done.append(exchange)

    def flush(self) -> None:
        pass


def test_the_fakes_are_what_the_seam_asks_for() -> None:
    async def main() -> None:
        host: ExchangeHost = Host()
        port: StreamPort = Port(host, asyncio.get_running_loop())
        assert port.ctx is host

    asyncio.run(main())


def test_a_detached_stream_that_ends_is_finished_by_its_host() -> None:
    async def main() -> None:
        host = Host()
        port = Port(host, asyncio.get_running_loop())
        exchange = Exchange(port, REQUEST)
        cleaned: list[str] = []
        exchange.start_response(200, [])
        exchange.detach(lambda: cleaned.append("cleanup"))
        assert exchange.handler_finished() is False  # the stream lives on without its task
        exchange.end_detached()
        assert cleaned == ["cleanup"]
        assert host.finished == [exchange]  # once, through the host: nothing else is known
        assert isinstance(port.sent[0], Response) and isinstance(port.sent[-1], EndBody)

    asyncio.run(main())


def test_the_access_record_travels_with_the_exchange_to_the_log_and_the_tally() -> None:
    entries: list[AccessEntry] = []

    class Log:
        def log(self, entry: AccessEntry) -> None:
            entries.append(entry)

    async def handler(exchange: Exchange) -> None:
        assert exchange.access.request_id == "abc-123"  # set before the handler runs
        exchange.access.route = "/s/{sym}"
        exchange.access.kind = "sse"
        exchange.access.events = 3
        exchange.access.note = "ended"
        exchange.respond_now(200, [], b"hi")

    async def main() -> None:
        ctx = ServerContext(limits=Limits(), handler=handler, access_log=Log())  # type: ignore[arg-type]
        port = Port(ctx, asyncio.get_running_loop())
        exchange = Exchange(port, REQUEST)
        await ctx.run_exchange(exchange)
        assert port.done == [exchange]
        [entry] = entries
        assert (entry.route, entry.kind, entry.events, entry.note) == (
            "/s/{sym}",
            "sse",
            3,
            "ended",
        )
        assert (entry.request_id, entry.status, entry.bytes_sent) == ("abc-123", 200, 2)
        assert entry.time == exchange.access.started and exchange.access.logged
        assert ctx.tally.requests == {("/s/{sym}", "sse", "2xx"): 1}
        ctx.log_exchange(exchange)  # logged once, however often asked
        assert len(entries) == 1

    asyncio.run(main())
