"""Diffs between consecutive JSON states: RFC 6902 (via jsonpatch, checked) and our RFC 7386.

Every diff the hub publishes must reproduce the new state exactly when a client applies it to
the old one; where a diff cannot (Merge Patch and null values, jsonpatch's `1 == True`), the
hub sends a snapshot instead, and `diff` says so by returning None.
"""

from __future__ import annotations

import json
from typing import Any

import jsonpatch
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.hub.diff import apply_merge_patch, diff, json_equal, loads, merge_patch

scalars = st.none() | st.booleans() | st.integers(-3, 3) | st.floats(-2, 2) | st.text(max_size=3)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=2), children, max_size=4)
    ),
    max_leaves=12,
)
objects = st.dictionaries(st.text(max_size=2), json_values, max_size=5)


def rfc7386_apply(target: Any, patch: Any) -> Any:
    """RFC 7386 §2, transcribed literally (independent of bridge.hub.diff.apply_merge_patch)."""
    if isinstance(patch, dict):
        if not isinstance(target, dict):
            target = {}
        else:
            target = dict(target)
        for name, value in patch.items():
            if value is None:
                if name in target:
                    del target[name]
            else:
                target[name] = rfc7386_apply(target.get(name), value)
        return target
    return patch


def contains_null_member(value: Any) -> bool:
    if isinstance(value, dict):
        return any(v is None or contains_null_member(v) for v in value.values())
    return False


# --- RFC 7386 -------------------------------------------------------------------------------------

# RFC 7386 Appendix A, every row: (original, patch, result)
APPENDIX_A = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "result"), APPENDIX_A)
def test_apply_merge_patch_matches_rfc7386_appendix_a(
    original: Any, patch: Any, result: Any
) -> None:
    assert apply_merge_patch(original, patch) == result
    assert rfc7386_apply(original, patch) == result


def test_merge_patch_shape() -> None:
    old = {"a": 1, "b": {"c": 1, "d": [1, 2]}, "gone": True}
    new = {"a": 1, "b": {"c": 2, "d": [1, 2, 3]}, "new": "x"}
    assert merge_patch(old, new) == {"gone": None, "b": {"c": 2, "d": [1, 2, 3]}, "new": "x"}
    assert merge_patch(old, old) == {}
    assert merge_patch([1], [2]) == [2]  # arrays (and anything not an object) replaced whole
    assert merge_patch({"a": 1}, {"a": True}) == {"a": True}  # JSON equality, not Python's


@given(json_values, json_values)
def test_merge_diff_reproduces_the_new_state_or_declines(old: Any, new: Any) -> None:
    body = diff("merge", old, new)
    if body is None:
        # Only a null member value is beyond Merge Patch; then the hub sends a snapshot.
        assert contains_null_member(new)
        return
    assert json_equal(rfc7386_apply(old, json.loads(body)), new)


@given(objects, objects)
def test_merge_patch_of_null_free_objects_always_works(
    old: dict[str, Any], new: dict[str, Any]
) -> None:
    new = json.loads(json.dumps(new).replace("null", "0"))  # no nulls anywhere
    assert diff("merge", old, new) is not None


# --- RFC 6902 -------------------------------------------------------------------------------------


@given(json_values, json_values)
def test_json_patch_reproduces_the_new_state_or_declines(old: Any, new: Any) -> None:
    body = diff("patch", old, new)
    if body is not None:
        assert json_equal(jsonpatch.apply_patch(old, json.loads(body)), new)


@given(st.lists(objects, min_size=2, max_size=6))
def test_patches_in_sequence_replay_every_state(states: list[dict[str, Any]]) -> None:
    current: Any = states[0]
    for new in states[1:]:
        body = diff("patch", current, new)
        current = new if body is None else jsonpatch.apply_patch(current, json.loads(body))
        assert json_equal(current, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [([1], [True]), ({"a": [0, 2]}, {"a": [False, 2]}), ({"a": 1}, {"a": 1.0}), ([[1]], [[True]])],
)
def test_json_patch_never_hides_a_type_change(old: Any, new: Any) -> None:
    # jsonpatch 1.33 compares list items with Python's ==, so [1] -> [true] gives an empty
    # patch. Whatever the library does, what we publish must turn `old` into exactly `new`.
    body = diff("patch", old, new)
    if body is None:
        return  # declined: the hub sends a snapshot
    assert json.loads(body) != []
    assert json_equal(jsonpatch.apply_patch(old, json.loads(body)), new)


# --- equality and parsing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, True, False),
        (0, False, False),
        (1, 1.0, False),
        ([1, {"a": None}], [1, {"a": None}], True),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),
        ({"a": [True]}, {"a": [1]}, False),
        ({"a": 1}, {"a": 1, "b": 1}, False),
        ("x", "x", True),
    ],
)
def test_json_equal_keeps_json_types_apart(a: Any, b: Any, equal: bool) -> None:
    assert json_equal(a, b) is equal
    assert json_equal(b, a) is equal


@pytest.mark.parametrize("body", [b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"{", b"\xff"])
def test_loads_is_strict(body: bytes) -> None:
    with pytest.raises(ValueError):
        loads(body)
