"""`bridge serve --workers N`: N worker processes on one machine, each a whole bridge with its
own `SO_REUSEPORT` listeners on the same ports (the kernel spreads new connections over
them), sharing the stream broker so the upstream still sees one poll per stream.

The supervisor (this module, the process the operator started):
- validates the config once and refuses `--workers N > 1` with the in-process broker: each
  worker would poll every stream itself, and a client resuming on another worker would find
  other ids;
- resolves each listen address (port 0 included) to a concrete port by binding a placeholder
  `SO_REUSEPORT` socket it holds, never listening on it, so restarted workers get the same
  ports and nobody else can take them in between;
- starts the workers (`python -m bridge serve`, told their ports and index through the
  environment), restarts one that dies (with a growing pause if it keeps dying at once), and
  passes SIGHUP on to every worker and SIGTERM/SIGINT too, then waits for them to finish.
Only worker 0 opens the admin listener, so /metrics and /streams answer for one process, and
the HTTP/3 (UDP) listener, which SO_REUSEPORT cannot spread by QUIC connection.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from .. import settings
from ..certs import server_files
from ..errors import ConfigError
from ..routing.config import load_config
from ..routing.model import Address, Config
from .pidfile import remove_pid_file, write_pid_file

log = logging.getLogger("bridge.workers")

ENV_PORTS = "BRIDGE_WORKER_PORTS"  # {"https": 8443, ...} chosen by the supervisor
ENV_INDEX = "BRIDGE_WORKER_INDEX"
LISTENERS = ("https", "http", "admin")


def parse_workers(text: str) -> int:
    """`--workers` value: a count from 1, or `auto` (the cores this process may run on)."""
    if text == "auto":
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except AttributeError:  # pragma: no cover - not Linux
            return max(1, os.cpu_count() or 1)
    if not text.isdigit() or not 1 <= int(text) <= 256:
        raise ValueError(f'--workers: expected a number from 1 to 256 or "auto", got "{text}"')
    return int(text)


def refusal(config: Config, workers: int) -> str | None:
    """Why this config cannot run `workers` processes, or None."""
    if workers > 1 and config.broker is None:
        return (
            f"--workers {workers} needs a shared broker: with the in-process one (broker: memory)"
            " every worker would poll each stream itself and ids would differ between workers."
            ' Set `broker: "redis://host:port/db"` in the config, or use --workers 1.'
        )
    return None


# --- inside a worker ---------------------------------------------------------------------------


def worker_index() -> int | None:
    """This process's index when a supervisor started it, else None."""
    value = os.environ.get(ENV_INDEX)
    return int(value) if value is not None and value.isdigit() else None


def worker_config(config: Config) -> Config:
    """The config as this worker serves it: the supervisor's ports; admin on worker 0 only."""
    ports: dict[str, int] = json.loads(os.environ.get(ENV_PORTS, "{}"))
    listen = config.listen
    changes: dict[str, Address | None] = {}
    for name in LISTENERS:
        address: Address | None = getattr(listen, name)
        if address is not None and name in ports:
            changes[name] = (address[0], ports[name])
    if worker_index() != 0:
        # One admin listener answers for the machine; and QUIC packets cannot be spread over
        # SO_REUSEPORT sockets by connection (a connection's datagrams would reach workers
        # that do not know it), so HTTP/3 is served by worker 0 alone.
        changes["admin"] = None
        changes["http3"] = None
    return dataclasses.replace(config, listen=dataclasses.replace(listen, **changes))  # type: ignore[arg-type]


def plan(
    config_path: str, config: Config, workers: str, pid_file: Path | None = None
) -> Config | int:
    """`bridge serve`'s fork in the road: the config this process serves itself (a single
    process, or a worker), or the exit code of a supervisor run."""
    if worker_index() is not None:
        return worker_config(config)
    try:
        count = parse_workers(workers)
    except ValueError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return 2
    return supervise(config_path, config, count, pid_file) if count > 1 else config


# --- the supervisor ----------------------------------------------------------------------------


def _placeholder(address: Address) -> socket.socket:
    host, port = address
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
    return sock


