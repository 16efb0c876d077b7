"""Held long-poll GETs on a virtual clock: answered at their deadline (earliest first), when a
new state passes their cursor, or when the channel closes; a client that left is never
answered; and what "passed" means for numeric and opaque cursors."""

from __future__ import annotations

import asyncio

import pytest

from bridge.hub.clock import VirtualClock
from bridge.hub.waiters import Waiters, cursor_of, cursor_passed
from tests.unit.hubfakes import run


class Log:
    def __init__(self) -> None:
        self.answered: list[str] = []
        self.over: list[str] = []

    def answer(self, name: str) -> object:
        return lambda: self.answered.append(name)

    def ended(self, name: str) -> object:
        return lambda: self.over.append(name)


def test_deadlines_changes_cancels_and_close() -> None:
    async def body() -> None:
        clock = VirtualClock()
        waiters = Waiters(clock)
        log = Log()

        def hold(name: str, since: str, timeout: float):  # type: ignore[no-untyped-def]
            return waiters.hold(since, timeout, log.answer(name), log.ended(name))  # type: ignore[arg-type]

        hold("slow", "5", 30)
        hold("fast", "5", 10)
        gone = hold("gone", "5", 5)
        hold("ahead", "9", 60)
        assert waiters.count == 4 and len(waiters.tasks()) == 1  # one timer for all
        gone.cancel()
        assert log.over == ["gone"] and waiters.count == 3
        await clock.advance(10)
        assert log.answered == ["fast"]
        # A new state at cursor 7: those at 5 have news, the one at 9 does not.
        waiters.changed(lambda since: cursor_passed("7", since))
        assert log.answered == ["fast", "slow"]
        assert waiters.count == 1
        waiters.close()  # the channel stops: the rest is answered now
        assert log.answered == ["fast", "slow", "ahead"]
        assert log.over == ["gone", "fast", "slow", "ahead"]
        assert waiters.count == 0
        await clock.advance(100)
        assert log.answered == ["fast", "slow", "ahead"]  # never twice, never "gone"

    run(body)


def test_clients_that_leave_do_not_pile_up() -> None:
    async def body() -> None:
        clock = VirtualClock()
        waiters = Waiters(clock)
        for _ in range(10_000):
            waiters.hold("1", 30, lambda: None, lambda: None).cancel()
        assert waiters.count == 0
        assert len(waiters._deadlines) <= 64 + 2  # compacted as they left
        await clock.advance(31)
        await asyncio.sleep(0)
        assert waiters.tasks() == []  # the timer ends with nothing held

    run(body)


@pytest.mark.parametrize(
    ("cursor", "since", "passed"),
    [
        ("42", "41", True),
        ("41", "41", False),
        ("41", "50", False),  # a client ahead of us (the app restarted): wait
        ("41.5", "41", True),
        ('"abc"', '"abc"', False),
        ("tok-2", "tok-1", True),  # opaque: passed once it differs
        ("tok-1", "tok-1", False),
        (None, "1", False),  # no cursor in the state: nothing to tell
    ],
)
def test_cursor_passed(cursor: str | None, since: str, passed: bool) -> None:
    assert cursor_passed(cursor, since) is passed


def test_cursor_of_reads_the_dotted_path_like_the_poller() -> None:
    assert cursor_of(b'{"meta": {"seq": 41}}', "meta.seq") == "41"
    assert cursor_of(b'{"items": [{"id": "x"}]}', "items.0.id") == "x"
    assert cursor_of(b"not json", "seq") is None
    assert cursor_of(b'{"seq": null}', "seq") is None
