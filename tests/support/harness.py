"""Start a real bridge in-process on loopback ports with real TLS, for e2e tests.

    async with running_bridge(routes_text, certs) as b:
        b.url("https"), b.ports, b.ca

The config goes through the real loader from a real file, like a user's `routes.yaml`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import ssl
import tempfile
import textwrap
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.app import create_bridge
from bridge.routing.config import load_config
from bridge.routing.model import Engines
from bridge.server.run import Bridge

# The HTTP/2 engine every bridge started here runs on, when a test sets it (tests/conftest.py
# `h2_engine`); None: what the config says.
H2_ENGINE: str | None = None


@dataclass
class Running:
    bridge: Bridge
    ca: Path
    directory: Path

    @property
    def ports(self) -> dict[str, int]:
        return self.bridge.ports

    def url(self, scheme: str = "https", path: str = "") -> str:
        port = self.ports[scheme]
        return f"{scheme}://127.0.0.1:{port}{path}"

    def client_ssl(self, alpn: tuple[str, ...] = ("h2", "http/1.1")) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.set_alpn_protocols(list(alpn))
        return ctx


def config_text(
    body: str, *, upstream_url: str, certs: Path, extra_listen: str = "", http3: bool = False
) -> str:
    """A routes.yaml around `body` (the `routes:` list etc.), listening on port 0 (`http3`:
    QUIC too, its port in `ports["http3"]`)."""
    if http3:
        extra_listen = 'http3: "127.0.0.1:0"\n' + extra_listen
    head = f"""\
listen:
  https: "127.0.0.1:0"
  http: "127.0.0.1:0"
  http_mode: serve
{textwrap.indent(extra_listen, "  ")}
tls:
  cert: {certs}/server.crt
  key: {certs}/server.key
access_log:
  path: access.log
  format: json
upstreams:
  app:
    url: "{upstream_url}"
    timeout: 5s
"""
    return head + textwrap.dedent(body)


@contextlib.asynccontextmanager
async def running_bridge(text: str, certs: Path) -> AsyncIterator[Running]:
    directory = Path(tempfile.mkdtemp(prefix="bridge-test-"))
    try:
        path = directory / "routes.yaml"
        path.write_text(text)
        config = load_config(path)
        if H2_ENGINE is not None:
            config = dataclasses.replace(config, engines=Engines(http2=H2_ENGINE))  # type: ignore[arg-type]
        bridge = create_bridge(config)
        await bridge.start()
        try:
            yield Running(bridge, certs / "ca.crt", directory)
        finally:
            await bridge.stop(grace=1.0)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def require_tool(name: str) -> str:
    """The path of an external client, or skip (locally) / fail (in CI) when it is missing."""
    found = shutil.which(name)
    if found:
        return found
    if os.environ.get("BRIDGE_REQUIRE_TOOLS"):
        pytest.fail(f"{name} is required in CI but not installed")
    pytest.skip(f"{name} not installed (apt-get install the package that provides it)")
    raise AssertionError("unreachable")


def run(coro: object, timeout: float = 60.0) -> object:
    """Run one async test body under a generous timeout against hangs, on the event loop
    bridge uses in production (uvloop; BRIDGE_TEST_LOOP=asyncio for the standard one)."""
    import asyncio

    guarded = asyncio.wait_for(coro, timeout)  # type: ignore[arg-type]
    if os.environ.get("BRIDGE_TEST_LOOP") != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.run(guarded)
    return asyncio.run(guarded)


async def raw_exchange(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a fresh TCP connection and read until the server closes it."""
    import asyncio

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    chunks = []
    try:
        while True:
            piece = await asyncio.wait_for(reader.read(65536), timeout)
            if not piece:
                break
            chunks.append(piece)
    finally:
        writer.close()
    return b"".join(chunks)