class Supervisor:
    def __init__(
        self, config_path: str, config: Config, workers: int, pid_file: Path | None = None
    ) -> None:
        self.config_path = config_path
        self.pid_file = pid_file  # the supervisor's pid: it is the one that takes the signals
        self.config = config
        self.count = workers
        self.held: list[socket.socket] = []
        self.ports: dict[str, int] = {}
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * workers
        self.started: list[float] = [0.0] * workers
        self.pause: list[float] = [settings.WORKER_RESTART_MIN] * workers
        self.due: list[float] = [0.0] * workers
        self.stopping = False
        self.hup = False
        self.restarts = 0

    def reserve(self) -> None:
        if self.config.listen.https is not None:
            # Development certificates (`tls:` omitted) once, here, not raced for by N workers.
            server_files(self.config.tls, self.config.source)
        for name in LISTENERS:
            address = getattr(self.config.listen, name)
            if address is None:
                continue
            sock = _placeholder(address)
            self.held.append(sock)
            self.ports[name] = sock.getsockname()[1]

    def spawn(self, index: int) -> None:
        env = {**os.environ, ENV_PORTS: json.dumps(self.ports), ENV_INDEX: str(index)}
        cmd = [sys.executable, "-m", "bridge", "serve", "-c", self.config_path]
        proc = subprocess.Popen(cmd, env=env, cwd=Path.cwd())
        self.procs[index] = proc
        self.started[index] = time.monotonic()
        log.info("worker %d started (pid %d)", index, proc.pid)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.hup = True
        else:
            self.stopping = True

    def run(self) -> int:
        self.reserve()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._on_signal)
        names = ", ".join(f"{k}={v}" for k, v in self.ports.items())
        log.info("supervising %d workers (%s)", self.count, names)
        if self.pid_file is not None:
            write_pid_file(self.pid_file)
        for index in range(self.count):
            self.spawn(index)
        while not self.stopping:
            time.sleep(settings.WORKER_POLL)
            if self.hup:
                self.hup = False
                log.info("SIGHUP: passing it on to %d workers", self.count)
                self._signal_all(signal.SIGHUP)
                self._reread()
            self._tend()
        return self._stop()

    def _tend(self) -> None:
        now = time.monotonic()
        for index, proc in enumerate(self.procs):
            if proc is None:
                if now >= self.due[index]:
                    self.spawn(index)
                continue
            code = proc.poll()
            if code is None or self.stopping:
                continue  # (a Ctrl-C reaches the workers too, before the supervisor looks)
            quick = now - self.started[index] < settings.WORKER_STABLE
            self.pause[index] = (
                min(self.pause[index] * 2, settings.WORKER_RESTART_MAX)
                if quick
                else settings.WORKER_RESTART_MIN
            )
            self.due[index] = now + self.pause[index]
            self.procs[index] = None
            self.restarts += 1
            log.warning(
                "worker %d (pid %d) exited with %s; restarting in %.1fs",
                index,
                proc.pid,
                code,
                self.pause[index],
            )

    def _reread(self) -> None:
        """Keep the supervisor's view of `limits` in step with what the workers reload: the
        stop deadline follows the configured grace. A file the workers refuse is refused here
        too (they report why), and the old limits stay."""
        try:
            self.config = load_config(self.config_path)
        except (ConfigError, OSError):  # the workers log why; the supervisor keeps what it had
            return

    def stop_deadline(self) -> float:
        """Seconds a worker gets to exit after SIGTERM: its own `limits.shutdown_grace`, then
        a margin to close connections and flush logs, then it is killed."""
        return self.config.limits.shutdown_grace + settings.WORKER_KILL_MARGIN

    def _signal_all(self, sig: int) -> None:
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                try:
                    proc.send_signal(sig)
                except ProcessLookupError:
                    pass

    def _stop(self) -> int:
        log.info("stopping %d workers", self.count)
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_deadline()
        for proc in self.procs:
            if proc is None:
                continue
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker pid %d did not stop in time; killing it", proc.pid)
                proc.kill()
                proc.wait(5)
        for sock in self.held:
            sock.close()
        if self.pid_file is not None:
            remove_pid_file(self.pid_file)
        return 0


def supervise(config_path: str, config: Config, workers: int, pid_file: Path | None = None) -> int:
    problem = refusal(config, workers)
    if problem is not None:
        print(f"bridge: {problem}", file=sys.stderr)
        return 2
    try:
        return Supervisor(config_path, config, workers, pid_file).run()
    except OSError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return 1
