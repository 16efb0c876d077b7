"""`ResponseReader` (upstream answers on llhttp) fed raw bytes, whole and one byte at a time.

The cases are the ones llhttp cannot decide alone: HEAD answers, close-delimited bodies, a
101 and its first tunnel bytes, bytes after an answer, a head sent in drips past the limit,
and an error that arrives in the same read as a good head.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge import settings
from bridge.upstream import reader as wire

modes = pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])


def _events(r: wire.ResponseReader, data: bytes, bytewise: bool) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for piece in pieces:
        r.feed(piece)
        while (event := r.next()) is not wire.NEED_DATA:
            out.append(event)
    return out


def _body(events: list[tuple[Any, ...]]) -> bytes:
    return b"".join(e[1] for e in events if e[0] == wire.DATA)


@modes
def test_head_answer_has_no_body_and_later_bytes_are_stray(bytewise: bool) -> None:
    r = wire.ResponseReader()
    r.begin("HEAD")
    events = _events(r, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", bytewise)
    assert [e[0] for e in events] == [wire.HEAD, wire.END]
    assert r.complete and r.keep_alive and not r.stray
    _events(r, b"hello", bytewise)  # llhttp would have taken these as the body
    assert r.stray
    r.begin("GET")  # a fresh parser after a HEAD answer
    events = _events(r, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", bytewise)
    assert _body(events) == b"ok" and events[-1] == (wire.END,)


@modes
def test_close_delimited_body_ends_at_eof(bytewise: bool) -> None:
    r = wire.ResponseReader()
    events = _events(r, b"HTTP/1.0 200 OK\r\n\r\nuntil the end", bytewise)
    assert events[0][:2] == (wire.HEAD, 200) and events[0][4] == "1.0"
    assert not r.complete and not r.keep_alive
    r.feed_eof()
    assert r.next() == (wire.END,)
    assert _body(events) == b"until the end"


def test_eof_mid_body_is_an_error() -> None:
    r = wire.ResponseReader()
    _events(r, b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", False)
    with pytest.raises(wire.ResponseError) as caught:
        r.feed_eof()
    assert caught.value.eof


@modes
def test_101_hands_over_the_bytes_after_the_head(bytewise: bool) -> None:
    r = wire.ResponseReader()
    r.begin("GET", upgrade=True)
    head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    if bytewise:
        _events(r, head, True)
        assert r.switched
    else:
        events = _events(r, head + b"\x81\x02hi", False)
        assert events[0][:2] == (wire.HEAD, 101)
        assert r.rest == b"\x81\x02hi"


def test_101_without_asking_is_an_error() -> None:
    r = wire.ResponseReader()
    r.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
    with pytest.raises(wire.ResponseError):
        r.next()


def test_a_head_in_drips_is_cut_off() -> None:
    r = wire.ResponseReader()
    r.feed(b"HTTP/1.1 200 OK\r\nX-Big: ")
    with pytest.raises(wire.ResponseError, match="too large"):
        for _ in range(settings.MAX_HEADER_BYTES // 1024 + 2):
            r.feed(b"a" * 1024)
            r.next()


def test_error_after_a_good_head_comes_after_the_head() -> None:
    r = wire.ResponseReader()
    r.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n")
    assert r.next()[:2] == (wire.HEAD, 200)
    assert r.next() == (wire.DATA, b"abc")
    with pytest.raises(wire.ResponseError):
        r.next()


@modes
def test_informational_then_final_and_trailers(bytewise: bool) -> None:
    r = wire.ResponseReader()
    events = _events(
        r,
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\nok\r\n0\r\nX-Trailer: 1\r\n\r\n",
        bytewise,
    )
    assert events[0] == (wire.INFO, 103, [(b"link", b"</a.css>")])
    assert events[1][:2] == (wire.HEAD, 200)
    assert all(n != b"x-trailer" for n, _ in events[1][3])
    assert _body(events) == b"ok" and events[-1] == (wire.END,)
    assert r.complete and not r.stray


def test_request_head_refuses_injection() -> None:
    assert wire.request_head("GET", "/a", [(b"host", b"x")]) == (
        b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n"
    )
    for method, target, headers in [
        ("GET", "/a b", []),
        ("GET /", "/", []),
        ("GET", "/", [(b"x", b"1\r\nevil: 1")]),
        ("GET", "/é", []),
    ]:
        with pytest.raises((ValueError, UnicodeError)):
            wire.request_head(method, target, headers)


def test_a_closed_upstream_connection_is_freed_without_the_cycle_collector() -> None:
    import gc

    from bridge.upstream.connection import Connection

    loop = asyncio.new_event_loop()
    gc.collect()
    gc.disable()
    try:
        for _ in range(20):
            conn = Connection(("http", "127.0.0.1", 1), loop)
            conn.reader.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            conn.close()
            del conn
        assert gc.collect() == 0
    finally:
        gc.enable()
        loop.close()
