"""Diffs between consecutive JSON states: RFC 6902 JSON Patch and RFC 7386 Merge Patch.

Computed once per change, never per subscriber. Every diff is checked by applying it before
it is published: a diff that would not reproduce the new state exactly (see below) is not
sent; the channel sends a full `snapshot` event instead, which patch/merge clients handle
anyway. Equality here is JSON equality, stricter than Python's: `true` is not `1`, and
`1` is not `1.0` (Python says `True == 1`, and jsonpatch 1.33 misses a change from `[1]`
to `[true]` because of it).
"""

from __future__ import annotations

import json
from typing import Any

import jsonpatch

_MISSING = object()


def loads(body: bytes) -> Any:
    """Parse a body as strict JSON (no NaN / Infinity); raises ValueError if it is not."""
    return json.loads(body, parse_constant=_reject)


def _reject(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def json_equal(a: Any, b: Any) -> bool:
    """Equality of two parsed JSON values with JSON's types (bool, int and float distinct)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(json_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def json_patch(old: Any, new: Any) -> list[dict[str, Any]] | None:
    """The RFC 6902 patch from `old` to `new`, or None if none reproduces `new` exactly."""
    try:
        patch: list[dict[str, Any]] = jsonpatch.make_patch(old, new).patch
        applied = jsonpatch.apply_patch(old, patch)
    except Exception:  # a library bug or a pathological document: fall back to a snapshot
        return None
    return patch if json_equal(applied, new) else None


def merge_patch(old: Any, new: Any) -> Any:
    """The RFC 7386 document that turns `old` into `new`: objects recurse (removed members
    become null); anything else, arrays included, is replaced whole.

    Merge Patch cannot express a member whose new *value* is null, at any depth of a changed
    object (null means "remove"); `diff` detects that by applying the result.
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key, _MISSING)
        if before is _MISSING or not json_equal(before, value):
            patch[key] = merge_patch(before, value) if isinstance(before, dict) else value
    return patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 §2 MergePatch(Target, Patch); `target` is not modified."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def diff(emit: str, old: Any, new: Any) -> bytes | None:
    """The serialized `patch` or `merge` document from `old` to `new`, once per change; None if
    it cannot reproduce `new` exactly (the caller sends a snapshot)."""
    if emit == "patch":
        ops = json_patch(old, new)
        return None if ops is None else dumps(ops)
    patch = merge_patch(old, new)
    try:
        ok = json_equal(apply_merge_patch(old, patch), new)
    except RecursionError:
        ok = False
    return dumps(patch) if ok else None
