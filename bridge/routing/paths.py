"""Request paths: normalisation (RFC 3986 §6.2.2), route templates, and safe substitution.

Matching happens on the normalised path, and the upstream receives that same path, so what
the router decided is what the upstream sees (no `/static/../admin` confusion).
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f#]")
_PARAM = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class PathError(ValueError):
    """A request target or route template that cannot be accepted."""


def split_target(target: str) -> tuple[str, str]:
    """(path, query) of an origin-form target; the query keeps its leading '?'."""
    if not target.startswith("/"):
        raise PathError("request target must be an absolute path")
    if _BAD_TARGET.search(target):
        raise PathError("control characters, spaces or '#' in request target")
    path, sep, query = target.partition("?")
    return path, sep + query


def _decode_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


def normalize_path(raw: str) -> str:
    """Decode unreserved escapes, merge `//`, remove dot segments; refuse climbing above `/`.

    `%2F` stays encoded: an encoded slash is data, never a separator.
    """
    if not raw.startswith("/"):
        raise PathError("path must start with '/'")
    path = _PCT.sub(_decode_unreserved, raw) if "%" in raw else raw
    segments = path.split("/")
    out: list[str] = []
    for segment in segments[1:-1]:
        if segment == "" or segment == ".":
            continue
        if segment == "..":
            if not out:
                raise PathError("path climbs above '/'")
            out.pop()
            continue
        out.append(segment)
    last = segments[-1]
    trailing = False
    if last == "..":
        if not out:
            raise PathError("path climbs above '/'")
        out.pop()
        trailing = True
    elif last in ("", "."):
        trailing = True
    else:
        out.append(last)
    result = "/" + "/".join(out)
    if trailing and out:
        result += "/"
    return result


class PathPattern:
    """A compiled route template: `{name}` = one segment, `{name*}` = zero or more (last only)."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.params: tuple[str, ...] = ()
        self.regex = self._compile(template)

    def _compile(self, template: str) -> re.Pattern[str]:
        if not template.startswith("/"):
            raise PathError("path must start with '/'")
        if template.count("{") != template.count("}"):
            raise PathError("unbalanced '{' or '}' in path")
        names: list[str] = []
        pattern = ""
        pos = 0
        for match in _PARAM.finditer(template):
            literal = template[pos : match.start()]
            if "{" in literal or "}" in literal:
                raise PathError("unbalanced '{' or '}' in path")
            spec = match.group(1)
            star = spec.endswith("*")
            name = spec[:-1] if star else spec
            if not _NAME.match(name):
                raise PathError(f"bad parameter name {{{spec}}}")
            if name in names:
                raise PathError(f"duplicate parameter {{{name}}}")
            names.append(name)
            before_slash = literal.endswith("/")
            if star:
                if match.end() != len(template):
                    raise PathError(f"{{{spec}}} must be the last part of the path")
                if not before_slash:
                    raise PathError(f"{{{spec}}} must follow a '/'")
                # `/admin/{rest*}` matches `/admin`, `/admin/` and everything below.
                pattern += re.escape(literal[:-1]) + f"(?:/(?P<{name}>.*))?"
            else:
                segment_start = before_slash or literal == ""
                if not segment_start and literal:
                    raise PathError(f"{{{name}}} must be a whole path segment")
                pattern += re.escape(literal) + f"(?P<{name}>[^/]+)"
            pos = match.end()
            if not star and pos < len(template) and template[pos] not in "/":
                raise PathError(f"{{{name}}} must be a whole path segment")
        tail = template[pos:]
        if "{" in tail or "}" in tail:
            raise PathError("unbalanced '{' or '}' in path")
        pattern += re.escape(tail)
        self.params = tuple(names)
        if pattern == "":
            pattern = "/"
        return re.compile(pattern + r"\Z" if pattern else r"/\Z")

    def match(self, path: str) -> dict[str, str] | None:
        found = self.regex.match(path)
        if found is None:
            return None
        return {k: unquote(v or "") for k, v in found.groupdict().items()}


def substitute(template: str, params: dict[str, str]) -> str:
    """Fill `{name}` in a poll/send template; values are percent-encoded so they can never add
    a query parameter, a path segment or a fragment."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1).rstrip("*")
        return quote(params.get(name, ""), safe="")

    return _PARAM.sub(value, template)


def template_params(template: str) -> list[str]:
    return [m.group(1).rstrip("*") for m in _PARAM.finditer(template)]
