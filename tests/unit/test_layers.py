"""The layering the design depends on, checked on the source: handlers and the hub never learn
which transport or HTTP version they run on, and adapters never reach up into handlers.

Read with `ast` (nothing is imported or executed), so a new import that crosses a layer fails
here with the file and line, rather than surfacing as a version-specific bug later.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

BRIDGE = Path(__file__).resolve().parents[2] / "bridge"
WIRE_LIBRARIES = {"h11", "h2", "hpack", "hyperframe", "aioquic", "httptools", "qh3"}


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
        # Handlers see Exchanges and events; never an adapter, a connection or a transport.
        ("handlers", ("bridge.protocol", "bridge.server.connection", "bridge.server.dispatch")),
        # The hub sees sinks and items; not even the Exchange.
        ("hub", ("bridge.protocol", "bridge.server", "bridge.handlers")),
    ],
)
def test_layer_does_not_know_the_transport(layer: str, forbidden: tuple[str, ...]) -> None:
    assert violations(layer, forbidden) == []


def test_adapters_never_import_handlers_or_the_server() -> None:
    bad = [
        v
        for v in violations("protocol", ("bridge.handlers", "bridge.server", "bridge.hub"))
        if "imports h" not in v and "imports aioquic" not in v  # their own wire libraries
    ]
    assert bad == []


def test_the_checker_sees_a_crossing() -> None:
    """The check itself can fail: the TCP driver does import an adapter."""
    found = [m for _, m in imports(BRIDGE / "server" / "connection.py")]
    assert "bridge.protocol.http1" in found
    assert "bridge.server.dispatch" in found  # a relative import, resolved


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
