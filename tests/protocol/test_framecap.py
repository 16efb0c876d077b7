"""`FrameCap`: `limit` frames per window pass, the next one within the window is over, and
a new window starts afresh."""

from __future__ import annotations

from bridge.protocol.framecap import FrameCap


def test_cap_counts_per_window() -> None:
    now = [100.0]
    cap = FrameCap(3, 10.0, clock=lambda: now[0])
    assert [cap.over() for _ in range(3)] == [False] * 3
    assert cap.over()
    now[0] += 10.0  # the window is over: counting starts again
    assert [cap.over() for _ in range(3)] == [False] * 3
    assert cap.over()
