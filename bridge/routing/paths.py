"""Request paths: normalisation (RFC 3986 §6.2.2), route templates, and safe substitution.

Matching happens on the normalised path, and the upstream receives that same path, so what the
router decided is what the upstream sees (no `/static/../admin` or `/%61dmin` confusion).

- `split_target` cuts an origin-form request target into path and query.
- `normalize_path` is the one normal form every route is matched against.
- `PathPattern` is a compiled route template: `{name}` is exactly one non-empty segment,
  `{name*}` zero or more segments (only last, only after a `/`). A query template after `?`
  (`/api/quotes?symbol={symbol}&venue={venue}`) fills each `{name}` from that query parameter;
  a request without one of them (or with it empty) does not match.
- `substitute` fills a `poll`/`send` template with parameter values that can never change the
  template's structure.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_BAD_PCT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# RFC 9112 §3.2: no whitespace or control characters in a request target; a fragment (`#`) is
# never sent (RFC 9110 §7.1).
_BAD_TARGET = re.compile(r"[\x00-\x20\x7f#]")
# A `{name}` or `{name*}` of a template (group 1: what is between the braces).
PARAM = re.compile(r"\{([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# A query parameter name a route can read or ignore: unreserved characters only, so it is
# written the same way in the file and on the wire.
QUERY_NAME = re.compile(r"[A-Za-z0-9_.\-~]+")
# What a normalised path can contain besides '/': RFC 3986 §3.3 pchar.
_PCHARS = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-F]{2})*")
# A target on the upstream, once its {params} are filled: RFC 3986 path and query characters.
TARGET = re.compile(
    r"/(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*"
    r"(?:\?(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*)?"
)


class PathError(ValueError):
    """A request target, path or template that cannot be accepted (a request gets 400)."""


def split_target(target: str) -> tuple[str, str]:
    """(path, query) of an origin-form target; the query keeps its leading '?' ("" if none).

    Absolute-form (`http://...`), authority-form and asterisk-form (`*`) targets are refused:
    a reverse proxy serves its own origin only.
    """
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
    """RFC 3986 §6.2.2 normal form of a path (no query): the form every route matches.

    Percent-encoded unreserved characters are decoded (`%61` → `a`, `%2e` → `.`), the hex of
    the others is upper-cased (`%2f` → `%2F`; an encoded slash is data, never a separator), `//`
    runs are merged, and dot segments are removed (including those that only appeared after
    decoding). A path that climbs above `/` or has a malformed `%` escape raises `PathError`.
    """
    if not raw.startswith("/"):
        raise PathError("path must start with '/'")
    path = raw
    if "%" in path:
        if _BAD_PCT.search(path):
            raise PathError("malformed percent-encoding in path")
        path = _PCT.sub(_decode_unreserved, path)
    if "//" not in path and "/." not in path:
        return path  # the common case: nothing to merge or remove
    segments = path.split("/")
    out: list[str] = []
    for segment in segments[1:]:
        if segment == "" or segment == ".":
            continue
        if segment == "..":
            if not out:
                raise PathError("path climbs above '/'")
            out.pop()
            continue
        out.append(segment)
    result = "/" + "/".join(out)
    # RFC 3986 §5.2.4: a path ending in a dot segment (or a slash) keeps its final slash.
    if out and segments[-1] in ("", ".", ".."):
        result += "/"
    return result


def template_params(template: str) -> tuple[str, ...]:
    """The `{name}` / `{name*}` parameter names of a poll/send template, in order.

    Raises `PathError` for unbalanced braces or a name that is not an identifier.
    """
    names: list[str] = []
    pos = 0
    for match in PARAM.finditer(template):
        if "{" in template[pos : match.start()] or "}" in template[pos : match.start()]:
            raise PathError("unbalanced '{' or '}'")
        spec = match.group(1)
        name = spec[:-1] if spec.endswith("*") else spec
        if _NAME.fullmatch(name) is None:
            raise PathError(f"bad parameter name {{{spec}}} (letters, digits and _ only)")
        names.append(name)
        pos = match.end()
    if "{" in template[pos:] or "}" in template[pos:]:
        raise PathError("unbalanced '{' or '}'")
    return tuple(names)


class PathPattern:
    """A route template compiled to one regular expression, matched against normalised paths.

    `/prices/{symbol}` matches `/prices/ACME` (not `/prices/` nor `/prices/a/b`);
    `/admin/{rest*}` matches `/admin`, `/admin/` and `/admin/x/y` (not `/administrator`);
    `/{rest*}` matches every path. Literal segments match exactly, case included.
    """

    __slots__ = ("_literal", "params", "query", "regex", "template")

    def __init__(self, template: str) -> None:
        self.template = template
        self.params: tuple[str, ...] = ()
        path, _, query = template.partition("?")
        self.regex = self._compile(path)
        # (query parameter, route parameter) pairs of the query template, in written order.
        self.query = _query_template(query, self.params) if "?" in template else ()
        self.params += tuple(name for _, name in self.query)
        # A template without path parameters is compared as a string: no regex on the hot path.
        self._literal = path if not self.regex.groupindex else None

    def __repr__(self) -> str:
        return f"PathPattern({self.template!r})"

    @property
    def path(self) -> str:
        """The template's path part (without its query template)."""
        return self.template.partition("?")[0]

    @property
    def matches_everything(self) -> bool:
        """True for `/{name*}`: every route after it is unreachable."""
        return len(self.params) == 1 and self.template == "/{" + self.params[0] + "*}"

    def _compile(self, template: str) -> re.Pattern[str]:
        if not template.startswith("/"):
            raise PathError("path must start with '/'")
        names = template_params(template)
        if len(set(names)) != len(names):
            duplicate = next(n for n in names if names.count(n) > 1)
            raise PathError(f"duplicate parameter {{{duplicate}}}")
        pattern = ""
        pos = 0
        matches = list(PARAM.finditer(template))
        for match in matches:
            literal = template[pos : match.start()]
            spec = match.group(1)
            name = spec.rstrip("*")
            if not literal.endswith("/"):
                raise PathError(f"{{{spec}}} must be a whole path segment")
            if spec.endswith("*"):
                if match.end() != len(template):
                    raise PathError(f"{{{spec}}} must be the last part of the path")
                # `/admin/{rest*}` matches `/admin`, `/admin/` and everything below.
                pattern += re.escape(literal[:-1]) + f"(?:/(?P<{name}>.*))?"
            else:
                if match.end() < len(template) and template[match.end()] != "/":
                    raise PathError(f"{{{spec}}} must be a whole path segment")
                pattern += re.escape(literal) + f"(?P<{name}>[^/]+)"
            pos = match.end()
        pattern += re.escape(template[pos:])
        self.params = names
        self._check_normal(template, matches)
        return re.compile(pattern + r"\Z")

    @staticmethod
    def _check_normal(template: str, matches: list[re.Match[str]]) -> None:
        """Refuse a template no normalised path can match (`/a//b`, `/a/../b`, `/%7e`, `/a b`)."""
        marks = [f"bridgeparam{i}x" for i in range(len(matches))]
        sample = template
        for match, mark in zip(reversed(matches), reversed(marks), strict=True):
            sample = sample[: match.start()] + mark + sample[match.end() :]
        for char in sample:
            if _PCHARS.fullmatch(char) is None and char != "%":
                raise PathError(f"{char!r} cannot appear in a path; percent-encode it")
        try:
            normal = normalize_path(sample)
        except PathError as exc:
            raise PathError(f"{exc}; requests are matched after normalisation") from None
        if normal != sample:
            for match, mark in zip(matches, marks, strict=True):
                normal = normal.replace(mark, match.group(0))
            raise PathError(
                f"never matches: requests are matched on the normalised path; write {normal}"
            )

    def match(self, path: str) -> dict[str, str] | None:
        """Path parameter values (percent-decoded) if the normalised `path` matches, else None.
        The query template is not consulted: see `match_query`."""
        if self._literal is not None:
            return {} if path == self._literal else None
        found = self.regex.match(path)
        if found is None:
            return None
        return {k: unquote(v) if v else "" for k, v in found.groupdict().items()}

    def match_query(self, query: str) -> dict[str, str] | None:
        """The query template's values from `query` (with or without its '?'; decoded as a
        form, `+` is a space), or None when one of its parameters is absent or empty. A
        parameter given twice yields its first value; the stream handler refuses such a
        query for subscriptions (`bridge.routing.query`)."""
        if not self.query:
            return {}
        given: dict[str, str] = {}
        for key, value in parse_qsl(query.lstrip("?"), keep_blank_values=True):
            given.setdefault(key, value)
        out: dict[str, str] = {}
        for key, name in self.query:
            found = given.get(key)
            if not found:
                return None
            out[name] = found
        return out


