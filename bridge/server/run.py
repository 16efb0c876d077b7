"""Start and stop a whole bridge: listeners, the shared context, signals, graceful shutdown.

A `Bridge` is made by the composition root (`bridge.app.create_bridge`) with the parts that
answer requests already built, behind a `Site` (what answers, how a reload rebuilds it, how it
closes), and the admin handler's factory; it owns what is about sockets and the process:
listeners, TLS, the access log, signals and the graceful stop. It imports no handler and no
operations code: those sit above it. Used by `bridge serve` and, in-process, by the tests and
benchmarks (bind port 0, read `ports`, `await stop()`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
import logging
import signal
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from .. import settings
from ..accesslog import AccessLog, install_sigusr1
from ..certs import server_files
from ..errors import ConfigError
from ..protocol.http2 import engine_factory
from ..protocol.quic import server_configuration
from ..routing.model import Address, Config, Route
from ..stream.host import Handler
from .connection import ServerConnection
from .context import ServerContext
from .datagram import QuicEndpoint
from .pidfile import remove_pid_file, write_pid_file
from .tls import server_context

log = logging.getLogger("bridge")


class Site(Protocol):
    """The request side of a bridge as the composition root hands it over: the handler, and
    the hooks a reload and a stop call. Upstream connections and live streams are the site's."""

    @property
    def handler(self) -> Handler:
        """What answers the public listeners' exchanges now."""

    def listening(self, https_port: int | None) -> None:
        """The listeners are bound: `https_port` is where clear-text requests are redirected."""

    def reload(
        self, config: Config, https_port: int | None
    ) -> tuple[Handler, tuple[int, int, int]]:
        """A handler for `config` over the same upstream pool and streams, and the streams
        reconfigured for it: (kept, restarted, ended). Synchronous: a reload swaps at once."""

    async def close_streams(self) -> None:
        """End every stream subscriber now (SSE `retry:`, WebSocket 1001)."""

    async def close(self) -> None:
        """Close upstream connections: the last step of a stop."""


# Builds the admin listener's handler for a bridge (`bridge.ops.admin`, from the composition root).
AdminFactory = Callable[["Bridge"], Handler]


