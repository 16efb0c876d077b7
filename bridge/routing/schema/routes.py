"""The `routes:` list: each route's path template, what it leads to (an upstream, a stream or
both) and the assets its page pushes; and the check that every route can be reached."""

from __future__ import annotations

from yaml.nodes import Node, SequenceNode

from ..model import Route, Upstream, keys
from ..paths import PARAM, TARGET, PathError, PathPattern, normalize_path, split_target
from ..yamlwalk import Walker, is_string, kind
from .stream import read_stream
from .upstreams import upstream_ref

ROUTE_KEYS = keys(Route)


def read_routes(
    w: Walker,
    node: Node | None,
    upstreams: dict[str, Upstream],
    declared: list[str],
    root: Node,
) -> list[Route]:
    if node is None:
        w.error(root, "routes", "missing: at least one route is required")
        return []
    if not isinstance(node, SequenceNode):
        w.error(node, "routes", f"expected a list of routes, got {kind(node)}")
        return []
    if not node.value:
        w.error(node, "routes", "at least one route is required")
        return []
    out: list[tuple[Route, Node]] = []
    for index, item in enumerate(node.value):
        built = _route(w, item, f"routes[{index}]", index, upstreams, declared)
        if built is not None:
            out.append(built)
    _check_reachable(w, out)
    return [route for route, _ in out]


def _check_reachable(w: Walker, routes: list[tuple[Route, Node]]) -> None:
    """First match wins, so a route that an earlier one always beats can never be chosen:
    after a catch-all `/{rest*}`, after a template of the same shape (`/p/{a}` then `/p/{b}`),
    or a literal path an earlier template matches (`/p/{a}` then `/p/latest`). A query template
    only narrows a route, so an earlier route without one beats a later one with one on the
    same paths (`/q` then `/q?s={s}`). Almost certainly a mistake in the file, so it is one."""
    earlier: list[tuple[Route, PathPattern]] = []
    shapes: dict[str, Route] = {}  # of whole templates
    open_shapes: dict[str, Route] = {}  # of paths whose route has no query template
    for route, path_node in routes:
        pattern = PathPattern(route.path)
        shape = _shape(route.path)
        path_shape = _shape(pattern.path)
        winner = next((r for r, p in earlier if p.matches_everything), None)
        why = "matches every path first"
        if winner is None:
            winner = shapes.get(shape) or open_shapes.get(path_shape)
            why = "matches the same paths first"
        if winner is None and not pattern.regex.groupindex:
            # A literal path: an earlier route without a query template matching it wins.
            winner = next(
                (r for r, p in earlier if not p.query and p.match(pattern.path) is not None),
                None,
            )
            why = "matches it first"
        if winner is not None:
            w.error(
                path_node,
                f"routes[{route.index}].path",
                f"never matched: routes[{winner.index}] ({winner.path}) {why}",
            )
        shapes.setdefault(shape, route)
        if not pattern.query:
            open_shapes.setdefault(path_shape, route)
        earlier.append((route, pattern))


def _shape(template: str) -> str:
    return PARAM.sub(lambda m: "{*}" if m.group(0).endswith("*}") else "{}", template)


def _route(
    w: Walker,
    node: Node,
    field: str,
    index: int,
    upstreams: dict[str, Upstream],
    declared: list[str],
) -> tuple[Route, Node] | None:
    items = w.mapping(node, field, ROUTE_KEYS)
    if items is None:
        return None
    template: str | None = None
    params: tuple[str, ...] | None = None  # None: the path is broken, so params are unknown
    query: tuple[str, ...] = ()
    if "path" not in items:
        w.error(node, field, "missing path")
    else:
        template = w.text(items["path"], f"{field}.path")
        if template is not None:
            try:
                pattern = PathPattern(template)
                params, query = pattern.params, tuple(key for key, _ in pattern.query)
            except PathError as exc:
                w.error(items["path"], f"{field}.path", str(exc))
                template = None
    if "upstream" not in items and "stream" not in items:
        w.error(node, field, "a route needs upstream (proxy) or stream (push stream)")
    upstream = None
    if "upstream" in items:
        upstream = upstream_ref(w, items["upstream"], f"{field}.upstream", upstreams, declared)
    stream = None
    if "stream" in items:
        stream = read_stream(
            w, items["stream"], f"{field}.stream", params, upstreams, declared, query
        )
    push: tuple[str, ...] = ()
    push_auto = False
    if "push" in items:
        push, push_auto = _push(w, items["push"], f"{field}.push")
        if "upstream" not in items:
            w.error(items["push"], f"{field}.push", "push needs the route's upstream (the page)")
    if template is None or params is None:
        return None
    route = Route(
        index=index,
        path=template,
        line=node.start_mark.line + 1,
        upstream=upstream,
        stream=stream,
        push=push,
        push_auto=push_auto,
        params=params,
        query=query,
    )
    return route, items["path"]


def _push(w: Walker, node: Node, field: str) -> tuple[tuple[str, ...], bool]:
    if is_string(node, "auto"):
        return (), True
    if not isinstance(node, SequenceNode):
        w.error(node, field, f'expected a list of paths or "auto", got {kind(node)}')
        return (), False
    out: list[str] = []
    for index, item in enumerate(node.value):
        where = f"{field}[{index}]"
        value = w.text(item, where)
        if value is None:
            continue
        problem = _asset_problem(value)
        if problem is not None:
            w.error(item, where, problem)
        elif value in out:
            w.error(item, where, f"{value} is listed twice")
        else:
            out.append(value)
    return tuple(out), False


def _asset_problem(value: str) -> str | None:
    """Pushed assets are promised on the page's own origin: a path, nothing else."""
    usage = "expected a same-origin absolute path like /static/app.css"
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return usage
    try:
        path, query = split_target(value)
        normal = normalize_path(path)
    except PathError as exc:
        return f"{usage} ({exc})"
    if not TARGET.fullmatch(value):
        return f"{usage} (percent-encode other characters)"
    if normal != path:
        return f"write the normalised path {normal}{query}"
    return None