def _query_template(query: str, path_params: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """`symbol={symbol}&venue={v}` → (("symbol", "symbol"), ("venue", "v"))."""
    if not query:
        raise PathError("nothing after '?': write name={name} pairs, or no '?'")
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        key, eq, value = part.partition("=")
        found = PARAM.fullmatch(value)
        if not eq or found is None or found.group(1).endswith("*"):
            raise PathError(f"query template {part!r}: expected name={{name}}")
        name = found.group(1)
        if _NAME.fullmatch(name) is None:
            raise PathError(f"bad parameter name {{{name}}} (letters, digits and _ only)")
        if QUERY_NAME.fullmatch(key) is None:
            raise PathError(f"query parameter {key!r}: letters, digits and -._~ only")
        if any(key == k for k, _ in pairs):
            raise PathError(f"query parameter {key!r} is named twice")
        if name in path_params or any(name == n for _, n in pairs):
            raise PathError(f"duplicate parameter {{{name}}}")
        pairs.append((key, name))
    return tuple(pairs)


def substitute(template: str, params: dict[str, str]) -> str:
    """Fill `{name}` in a poll/send template with percent-encoded values.

    Everything except unreserved characters is encoded (docs/configuration.md "Parameters into poll"), so
    a value can never add a query parameter (`&`, `=`, `?`), a path segment (`/`) or a fragment
    (`#`). A value of `.` or `..` in the path part would still climb at an upstream that removes
    dot segments; such values cannot come out of a normalised request path, so they are refused.
    """
    query_at = template.find("?")

    def value(match: re.Match[str]) -> str:
        text = params.get(match.group(1).rstrip("*"), "")
        if text in (".", "..") and (query_at < 0 or match.start() < query_at):
            raise PathError(f"parameter value {text!r} cannot go into a path")
        return quote(text, safe="")

    return PARAM.sub(value, template)
