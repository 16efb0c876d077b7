"""Start and stop a whole bridge: listeners, the shared context, signals, graceful shutdown.

A `Bridge` is made by the composition root (`bridge.app.create_bridge`) with the parts that
answer requests already built; it owns what is about sockets and the process: listeners, TLS,
the access log, signals and the graceful stop. Used by `bridge serve` and, in-process, by the
tests and benchmarks (bind port 0, read `ports`, `await stop()`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from .. import settings
from ..accesslog import AccessLog, install_sigusr1
from ..certs import ensure_dev_certs
from ..protocol.quic import server_configuration
from ..routing.model import Address, Config
from .connection import ServerConnection
from .context import ServerContext
from .datagram import QuicEndpoint
from .tls import server_context

if TYPE_CHECKING:
    from ..handlers.router import Router
    from ..hub.hub import Hub
    from ..upstream.client import UpstreamPool

log = logging.getLogger("bridge")


class Bridge:
    def __init__(self, config: Config, *, pool: UpstreamPool, hub: Hub, handler: Router) -> None:
        self.config = config
        self.ports: dict[str, int] = {}
        self.pool = pool
        self.hub = hub
        self.router = handler
        self.access_log: AccessLog | None = None
        self.context: ServerContext | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._stopped = asyncio.Event()
        self.ssl_context: ssl.SSLContext | None = None
        self.quic: QuicEndpoint | None = None
        self.reuse_port = False  # SO_REUSEPORT listeners (`--workers`: server/workers.py)

    def tls_paths(self) -> tuple[Path, Path]:
        """The certificate and key TCP and QUIC both serve (dev ones made when absent)."""
        cert, key = self.config.tls.cert, self.config.tls.key
        if cert is None or key is None or not cert.exists() or not key.exists():
            directory = cert.parent if cert else Path(self.config.source).resolve().parent / "certs"
            cert, key = ensure_dev_certs(directory)
        return cert, key

    def tls(self) -> ssl.SSLContext:
        return server_context(*self.tls_paths())

    async def start(self) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        self.access_log = AccessLog.open(config.access_log.path, config.access_log.format)
        install_sigusr1(loop, self.access_log)
        self.context = ServerContext(
            limits=config.limits, handler=self.router, access_log=self.access_log
        )
        listen = config.listen
        if listen.https is not None:
            self.ssl_context = self.tls()
            self.ports["https"] = await self._listen(listen.https, "https", self.ssl_context)
            self.router.https_port = self.ports["https"]
        if listen.http is not None:
            self.ports["http"] = await self._listen(listen.http, "http", None)
        if listen.admin is not None:
            from .admin import start_admin

            server, port = await start_admin(self, listen.admin)
            self._servers.append(server)
            self.ports["admin"] = port
        if listen.http3 is not None:
            # The loader requires listen.https with it: Alt-Svc is how clients find HTTP/3.
            port = self.ports["http3"] = await self._listen_quic(listen.http3)
            self.context.alt_svc = (b"alt-svc", b'h3=":%d"; ma=86400' % port)
        routes = len(config.routes)
        names = ", ".join(f"{k}={v}" for k, v in self.ports.items())
        log.info("bridge listening (%s); %d routes", names, routes)

    async def _listen(self, address: Address, scheme: str, tls: ssl.SSLContext | None) -> int:
        host, port = address
        ctx = self.context
        assert ctx is not None
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: ServerConnection(ctx, scheme=scheme),
            host=host or None,
            port=port,
            ssl=tls,
            ssl_handshake_timeout=ctx.limits.tls_handshake_timeout if tls else None,
            backlog=4096,
            reuse_address=True,
            reuse_port=self.reuse_port or None,
        )
        for sock in server.sockets:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._servers.append(server)
        return server.sockets[0].getsockname()[1]

    async def _listen_quic(self, address: Address) -> int:
        ctx = self.context
        assert ctx is not None
        # aioquic logs every connection's version, ALPN and close at INFO: per-connection
        # noise in an operator's log (bridge's access log already has one line per request).
        logging.getLogger("quic").setLevel(logging.WARNING)
        cert, key = self.tls_paths()
        configuration = server_configuration(
            str(cert), str(key), idle_timeout=ctx.limits.keepalive_timeout
        )
        host, port = address
        _transport, endpoint = await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: QuicEndpoint(ctx, configuration),
            local_addr=(host or "0.0.0.0", port),
            reuse_port=False,
        )
        self.quic = endpoint
        return endpoint.port

    async def stop(self, grace: float = settings.SHUTDOWN_GRACE) -> None:
        """Stop accepting, let in-flight requests finish within `grace`, then close."""
        ctx = self.context
        for server in self._servers:
            server.close()
        await self.hub.close()  # stream subscribers end now (WebSocket 1001), not at the deadline
        if ctx is not None:
            ctx.shutting_down = True
            for conn in list(ctx.connections):
                conn.shutdown()
            deadline = asyncio.get_running_loop().time() + grace
            while ctx.connections and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.05)
            for conn in list(ctx.connections):
                conn.abort()
        if self.quic is not None:
            # Last: QUIC connections said goodbye through this socket.
            self.quic.close()
        await self.pool.close()
        if self.access_log is not None:
            self.access_log.close()
        self._stopped.set()

    async def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then shut down gracefully."""
        await self.start()
        tune_gc()
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down (grace %.0fs)", settings.SHUTDOWN_GRACE)
        await self.stop()


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a server holding 10,000+ connections.

    With CPython's default thresholds (700, 10, 10) a young collection runs every few hundred
    allocations, and each connection set-up allocates that many: measured at 10,000 SSE
    subscribers, collections took about half the CPU of accepting them. Startup objects (modules,
    the route table) are frozen out of every collection, and young collections run less often;
    cyclic garbage (closed connections) is still collected, just in larger batches.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*settings.GC_THRESHOLDS)


def run(coro_factory: Callable[[], object]) -> None:
    """Run on uvloop where available (smaller TLS buffers, faster transports)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - non-Linux
        asyncio.run(coro_factory())  # type: ignore[arg-type]
        return
    uvloop.run(coro_factory())  # type: ignore[arg-type]
