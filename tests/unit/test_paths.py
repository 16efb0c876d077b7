"""Request path normalisation, route templates and safe substitution (docs/configuration.md "Edges")."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.routing.paths import (
    PathError,
    PathPattern,
    normalize_path,
    split_target,
    substitute,
    template_params,
)


@pytest.mark.parametrize(
    "raw,normal",
    [
        ("/static/../admin", "/admin"),
        ("/a/%2e%2e/b", "/b"),
        ("/a/%2E%2e/b", "/b"),
        ("/a/.%2e/b", "/b"),
        ("/%61", "/a"),
        ("/%7Euser", "/~user"),
        ("/%41%5a%30%2D%5F", "/AZ0-_"),
        ("/a%2Fb", "/a%2Fb"),
        ("/a%2fb", "/a%2Fb"),
        ("/a%2f..%2fb", "/a%2F..%2Fb"),  # an encoded slash never makes a segment
        ("/%20x%3f", "/%20x%3F"),
        ("/%25", "/%25"),
        ("/%2561", "/%2561"),  # decoding is one level: %25 is '%', not the start of %61
        ("//a///b", "/a/b"),
        ("/a/./b/.", "/a/b/"),
        ("/a/b/..", "/a/"),
        ("/a/..", "/"),
        ("/a/../", "/"),
        ("/", "/"),
        ("//", "/"),
        ("/.", "/"),
        ("/./", "/"),
        ("/a/", "/a/"),
        ("/a//", "/a/"),
        ("/a/...", "/a/..."),
        ("/.well-known/x", "/.well-known/x"),
        ("/a/b", "/a/b"),
        ("/Case/MiXed", "/Case/MiXed"),
    ],
)
def test_normalize_path(raw: str, normal: str) -> None:
    assert normalize_path(raw) == normal


@pytest.mark.parametrize(
    "raw", ["/..", "/../", "/a/../..", "/%2e%2e", "/%2E%2E/x", "/a/%2E%2E/%2e%2e/x", "/./.."]
)
def test_paths_climbing_above_root_are_refused(raw: str) -> None:
    with pytest.raises(PathError, match="climbs above"):
        normalize_path(raw)


@pytest.mark.parametrize("raw", ["/%", "/%2", "/%zz", "/a%g1"])
def test_malformed_percent_encoding_is_refused(raw: str) -> None:
    with pytest.raises(PathError, match="percent-encoding"):
        normalize_path(raw)


def test_path_error_is_a_value_error() -> None:
    assert issubclass(PathError, ValueError)
    with pytest.raises(ValueError):
        normalize_path("relative")


@pytest.mark.parametrize(
    "target,parts",
    [
        ("/", ("/", "")),
        ("/a/b?x=1&y=2", ("/a/b", "?x=1&y=2")),
        ("/a?", ("/a", "?")),
        ("/a?b?c", ("/a", "?b?c")),
        ("/a/../b?q=/..", ("/a/../b", "?q=/..")),  # normalising is the caller's next step
    ],
)
def test_split_target(target: str, parts: tuple[str, str]) -> None:
    assert split_target(target) == parts


@pytest.mark.parametrize(
    "target",
    ["*", "", "http://x/", "x/y", "/a b", "/a\x00", "/a\tb", "/a\r\n", "/a\x7f", "/a#frag"],
)
def test_bad_targets(target: str) -> None:
    with pytest.raises(PathError):
        split_target(target)


PATH_CHARS = "/.%2eEfF5aA~_-x"


@given(st.text(alphabet=PATH_CHARS, max_size=40).map(lambda s: "/" + s))
def test_normalisation_is_idempotent_and_clean(raw: str) -> None:
    try:
        once = normalize_path(raw)
    except PathError:
        return
    assert normalize_path(once) == once
    assert "/./" not in once and "/../" not in once and "//" not in once
    assert once.startswith("/")
    assert not once.endswith("/..") and not once.endswith("/.")


@given(
    st.lists(st.sampled_from(["a", "b", ".", "..", "", "%2e", "%2E%2e", "%61", "%2F"]), max_size=12)
)
def test_normalisation_matches_a_segment_stack(segments: list[str]) -> None:
    """A reference model: decode, then push/pop segments; climbing above '/' is an error."""
    raw = "/" + "/".join(segments)
    decoded = [s.replace("%2e", ".").replace("%2E", ".").replace("%61", "a") for s in segments]
    stack: list[str] = []
    climbed = False
    for segment in decoded:
        if segment in ("", "."):
            continue
        if segment == "..":
            if not stack:
                climbed = True
                break
            stack.pop()
        else:
            stack.append(segment)
    if climbed:
        with pytest.raises(PathError):
            normalize_path(raw)
        return
    expected = "/" + "/".join(stack)
    if stack and decoded and decoded[-1] in ("", ".", ".."):
        expected += "/"
    assert normalize_path(raw) == expected


# --- templates -----------------------------------------------------------------------------


def test_one_segment_parameter() -> None:
    pattern = PathPattern("/prices/{symbol}")
    assert pattern.params == ("symbol",)
    assert pattern.match("/prices/ACME") == {"symbol": "ACME"}
    assert pattern.match("/prices/") is None
    assert pattern.match("/prices") is None
    assert pattern.match("/prices/a/b") is None
    assert pattern.match("/prices/a/") is None
    assert pattern.match("/PRICES/a") is None  # case-sensitive


def test_parameter_values_are_percent_decoded() -> None:
    pattern = PathPattern("/files/{name}/{part}")
    assert pattern.match("/files/a%2Fb/%C3%A9t%C3%A9") == {"name": "a/b", "part": "été"}
    assert pattern.match("/files/x%20y/%3F") == {"name": "x y", "part": "?"}


@pytest.mark.parametrize(
    "path,rest",
    [
        ("/admin", ""),
        ("/admin/", ""),
        ("/admin/x", "x"),
        ("/admin/x/y", "x/y"),
        ("/admin/x/y/", "x/y/"),
        ("/admin/a%2Fb", "a/b"),
        ("/administrator", None),
        ("/admi", None),
        ("/", None),
        ("/x/admin", None),
    ],
)
def test_rest_parameter_below_a_prefix(path: str, rest: str | None) -> None:
    found = PathPattern("/admin/{rest*}").match(path)
    assert found == (None if rest is None else {"rest": rest})


@pytest.mark.parametrize("path,rest", [("/", ""), ("/a", "a"), ("/a/b/", "a/b/")])
def test_rest_parameter_at_the_root_matches_everything(path: str, rest: str) -> None:
    pattern = PathPattern("/{rest*}")
    assert pattern.matches_everything
    assert pattern.match(path) == {"rest": rest}


def test_mixed_parameters_and_literals() -> None:
    pattern = PathPattern("/u/{user}/files/{path*}")
    assert pattern.params == ("user", "path")
    assert pattern.match("/u/ann/files") == {"user": "ann", "path": ""}
    assert pattern.match("/u/ann/files/a/b.txt") == {"user": "ann", "path": "a/b.txt"}
    assert pattern.match("/u/ann/filesx") is None
    assert not pattern.matches_everything


def test_literal_templates() -> None:
    assert PathPattern("/").match("/") == {}
    assert PathPattern("/").match("/a") is None
    assert PathPattern("/a/").match("/a") is None
    assert PathPattern("/a.b").match("/aXb") is None  # regex metacharacters are literal
    assert PathPattern("/a%2Fb").match("/a%2Fb") == {}


@pytest.mark.parametrize(
    "template,message",
    [
        ("", "must start with '/'"),
        ("x/{a}", "must start with '/'"),
        ("/{a", "unbalanced"),
        ("/a}", "unbalanced"),
        ("/{{a}}", "unbalanced"),
        ("/{}", "bad parameter name"),
        ("/{1a}", "bad parameter name"),
        ("/{a-b}", "bad parameter name"),
        ("/{a**}", "bad parameter name"),
        ("/{a}/{a}", "duplicate parameter {a}"),
        ("/{a}/{a*}", "duplicate parameter {a}"),
        ("/{rest*}/x", "must be the last part"),
        ("/x{a}", "whole path segment"),
        ("/{a}x", "whole path segment"),
        ("/x{rest*}", "whole path segment"),
        ("/a//b", "write /a/b"),
        ("/a/./{b}", "write /a/{b}"),
        ("/a/../b", "write /b"),
        ("/%7euser", "write /~user"),
        ("/a%2fb", "write /a%2Fb"),
        ("/..", "climbs above"),
        ("/a b", "cannot appear in a path"),
        ("/a#b", "cannot appear in a path"),
        ("/a?b", "query template 'b': expected name={name}"),
        ("/a?", "nothing after '?'"),
        ("/a?b=lit", "query template 'b=lit': expected name={name}"),
        ("/a?b={x*}", "query template 'b={x*}': expected name={name}"),
        ("/a?b={1x}", "bad parameter name {1x}"),
        ("/a?b%20c={x}", "query parameter 'b%20c': letters, digits and -._~ only"),
        ("/a?b={x}&b={y}", "query parameter 'b' is named twice"),
        ("/a/{x}?b={x}", "duplicate parameter {x}"),
        ("/a?b={x}&c={x}", "duplicate parameter {x}"),
        ("/é", "cannot appear in a path"),
    ],
)
def test_template_errors(template: str, message: str) -> None:
    with pytest.raises(PathError, match=message.replace("{", r"\{").replace("*", r"\*")):
        PathPattern(template)


def test_template_params() -> None:
    assert template_params("/api/{a}/x?b={b}&c={c*}") == ("a", "b", "c")
    assert template_params("/plain") == ()
    for bad in ("/api/{a", "/api/a}", "/{a b}"):
        with pytest.raises(PathError):
            template_params(bad)


@given(
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=20).filter(
        lambda v: v not in (".", "..")
    )
)
def test_an_encoded_value_round_trips_through_normalise_and_match(value: str) -> None:
    pattern = PathPattern("/items/{id}/detail")
    path = normalize_path("/items/" + quote(value, safe="") + "/detail")
    assert pattern.match(path) == {"id": value}


# --- substitution --------------------------------------------------------------------------


def test_substitute_encodes_everything_but_unreserved() -> None:
    template = "/api/prices/{symbol}?since={cursor}"
    assert substitute(template, {"symbol": "ACME", "cursor": "1"}) == "/api/prices/ACME?since=1"
    assert substitute(template, {"symbol": "a/b", "cursor": "1&admin=1"}) == (
        "/api/prices/a%2Fb?since=1%26admin%3D1"
    )
    assert substitute("/x?q={v}", {"v": "a b#c?d"}) == "/x?q=a%20b%23c%3Fd"
    assert substitute("/x/{v}", {"v": "été~-._"}) == "/x/%C3%A9t%C3%A9~-._"
    assert substitute("/x/{rest*}", {"rest": "a/b"}) == "/x/a%2Fb"
    assert substitute("/static", {}) == "/static"


def test_substitute_refuses_dot_segments_in_the_path() -> None:
    for value in (".", ".."):
        with pytest.raises(PathError):
            substitute("/api/{v}/x", {"v": value})
    assert substitute("/api?v={v}", {"v": ".."}) == "/api?v=.."  # harmless in a query


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30))
def test_substitute_never_injects_structure(value: str) -> None:
    prefix, suffix = "/api/price?symbol=", "&x=1"
    out = substitute(prefix + "{s}" + suffix, {"s": value})
    assert out.startswith(prefix) and out.endswith(suffix)
    middle = out[len(prefix) : -len(suffix)]
    assert not any(ch in middle for ch in "/?#&= +")
    assert all(ch.isascii() and ch.isprintable() for ch in middle)
