"""The hub: one poller per stream key, fanning every change out to its subscribers.

See DESIGN.md "The hot path: fan-out". Handlers use `Hub` (subscribe, latest, wait_change)
and give each subscriber a `Sink`; everything else here is the hub's own business.
"""

from __future__ import annotations

from .channel import Channel, ChannelSpec, ChannelState
from .clock import Clock, RealClock, VirtualClock
from .hub import Hub
from .item import HEARTBEAT, Format, Item
from .poller import Fetcher, Poller
from .subscription import Sink, Subscription

__all__ = [
    "HEARTBEAT",
    "Channel",
    "ChannelSpec",
    "ChannelState",
    "Clock",
    "Fetcher",
    "Format",
    "Hub",
    "Item",
    "Poller",
    "RealClock",
    "Sink",
    "Subscription",
    "VirtualClock",
]
