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
        if "imports h" not in v and "imports aioquic" not in v  # their own wire libraries
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