class Bridge:
    def __init__(self, config: Config, *, site: Site, admin: AdminFactory | None = None) -> None:
        self.config = config
        self.site = site
        self._admin_factory = admin
        self._admin: Handler | None = None  # made on the first bind of listen.admin
        self.ports: dict[str, int] = {}
        self.access_log: AccessLog | None = None
        self.context: ServerContext | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._listeners: dict[str, asyncio.AbstractServer] = {}  # by listen.* name
        self._reloading: asyncio.Future[None] | None = None
        self._reload_again = False
        self._stopped = asyncio.Event()
        self.ssl_context: ssl.SSLContext | None = None
        # For /readyz and /metrics: listeners bound (and not shutting down), reload outcomes.
        self.ready = False
        self.reloads: dict[str, int] = {}
        self.config_loaded_at = time.time()
        self.quic: QuicEndpoint | None = None
        # What the QUIC endpoint was made with (address, certificate and key bytes): a reload
        # cannot change it, so it warns only when the new config would have.
        self._quic_identity: tuple[Address, bytes] | None = None
        self.reuse_port = False  # SO_REUSEPORT listeners (`--workers`: server/workers.py)

    def tls_paths(self) -> tuple[Path, Path]:
        """The certificate and key TCP and QUIC both serve (dev ones when `tls:` is omitted)."""
        return self._cert_files(self.config)

    def tls(self, config: Config | None = None) -> ssl.SSLContext:
        return server_context(*self._cert_files(config or self.config))

    @staticmethod
    def _cert_files(config: Config) -> tuple[Path, Path]:
        return server_files(config.tls, config.source)

    async def start(self) -> None:
        config = self.config
        loop = asyncio.get_running_loop()
        self.access_log = AccessLog.open(config.access_log.path, config.access_log.format)
        install_sigusr1(loop, self.access_log)
        self.context = ServerContext(
            limits=config.limits,
            handler=self.site.handler,
            access_log=self.access_log,
            h2_engine=config.engines.http2,
        )
        listen = config.listen
        if listen.https is not None:
            self.ssl_context = self.tls()
        for name in LISTENERS:
            address = getattr(listen, name)
            if address is not None:
                await self._bind(name, address)
        if "https" in self.ports:
            self.site.listening(self.ports["https"])
        if listen.http3 is not None:
            # The loader requires listen.https with it: Alt-Svc is how clients find HTTP/3.
            port = self.ports["http3"] = await self._listen_quic(listen.http3)
            self.context.alt_svc = (b"alt-svc", b'h3=":%d"; ma=86400' % port)
        routes = len(config.routes)
        names = ", ".join(f"{k}={v}" for k, v in self.ports.items())
        log.info("bridge listening (%s); %d routes", names, routes)
        self.ready = True

    async def _bind(self, name: str, address: Address) -> asyncio.AbstractServer:
        if name == "admin":
            port = await self._listen_admin(address)
            server = self._servers[-1]
        else:
            tls = self.ssl_context if name == "https" else None
            port = await self._listen(address, name, tls)
            server = self._servers[-1]
        self._listeners[name] = server
        self.ports[name] = port
        return server

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

    async def _listen_admin(self, address: Address) -> int:
        """The admin listener: the same connection code as the public ones, with its own
        handler and context (no access log), plain HTTP."""
        if self._admin_factory is None:
            raise RuntimeError("listen.admin is set, but this bridge was built without admin")
        if self._admin is None:
            self._admin = self._admin_factory(self)
        ctx = ServerContext(limits=self.config.limits, handler=self._admin, access_log=None)
        host, port = address
        server = await asyncio.get_running_loop().create_server(
            lambda: ServerConnection(ctx, scheme="http"), host=host or None, port=port
        )
        self._servers.append(server)
        return server.sockets[0].getsockname()[1]

    def _http3_would_change(self, config: Config) -> bool:
        """Whether `config` asks HTTP/3 for something a reload cannot give it: turning it on or
        off, another address, or another certificate (by content: renewed in place counts)."""
        address = config.listen.http3
        if self._quic_identity is None or address is None:
            return (self._quic_identity is None) != (address is None)
        return quic_identity(address, self._cert_files(config)) != self._quic_identity

    async def _listen_quic(self, address: Address) -> int:
        ctx = self.context
        assert ctx is not None
        # aioquic logs every connection's version, ALPN and close at INFO: per-connection
        # noise in an operator's log (bridge's access log already has one line per request).
        logging.getLogger("quic").setLevel(logging.WARNING)
        cert, key = self.tls_paths()
        self._quic_identity = quic_identity(address, (cert, key))
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

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish within `grace` (default
        `limits.shutdown_grace`), then close. Stream subscribers are ended at once: SSE with
        a jittered `retry:`, WebSocket with 1001 (`Subscription.end_for_shutdown`)."""
        if grace is None:
            grace = self.config.limits.shutdown_grace
        self.ready = False
        ctx = self.context
        for server in self._servers:
            server.close()
        await self.site.close_streams()  # now (WebSocket 1001), not at the deadline
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
        await self.site.close()
        if self.access_log is not None:
            self.access_log.close()
        self._stopped.set()

    # --- reload ----------------------------------------------------------------------------------

    def reload_soon(self) -> None:
        """SIGHUP: reload, one at a time; a signal during a reload runs one more after it
        (the file may have changed again after it was read)."""
        if self._reloading is not None and not self._reloading.done():
            self._reload_again = True
            return
        self._reloading = asyncio.ensure_future(self._reload_while_asked())

    async def _reload_while_asked(self) -> None:
        while True:
            self._reload_again = False
            await self.reload()
            if not self._reload_again:
                return

    async def reload(self) -> bool:
        """Re-read the config file and the certificates, and swap atomically; False (and the
        old config keeps serving) when the file is invalid or applying it failed.

        Everything that can fail is done first — load and check the file, load the new
        certificate into a scratch context, open a new access log, bind new listeners — and
        only then is anything swapped: the TLS identity (new handshakes get it; open
        connections keep theirs), the site's handler (new requests; in-flight ones finish on
        the old) and its streams (`Site.reload`), and removed listeners stop accepting
        while their connections drain. The error log says what changed.
        """
        from ..routing.config import load_config

        source = self.config.source
        if not self.ready:
            log.warning("reload ignored: not serving (starting or shutting down)")
            return False
        try:
            config = load_config(source)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused: %s", problem)
            log.error(
                "reload refused: %d problem(s) in %s; still serving the previous config",
                len(exc.problems),
                source,
            )
            self._count_reload("invalid")
            return False
        from .workers import worker_config, worker_index

        if worker_index() is not None:
            # A `--workers` worker serves the supervisor's ports (and admin on worker 0 only):
            # the file's own listen addresses would rebind it away from the shared ones.
            config = worker_config(config)
        try:
            changes = await self._apply(config)
        except Exception as exc:  # a port taken, a file gone since the check: keep serving
            log.error("reload failed: %s; still serving the previous config", exc)
            self._count_reload("failed")
            return False
        self._count_reload("ok")
        log.info("reloaded %s: %s", source, changes)
        if self.access_log is not None:
            self.access_log.event("reload", changes)
        return True

    def _count_reload(self, outcome: str) -> None:
        self.reloads[outcome] = self.reloads.get(outcome, 0) + 1

    async def _apply(self, config: Config) -> str:
        old = self.config
        ctx = self.context
        if ctx is None:
            raise RuntimeError("not started")
        # 1. What can fail.
        cert_files = self._cert_files(config) if config.listen.https is not None else None
        if cert_files is not None:
            server_context(*cert_files)  # a scratch load: a broken pair fails here, not live
        access_log = None
        if config.access_log != old.access_log:
            access_log = AccessLog.open(config.access_log.path, config.access_log.format)
        moved = [
            name for name in LISTENERS if getattr(config.listen, name) != getattr(old.listen, name)
        ]
        if cert_files is not None and self.ssl_context is None:
            self.ssl_context = server_context(*cert_files)
        retired: list[asyncio.AbstractServer] = []
        bound: list[str] = []
        previous, previous_ports = dict(self._listeners), dict(self.ports)
        try:
            for name in moved:
                address = getattr(config.listen, name)
                if address is not None:
                    await self._bind(name, address)
                    bound.append(name)
        except BaseException:
            for name in bound:
                self._listeners[name].close()
                self._servers.remove(self._listeners[name])
            self._listeners.update(previous)
            self.ports.clear()
            self.ports.update(previous_ports)
            if access_log is not None:
                access_log.close()
            raise
        # 2. The swap: no await from here on, so no request sees half of it.
        for name in moved:
            if name in previous:
                retired.append(previous[name])
            if getattr(config.listen, name) is None:
                self._listeners.pop(name, None)
                self.ports.pop(name, None)
        if cert_files is not None and self.ssl_context is not None:
            self.ssl_context.load_cert_chain(*map(str, cert_files))
        ctx.handler, (kept, restarted, ended) = self.site.reload(config, self.ports.get("https"))
        ctx.limits = config.limits
        ctx.h2_engine = engine_factory(config.engines.http2)  # for connections from now on
        if access_log is not None:
            old_log, self.access_log = self.access_log, access_log
            ctx.access_log = access_log
            if old_log is not None:
                old_log.close()
            install_sigusr1(asyncio.get_running_loop(), access_log)  # rotation: the new one
        if self._http3_would_change(config):
            # The QUIC endpoint is not rebound by a reload (its socket and its TLS configuration
            # are made once at start): say so, rather than let the operator think it changed.
            log.warning("reload: HTTP/3 keeps its listener and certificate until a restart")
        self.config = config
        self.config_loaded_at = time.time()
        for server in retired:
            server.close()  # stops accepting; its open connections carry on and drain
            self._servers.remove(server)
        return describe_changes(old, config, moved, (kept, restarted, ended))

    # --- running -------------------------------------------------------------------------------

    async def serve_forever(self, pid_file: Path | None = None) -> None:
        """Run until SIGTERM or SIGINT, then shut down gracefully; SIGHUP reloads."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_soon)
        if pid_file is not None:
            write_pid_file(pid_file)  # before "listening": whoever waits for that finds it
        try:
            await self.start()
            tune_gc()
            await stop.wait()
        finally:
            if pid_file is not None:
                remove_pid_file(pid_file)
        grace = self.config.limits.shutdown_grace
        log.info("shutting down (grace %ss)", f"{grace:g}")
        await self.stop(grace)
        log.info("stopped")


