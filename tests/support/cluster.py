"""Real parts for cluster tests: a `redis-server` on a free loopback port (no persistence, so a
restart loses everything, the worst case) and `bridge serve` subprocesses sharing it.

    with RedisServer() as redis:
        node = BridgeNode(config)    # `python -m bridge serve`; node.http, node.admin ports
        node.kill()                  # kill -9
        redis.restart()

`redis-server` missing: the test skips locally, and fails under BRIDGE_REQUIRE_TOOLS=1 (CI).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from .harness import require_tool

ROOT = Path(__file__).resolve().parents[2]
# A single process says where it listens; a supervisor (--workers) where its workers do.
_LISTENING = re.compile(r"(?:bridge listening|supervising \d+ workers) \(([^)]*)\)")
_WORKER = re.compile(r"worker (\d+) started \(pid (\d+)\)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


class RedisServer:
    def __init__(self) -> None:
        self.binary = require_tool("redis-server")
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(self.ping, 10, f"redis-server on port {self.port} did not start")

    def ping(self) -> bool:
        return self.command("PING") == "+PONG"

    def command(self, *words: str) -> str:
        """One inline command, its first reply line (enough for PING and INFO's size)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(" ".join(words).encode() + b"\r\n")
            reply = sock.recv(65536).decode()
        return reply.split("\r\n", 1)[0]

    def info(self, section: str) -> str:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
            sock.sendall(f"INFO {section}\r\n".encode())
            data = b""
            while True:
                data += sock.recv(65536)
                head, _, rest = data.partition(b"\r\n")
                if head.startswith(b"$") and len(rest) >= int(head[1:]):
                    return rest[: int(head[1:])].decode()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def restart(self, down: float = 0.0) -> None:
        self.stop()
        time.sleep(down)
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class BridgeNode:
    """`python -m bridge serve -c <config>` from this checkout, listening on port 0."""

    def __init__(self, config: str, *, args: tuple[str, ...] = (), start: bool = True) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bridge-node-"))
        self.config = self.dir / "routes.yaml"
        self.config.write_text(config)
        self.log_path = self.dir / "bridge.log"
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}
        if start:
            self.start()

    def start(self, timeout: float = 20.0) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bridge", "serve", "-c", str(self.config), *self.args],
                cwd=self.dir,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        found = _wait(self._listening, timeout, f"bridge did not start:\n{self.log()}")
        self.ports = {k: int(v) for k, v in (p.split("=") for p in found.group(1).split(", "))}

    def _listening(self) -> re.Match[str] | None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"bridge exited with {self.proc.returncode}:\n{self.log()}")
        matches = list(_LISTENING.finditer(self.log()))
        return matches[0] if matches else None

    def workers(self) -> dict[int, int]:
        """Worker index → pid of its latest start (from the supervisor's log)."""
        return {int(i): int(pid) for i, pid in _WORKER.findall(self.log())}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def http(self) -> int:
        return self.ports["http"]

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http}{path}"

    def streams(self) -> list[dict[str, Any]]:
        admin = f"http://127.0.0.1:{self.ports['admin']}/streams"
        with urllib.request.urlopen(admin, timeout=5) as response:
            return list(json.loads(response.read()))

    def leads(self) -> bool:
        return any(s.get("leader") for s in self.streams())

    def kill(self) -> None:
        """kill -9: no goodbye, the lease is left to expire."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


def node_config(redis_url: str, upstream_port: int, *, lease: str = "0.6s", extra: str = "") -> str:
    return f"""\
listen:
  http: "127.0.0.1:0"
  admin: "127.0.0.1:0"
access_log:
  path: access.log
broker: "{redis_url}?lease={lease}"
upstreams:
  app:
    url: "http://127.0.0.1:{upstream_port}"
routes:
  - path: /feed/{{name}}
    stream:
      upstream: app
      poll: /feed/{{name}}
      every: 0.2s
      heartbeat: 0.5s
      history: 50
  - path: /patch/{{name}}
    stream:
      upstream: app
      poll: /feed/{{name}}
      every: 0.2s
      emit: patch
      heartbeat: 0.5s
      history: 50
{extra}"""
