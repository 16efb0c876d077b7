"""The `notify:` section: how the app tells bridge that a stream changed.

`token` is required (RFC 6750's `b64token` syntax, so it fits an `Authorization: Bearer`
header as is) and is usually a `${NAME}` reference (`bridge.routing.envref`), so the secret
lives in the environment; messages never quote it. `header` is the response header a proxied
answer may carry (a field name, RFC 9110 §5.1).
"""

from __future__ import annotations

import re

from yaml.nodes import Node

from ..envref import expanded_text
from ..model import NotifyConfig, keys
from ..yamlwalk import Walker

NOTIFY_KEYS = keys(NotifyConfig)
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 §2.1
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 §5.1 token
MIN_TOKEN = 16  # shorter tokens are accepted with a warning: they are guessable
# Headers bridge itself sets or strips on proxied answers: never a notify header.
_RESERVED = frozenset(
    {"connection", "content-length", "content-type", "transfer-encoding", "host", "upgrade"}
)


def read_notify(w: Walker, node: Node | None) -> NotifyConfig | None:
    """`notify:`, or None when the section is absent (no notify input)."""
    if node is None:
        return None
    items = w.mapping(node, "notify", NOTIFY_KEYS)
    if items is None:
        return None
    if "token" not in items:
        w.error(node, "notify.token", 'missing: a bearer token, e.g. "${BRIDGE_NOTIFY_TOKEN}"')
        return None
    token = expanded_text(w, items["token"], "notify.token")
    if token is None:
        return None
    if not _B64TOKEN.fullmatch(token):
        w.error(
            items["token"],
            "notify.token",
            "not a bearer token: letters, digits and -._~+/ only (then any '=')",
        )
        return None
    if len(token) < MIN_TOKEN:
        w.warn(items["token"], "notify.token", f"shorter than {MIN_TOKEN} characters: guessable")
    values: dict[str, str] = {"token": token}
    if "header" in items:
        header = w.text(items["header"], "notify.header")
        if header is None:
            return None
        if not _FIELD_NAME.fullmatch(header) or header.lower() in _RESERVED:
            w.error(items["header"], "notify.header", f'"{header}" is not a usable header name')
            return None
        values["header"] = header
    return NotifyConfig(**values)
