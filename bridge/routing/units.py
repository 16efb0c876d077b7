"""Durations (`250ms`, `1s`, `2m`, `1h`), sizes (`512KB`, `1MB`, powers of 1024) and
listen addresses (`0.0.0.0:8443`, `[::1]:8443`, `:8443`) as written in routes.yaml."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB)\s*$", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def parse_duration(text: str) -> float:
    found = _DURATION.match(text)
    if found is None:
        raise ValueError('expected a duration like "2s" (units: ms, s, m, h)')
    return float(found.group(1)) * _DURATION_UNITS[found.group(2)]


def parse_size(text: str) -> int:
    found = _SIZE.match(text)
    if found is None:
        raise ValueError('expected a size like "512KB" (units: B, KB, MB, GB)')
    return int(float(found.group(1)) * _SIZE_UNITS[found.group(2).upper()])


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError('expected "host:port", e.g. "0.0.0.0:8443" or "[::1]:8443"')
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError("unbalanced '[' in IPv6 address")
        host = host[1:-1]
    elif ":" in host:
        raise ValueError('IPv6 addresses are written in brackets, e.g. "[::1]:8443"')
    return host, int(port)


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0 and seconds >= 60:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"
