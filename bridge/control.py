"""Asking a running bridge how it is, over its admin listener (`listen.admin`).

`bridge health` asks `/healthz` (the Docker HEALTHCHECK, wherever the config puts the admin
listener); `bridge reload` reads `bridge_reloads_total` from `/metrics` before and after its
SIGHUP, so it can report the running process's own verdict instead of only having asked.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request

from .routing.model import Address, Config

OUTCOMES = ("ok", "invalid", "failed")  # bridge_reloads_total{outcome}
_RELOADS = re.compile(r'^bridge_reloads_total\{outcome="(\w+)"\} ([0-9.e+]+)$', re.M)
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def admin_url(config: Config) -> str | None:
    """`http://host:port` of the admin listener, a wildcard address asked on loopback; None
    without one (or with port 0, which only the running process knows)."""
    address: Address | None = config.listen.admin
    if address is None or address[1] == 0:
        return None
    host = _WILDCARDS.get(address[0], address[0])
    return f"http://[{host}]:{address[1]}" if ":" in host else f"http://{host}:{address[1]}"


def get(url: str, timeout: float = 2.0) -> tuple[int, str]:
    """Status and body of a GET; status 0 (and the reason as body) when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return 0, str(reason)


def reload_counts(base: str) -> dict[str, int] | None:
    """The process's reloads so far by outcome, or None when its admin listener does not
    answer with them."""
    status, body = get(base + "/metrics")
    if status != 200:
        return None
    counts = {outcome: int(float(value)) for outcome, value in _RELOADS.findall(body)}
    return counts if counts else None
