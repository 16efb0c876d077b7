"""The small value languages of routes.yaml: durations, sizes and listen addresses.

A duration is a number and a unit (`250ms`, `1s`, `1.5s`, `2m`, `1h`) and becomes seconds as a
float; a size is a number and a unit in powers of 1024 (`100B`, `512KB`, `1MB`, `1GB`) and
becomes whole bytes; an address is `host:port` (`0.0.0.0:8443`, `[::1]:8443`, or `:8443` for
every interface) and becomes `(host, port)` with IPv6 brackets removed; an origin is
`scheme://host[:port]` and becomes its RFC 6454 serialisation.

Each parser raises `ValueError` with a message meant to be shown to the user after the field
name (the config loader adds file, line and column).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)")
_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(B|KB|MB|GB)", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}
# RFC 1123 host names (which also covers dotted IPv4): labels of letters, digits and inner '-';
# '_' too, because container DNS (Docker Compose service names) hands out names with it.
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_PORT = re.compile(r"[0-9]{1,5}")

# The `limits:` keys (see `bridge.settings.Limits`) written as sizes; the other int fields are
# counts and the float fields durations.
SIZE_LIMITS = frozenset({"max_request_body", "max_ws_message", "max_snapshot", "subscriber_buffer"})


def parse_duration(text: str) -> float:
    """`"1.5s"` → 1.5 (seconds)."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise ValueError('expected a duration like "2s" (units: ms, s, m, h)')
    return float(found.group(1)) * _DURATION_UNITS[found.group(2)]


def parse_size(text: str) -> int:
    """`"512KB"` → 524288 (bytes, powers of 1024)."""
    found = _SIZE.fullmatch(text.strip())
    if found is None:
        raise ValueError('expected a size like "512KB" (units: B, KB, MB, GB)')
    value = float(found.group(1)) * _SIZE_UNITS[found.group(2).upper()]
    if value != int(value):
        raise ValueError(f'"{text}" is not a whole number of bytes')
    return int(value)


def is_hostname(host: str) -> bool:
    """A DNS name or dotted IPv4 address (IPv6 literals are checked with `ipaddress`)."""
    return len(host) <= 253 and _HOSTNAME.fullmatch(host) is not None


def is_loopback(host: str) -> bool:
    """`localhost`, 127.0.0.0/8 or ::1; "" (every interface) is not."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def parse_address(text: str) -> tuple[str, int]:
    """`"[::1]:8443"` → ("::1", 8443); `":8443"` → ("", 8443), which binds every interface.

    Port 0 is allowed: the system picks a free port (tests and `bridge demo` rely on it).
    """
    usage = 'expected "host:port", e.g. "0.0.0.0:8443" or "[::1]:8443"'
    host, sep, port = text.strip().rpartition(":")
    if not sep or _PORT.fullmatch(port) is None or int(port) > 65535:
        raise ValueError(usage)
    if host.startswith("[") or host.endswith("]"):
        if not (host.startswith("[") and host.endswith("]")) or not is_ipv6(host[1:-1]):
            raise ValueError(f'"{host}" is not an IPv6 address in brackets, e.g. "[::1]:8443"')
        host = host[1:-1]
    elif ":" in host:
        raise ValueError('IPv6 addresses are written in brackets, e.g. "[::1]:8443"')
    elif host and not is_hostname(host):
        raise ValueError(f'"{host}" is not a host name or IP address; {usage}')
    return host, int(port)


def normalize_origin(value: str) -> str | None:
    """RFC 6454 serialisation of an origin as written in `origins:`: lower-case scheme and
    host, default port dropped, IPv6 in brackets; None if it is not `scheme://host[:port]`."""
    try:
        parts = urlsplit(value.strip().lower())
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host or "@" in parts.netloc:
        return None
    if not (is_hostname(host) or (":" in host and is_ipv6(host))) or port == 0:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or "?" in value or "#" in value:
        return None
    default = 443 if parts.scheme == "https" else 80
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}" + ("" if port in (None, default) else f":{port}")


def format_address(address: tuple[str, int]) -> str:
    """The inverse of `parse_address`, for messages and `bridge check`."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def format_size(size: int) -> str:
    for unit in ("GB", "MB", "KB"):
        if size and size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return f"{size}B"
