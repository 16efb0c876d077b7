"""`Framing`: how a protocol wraps pre-rendered stream bytes, when every connection wraps alike.

The fan-out writes one rendered event to thousands of streams. Framing it for the wire is the
protocol adapter's job (an HTTP/1.1 chunk, an HTTP/2 or HTTP/3 DATA frame), but where the
framing does not depend on the connection or the stream (an HTTP/1.1 chunk is the same bytes on
every connection) it is worth doing once per event rather than once per subscriber: the hub
caches the framed bytes beside the rendering (`Item.render(slot)`), without knowing what the
framing is. Per-stream framings (HTTP/2 and HTTP/3 DATA carry the stream id) are done by the
adapter on each write, and use `UNFRAMED` here.

Adapters register their shared framings at import time; there are only ever a handful, so a
framing's `index` can address a small fixed list in every item.
"""

from __future__ import annotations

from collections.abc import Callable

MAX_FRAMINGS = 4


class Framing:
    __slots__ = ("frame", "index", "name")

    def __init__(self, index: int, name: str, frame: Callable[[bytes], bytes]) -> None:
        self.index = index
        self.name = name
        self.frame = frame

    def __repr__(self) -> str:
        return f"<Framing {self.name}>"


def _unframed(data: bytes) -> bytes:
    return data


UNFRAMED = Framing(0, "unframed", _unframed)
FRAMINGS: list[Framing] = [UNFRAMED]


def register(name: str, frame: Callable[[bytes], bytes]) -> Framing:
    """A new shared framing (adapters call this once, at import)."""
    if len(FRAMINGS) >= MAX_FRAMINGS:
        raise RuntimeError(f"more than {MAX_FRAMINGS} shared framings")
    framing = Framing(len(FRAMINGS), name, frame)
    FRAMINGS.append(framing)
    return framing
