"""The hub: one poller per stream key, fanning every change out to its subscribers.

See docs/architecture.md ("One stream event"). Handlers use `Hub` (subscribe, latest, wait_change)
and give each subscriber a `Sink`; everything else here is the hub's own business.
"""

from __future__ import annotations

from .channel import Channel
from .clock import Clock, RealClock, VirtualClock
from .context import Fetcher, HubContext
from .hub import Hub
from .item import HEARTBEAT, Format, Item
from .key import ChannelSpec
from .poller import Poller
from .state import Health, Lifetime
from .subscription import Sink, Subscription

__all__ = [
    "HEARTBEAT",
    "Channel",
    "ChannelSpec",
    "Clock",
    "Fetcher",
    "Format",
    "Health",
    "Hub",
    "HubContext",
    "Item",
    "Lifetime",
    "Poller",
    "RealClock",
    "Sink",
    "Subscription",
    "VirtualClock",
]