LISTENERS = ("https", "http", "admin")  # TCP listeners, in the order they are bound


def describe_changes(
    old: Config, new: Config, moved: list[str], streams: tuple[int, int, int]
) -> str:
    """What a reload changed, for the error log: routes by path, listeners, streams."""

    def shape(route: Route) -> Route:
        return dataclasses.replace(route, index=0, line=0)

    before = {route.path: shape(route) for route in old.routes}
    after = {route.path: shape(route) for route in new.routes}
    added = [path for path in after if path not in before]
    removed = [path for path in before if path not in after]
    changed = [path for path in after if path in before and after[path] != before[path]]
    order_changed = [r.path for r in old.routes if r.path in after] != [
        r.path for r in new.routes if r.path in before
    ]
    parts = [
        f"routes added {added or 'none'}, removed {removed or 'none'},"
        f" changed {changed or 'none'}" + (", reordered" if order_changed else "")
    ]
    if moved:
        shown = [f"{name} {getattr(new.listen, name) or 'off'}" for name in moved]
        parts.append("listeners " + ", ".join(shown))
    parts.append("streams kept {}, restarted {}, ended {}".format(*streams))
    return "; ".join(parts)


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


def quic_identity(address: Address, cert_files: tuple[Path, Path]) -> tuple[Address, bytes]:
    """The QUIC endpoint's address and a digest of its certificate and key files' bytes."""
    digest = hashlib.sha256()
    for path in cert_files:
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(b"unreadable")
    return address, digest.digest()
