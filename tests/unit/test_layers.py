"""The layering the design depends on, checked on the source: handlers and the hub never learn
which transport or HTTP version they run on, adapters never reach up into handlers, and each
seam sits below its users: `stream/` (the `Exchange`) below both the server and the handlers,
the server below the handlers and the operations package (`ops/`) that the composition root
(`app.py`) puts on top of it.

Read with `ast` (nothing is imported or executed), so a new import that crosses a layer fails
here with the file and line, rather than surfacing as a version-specific bug later.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BRIDGE = Path(__file__).resolve().parents[2] / "bridge"
WIRE_LIBRARIES = {"h11", "h2", "hpack", "hyperframe", "aioquic", "httptools", "qh3", "ngh2"}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import in `path`, relative ones resolved."""
    package = ["bridge", *path.relative_to(BRIDGE).parent.parts]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            found.append((node.lineno, module))
            found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def violations(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for path in sorted((BRIDGE / layer).rglob("*.py")):
        for line, module in imports(path):
            top = module.split(".")[0]
            if top in WIRE_LIBRARIES or any(
                module == f or module.startswith(f + ".") for f in forbidden
            ):
                bad.append(f"{path.relative_to(BRIDGE.parent)}:{line}: imports {module}")
    return bad


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        # Handlers see Exchanges and events; never an adapter, the server or a transport.
        ("handlers", ("bridge.protocol", "bridge.server", "bridge.ops")),
        # The hub sees sinks and items; not even the Exchange.
        ("hub", ("bridge.protocol", "bridge.server", "bridge.handlers", "bridge.stream")),
        # The stream seam knows neither who drives it nor who answers it.
        (
            "stream",
            (
                "bridge.server",
                "bridge.handlers",
                "bridge.ops",
                "bridge.hub",
                "bridge.protocol",
                "bridge.app",
            ),
        ),
    ],
)
def test_layer_does_not_know_the_transport(layer: str, forbidden: tuple[str, ...]) -> None:
    assert violations(layer, forbidden) == []


def test_adapters_never_import_handlers_or_the_server() -> None:
    bad = [
        v
        for v in violations("protocol", ("bridge.handlers", "bridge.server", "bridge.hub"))
        if "imports h" not in v
        and "imports aioquic" not in v
        and "imports ngh2" not in v  # their own wire libraries
    ]
    assert bad == []


def test_the_server_is_told_what_answers() -> None:
    """The server runs whatever handler the composition root gives it: it imports no handler,
    no operations code (admin, metrics) and not the composition root itself."""
    forbidden = ("bridge.handlers", "bridge.ops", "bridge.app", "bridge.cli")
    bad = [
        v
        for v in violations("server", forbidden)
        if "imports aioquic" not in v  # the QUIC driver's own wire library
    ]
    assert bad == []


def test_operations_sit_above_the_server() -> None:
    """Nothing below the composition root imports the operations package."""
    bad = []
    for layer in ("server", "stream", "handlers", "hub", "protocol", "upstream", "routing"):
        bad += [v for v in violations(layer, ("bridge.ops",)) if "imports bridge.ops" in v]
    assert bad == []


def test_the_checker_sees_a_crossing() -> None:
    """The check itself can fail: the TCP driver does import an adapter."""
    found = [m for _, m in imports(BRIDGE / "server" / "connection.py")]
    assert "bridge.protocol.http1" in found
    assert "bridge.server.dispatch" in found  # a relative import, resolved
    assert "bridge.stream.port" in found  # two levels up, resolved


def test_the_checker_flags_a_crossing_that_stays() -> None:
    """`violations` itself reports a forbidden import with its file and line (a layer that
    imported the server would fail the tests above, not pass them silently)."""
    crossings = [v for v in violations("server", ("bridge.stream",)) if "server/connection.py" in v]
    assert any("imports bridge.stream.port" in v for v in crossings), crossings
    assert all(v.startswith("bridge/server/connection.py:") for v in crossings)


# --- library internals stay in the shims ------------------------------------------------------

# The one module per wire library allowed to use its private names (see each one's docstring).
SHIMS = {
    "protocol/h2shim.py",
    "protocol/ngh2shim.py",
    "protocol/quicshim.py",
    "protocol/httptoolsshim.py",
}
# Where library objects are held: the adapters, the drivers, the stream seam, the upstream client.
HOLDERS = ("protocol", "server", "stream", "upstream")
# Underscored names of bridge's own objects that these modules may reach (none needed today).
OWN_PRIVATE: frozenset[str] = frozenset()


def private_touches(source: str, where: str) -> list[str]:
    """`x._name` on anything but `self`/`cls`, and classes derived from a wire library's.

    A practical rule rather than type inference: in the modules that hold library objects,
    an underscored attribute of another object is assumed to be the library's; and a subclass
    of a library class reaches its internals through `self`, so only a shim may define one.
    """
    tree = ast.parse(source, where)
    from_library: set[str] = set()  # local names bound to a wire library or something in it
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in WIRE_LIBRARIES:
                    from_library.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            if node.module.split(".")[0] in WIRE_LIBRARIES:
                from_library.update(alias.asname or alias.name for alias in node.names)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            name = node.attr
            if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if name not in OWN_PRIVATE:
                found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.ClassDef):
            for base in node.bases:
                root = base
                while isinstance(root, ast.Attribute):
                    root = root.value
                if isinstance(root, ast.Name) and root.id in from_library:
                    found.append(f"{where}:{node.lineno}: class {node.name}({ast.unparse(base)})")
    return found


def test_only_the_shims_touch_protocol_library_internals() -> None:
    bad = []
    for layer in HOLDERS:
        for path in sorted((BRIDGE / layer).rglob("*.py")):
            where = str(path.relative_to(BRIDGE))
            if where not in SHIMS:
                bad += private_touches(path.read_text(), where)
    assert bad == [], "library internals outside bridge/protocol/*shim.py:\n" + "\n".join(bad)
    # The check can fail: a private touch and a library subclass, as the adapters once had.
    sample = "import h2.settings\nclass S(h2.settings.Settings): pass\nq = conn._data_to_send\n"
    assert private_touches(sample, "x.py") == [
        "x.py:2: class S(h2.settings.Settings)",
        "x.py:3: conn._data_to_send",
    ]


def test_broker_and_upstream_import_nothing_from_the_hub() -> None:
    """The broker and the upstream client sit below the hub: the hub's channels are broker
    `Listener`s and its pollers use an upstream `Fetcher`, never the other way round."""
    bad = [
        v
        for layer in ("broker", "upstream")
        for v in violations(layer, ("bridge.hub",))
        if "imports httptools" not in v  # the upstream client's own wire library
    ]
    assert bad == []
