"""Issue 13 end to end: each hardening bound over real sockets and real TLS, with an honest
client beside the attacker that keeps being served. Raw h2 frames (h2's client state machine
or hand-built frames), raw WebSocket frames (wsproto), a real loopback origin.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import h2.errors
from hyperframe.frame import HeadersFrame

from tests.e2e.test_front_door import (
    ROUTES,
    RawH2,
    parse_frames,
    read_until_closed,
    still_serving,
)
from tests.support.harness import config_text, run, running_bridge
from tests.support.origin import Origin
from tests.support.subscribers import ws_http1

STREAM_ROUTES = """\
routes:
  - path: /prices/{symbol}
    stream:
      upstream: app
      poll: /api/price?s={symbol}
      every: 200ms
      send: /api/orders
  - path: /{rest*}
    upstream: app
"""


def goaway_codes(data: bytes) -> list[int]:
    """The error code of every GOAWAY frame (type 0x7) in raw HTTP/2 bytes."""
    return [int.from_bytes(p[4:8], "big") for kind, p in parse_frames(data) if kind == 0x7]


# --- item 9: HPACK table-size update beyond the limit ----------------------------------------


def test_hpack_table_size_update_beyond_limit_is_compression_error(certs: Path) -> None:
    async def body() -> None:
        async with (
            Origin() as origin,
            running_bridge(config_text(ROUTES, upstream_url=origin.url, certs=certs), certs) as b,
        ):
            client = await RawH2.open(b)
            try:
                await client.read_events()  # the server's SETTINGS first
                # RFC 7541 §6.3: a dynamic table size update, 001xxxxx with a 5-bit prefix
                # integer: 31 + 0xE1 0x3F → 31 + 97 + 63*128 = 8192, twice our 4096 default.
                block = b"\x3f\xe1\x3f" + client.conn.encoder.encode(
                    client.request_headers("/echo")
                )
                frame = HeadersFrame(1, data=block, flags=["END_HEADERS", "END_STREAM"])
                await client.write_raw(frame.serialize())
                data = await read_until_closed(client.reader)
            finally:
                client.close()
            codes = goaway_codes(data)
            assert codes, parse_frames(data)
            assert codes[-1] == h2.errors.ErrorCodes.COMPRESSION_ERROR
            await still_serving(b)

    run(body())


# --- item 7: an empty `send:` answer ----------------------------------------------------------


def test_empty_2xx_send_answer_is_an_empty_message_204_is_none(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})

            async def orders(request):  # type: ignore[no-untyped-def]
                if request.body.startswith(b"nothing"):
                    return 204, [], b""
                if request.body.startswith(b"mark"):
                    return 200, [], request.body
                return 200, [], b""  # an echo of an empty message

            origin.route("/api/orders", orders)
            async with running_bridge(
                config_text(STREAM_ROUTES, upstream_url=origin.url, certs=certs), certs
            ) as b:
                url = f"wss://localhost:{b.ports['https']}/prices/A"
                async with ws_http1(url, b.client_ssl(("http/1.1",))) as sub:
                    await sub.next_event()
                    await sub.ws.send("")
                    await sub.ws.send(b"")
                    await sub.ws.send("nothing")  # 204: no answer
                    await sub.ws.send("mark")
                    answers = []
                    for _ in range(50):
                        message = await asyncio.wait_for(sub.raw.get(), 5)
                        if message == "mark":
                            break
                        if message in ("", b"") or "nothing" in str(message):
                            answers.append(message)
                    assert answers == ["", b""]

    run(body())
