"""Request-line edges over real sockets: absolute-form targets (RFC 9112 §3.2.2), and what the
clear-text listener answers to a broken HTTP/2 preface or to bytes that are not HTTP at all.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hyperframe.frame import Frame, GoAwayFrame

from tests.support.harness import config_text, raw_exchange, run, running_bridge
from tests.support.origin import Origin

ROUTES = """\
routes:
  - path: /{rest*}
    upstream: app
"""


def test_absolute_form_target_is_routed_by_its_path(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                raw = await raw_exchange(
                    b.ports["http"],
                    b"GET http://front.test:8080/echo?x=1 HTTP/1.1\r\nHost: other.test\r\n"
                    b"Connection: close\r\n\r\n",
                )
        head, _, payload = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), raw[:200]
        seen = json.loads(payload)
        assert seen["target"] == "/echo?x=1"
        fields = dict(seen["headers"])
        assert fields["x-forwarded-host"] == "front.test:8080"  # the target's, not Host's
        assert "other.test" not in payload.decode()

    run(body())


def _frames(data: bytes) -> list[Frame]:
    frames = []
    for _ in range(100):  # bounded: one frame per iteration
        if len(data) < 9:
            break
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames


def test_broken_h2_preface_gets_goaway_protocol_error(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                raw = await raw_exchange(
                    b.ports["http"], b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n\x00\x00\x00\x04\x00"
                )
                # and the listener goes on serving
                ok = await raw_exchange(
                    b.ports["http"], b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                )
        assert not raw.startswith(b"HTTP/1.1"), raw[:100]
        goaways = [f for f in _frames(raw) if isinstance(f, GoAwayFrame)]
        assert [g.error_code for g in goaways] == [1]  # PROTOCOL_ERROR
        assert goaways[0].additional_data == b"invalid connection preface"
        assert ok.startswith(b"HTTP/1.1 200 ")

    run(body())


@pytest.mark.parametrize(
    "preface",
    [b"INVALID CONNECTION PREFACE\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n"],
    ids=["h2spec-3.5-2", "preface-line"],
)
def test_an_invalid_preface_on_the_clear_port_gets_settings_and_goaway(
    certs: Path, preface: bytes
) -> None:
    """h2spec 3.5 #2 on the listener that serves HTTP/1.1 and h2c together: what has the
    preface's shape (a line naming no HTTP version, then an empty line) is an HTTP/2 client's
    broken preface, answered as on TLS (RFC 9113 §3.4), not with an HTTP/1.1 400."""

    async def body() -> None:
        async with Origin() as origin:
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                raw = await raw_exchange(b.ports["http"], preface)
                ok = await raw_exchange(
                    b.ports["http"], b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                )
        assert not raw.startswith(b"HTTP/1.1"), raw[:100]
        frames = _frames(raw)
        assert frames and frames[0].type == 0x4  # our SETTINGS first
        goaways = [f for f in frames if isinstance(f, GoAwayFrame)]
        assert [(g.error_code, g.last_stream_id) for g in goaways] == [(1, 0)]  # PROTOCOL_ERROR
        assert ok.startswith(b"HTTP/1.1 200 ")

    run(body())


def test_not_http_gets_a_plain_400_without_internals(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            text = config_text(ROUTES, upstream_url=origin.url, certs=certs)
            async with running_bridge(text, certs) as b:
                # A line naming no HTTP version, with a field after it: not an HTTP/2 preface
                # (test_an_invalid_preface_on_the_clear_port_gets_settings_and_goaway).
                raw = await raw_exchange(b.ports["http"], b"NOT HTTP AT ALL\r\nX: y\r\n\r\n")
        head, _, payload = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 ")
        assert payload.startswith(b"400 ")
        for internal in (b"bytearray", b"b'", b"Error(", b"Traceback"):
            assert internal not in payload, payload

    run(body())
