"""The top-level `broker:` value: `memory` (the default) or `redis://host[:port][/db]`, with an
optional `?lease=DURATION` (how long a stream's leader holds its lease without renewing;
short for tests, the default suits a LAN)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

from .. import settings
from .model import BrokerConfig
from .units import is_hostname, is_ipv6, parse_duration

USAGE = 'expected "memory" or "redis://host[:port][/db][?lease=5s]"'
MIN_LEASE = 0.2  # renewals go every lease/3: below this the renewal traffic is silly
MAX_LEASE = 300.0


def parse_broker(text: str, error: Callable[[str], None]) -> BrokerConfig | None:
    """The broker `text` names; None for `memory` or a problem (reported through `error`)."""
    if text == "memory":
        return None
    try:
        parts = urlsplit(text)
        port = parts.port or 6379
        path = parts.path.strip("/") or "0"
    except ValueError as exc:
        error(f"{USAGE}: {exc}")
        return None
    host = parts.hostname or ""
    if parts.scheme != "redis" or not (is_hostname(host) or (":" in host and is_ipv6(host))):
        error(USAGE)
        return None
    if not path.isdigit() or int(path) > 15:
        error("the database must be a number from 0 to 15")
        return None
    if parts.fragment:
        error("no fragment in a broker url")
        return None
    lease = settings.BROKER_LEASE
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name != "lease":
            error(f'unknown broker option "{name}" (known: lease)')
            return None
        try:
            lease = parse_duration(value)
        except ValueError as exc:
            error(f"lease: {exc}")
            return None
        if not MIN_LEASE <= lease <= MAX_LEASE:
            error(f"lease: must be between {MIN_LEASE}s and {MAX_LEASE:.0f}s")
            return None
    url = text.split("?", 1)[0]
    return BrokerConfig(url=url, host=host, port=port, db=int(path), lease=lease)
