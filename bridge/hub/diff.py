"""Diffs between consecutive JSON states: RFC 6902 JSON Patch and RFC 7386 Merge Patch.

Computed once per change, never per subscriber.
"""

from __future__ import annotations

import json
from typing import Any

import jsonpatch

_MISSING = object()


def json_patch(old: Any, new: Any) -> list[dict[str, Any]]:
    return jsonpatch.make_patch(old, new).patch  # type: ignore[no-any-return]


def merge_patch(old: Any, new: Any) -> Any:
    """The RFC 7386 document that turns `old` into `new`: objects recurse (removed keys become
    null), anything else, arrays included, is replaced whole.

    A null member *value* cannot be expressed (null means delete); callers check with
    `apply_merge_patch` and send a snapshot instead when the round trip fails.
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key, _MISSING)
        if before is _MISSING or before != value:
            patch[key] = merge_patch(before, value) if isinstance(before, dict) else value
    return patch


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 §2 MergePatch(Target, Patch)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


def dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
