"""The process as operators run it: `bridge serve` as a subprocess, graceful SIGTERM, SIGUSR1
log reopening, the admin endpoints, and development certificates."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.harness import config_text, run, running_bridge
from tests.support.origin import Origin

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"port {port} never opened")


def test_serve_generates_certs_reopens_logs_and_stops_gracefully(tmp_path: Path) -> None:
    async def slow(request):  # type: ignore[no-untyped-def]
        await asyncio.sleep(1.0)
        return 200, [], b"finished"

    async def body() -> None:
        async with Origin() as origin:
            origin.route("/slow", slow)
            https, admin = free_port(), free_port()
            (tmp_path / "routes.yaml").write_text(
                f'listen:\n  https: "127.0.0.1:{https}"\n  admin: "127.0.0.1:{admin}"\n'
                f"access_log:\n  path: logs/access.log\n  format: combined\n"
                f'upstreams:\n  app:\n    url: "{origin.url}"\n'
                "routes:\n  - path: /{rest*}\n    upstream: app\n"
            )
            (tmp_path / "logs").mkdir()
            proc = subprocess.Popen(
                [sys.executable, "-m", "bridge", "serve", "-c", "routes.yaml"],
                cwd=tmp_path,
                stderr=subprocess.PIPE,
            )
            try:
                await asyncio.to_thread(wait_port, https, proc)
                certs = tmp_path / "certs"
                assert stat.S_IMODE(os.stat(certs / "server.key").st_mode) == 0o600
                assert (certs / "README.md").exists()
                ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
                async with httpx.AsyncClient(verify=ctx, http2=True) as c:
                    r = await c.get(f"https://localhost:{https}/echo")
                    assert r.status_code == 200
                    # log rotation: move the file, SIGUSR1, the next line lands in a new file
                    log = tmp_path / "logs" / "access.log"
                    log.rename(tmp_path / "logs" / "access.log.1")
                    proc.send_signal(signal.SIGUSR1)
                    await asyncio.sleep(0.3)
                    await c.get(f"https://localhost:{https}/echo?after-rotation")
                    await asyncio.sleep(0.2)
                    assert "after-rotation" in log.read_text()
                    assert "after-rotation" not in (tmp_path / "logs" / "access.log.1").read_text()
                    # admin endpoints
                    async with httpx.AsyncClient() as plain:
                        assert (await plain.get(f"http://127.0.0.1:{admin}/healthz")).text == "ok\n"
                        metrics = (await plain.get(f"http://127.0.0.1:{admin}/metrics")).text
                        assert (
                            "bridge_requests_total" in metrics and "bridge_connections" in metrics
                        )
                        assert (await plain.get(f"http://127.0.0.1:{admin}/streams")).json() == []
                    # graceful stop: the in-flight request finishes, new connections are refused
                    inflight = asyncio.create_task(c.get(f"https://localhost:{https}/slow"))
                    await asyncio.sleep(0.3)
                    proc.send_signal(signal.SIGTERM)
                    response = await inflight
                    assert response.status_code == 200 and response.text == "finished"
                code = await asyncio.to_thread(proc.wait, 20)
                assert code == 0
                stderr = proc.stderr.read().decode() if proc.stderr else ""
                assert "bridge listening" in stderr and "1 routes" in stderr
                assert "development certificate" in stderr
                assert "Traceback" not in stderr
                combined = log.read_text().splitlines()[-1]
                assert combined.startswith("127.0.0.1 - - [")
                assert '"GET /slow HTTP/2.0" 200 8' in combined
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    run(body(), timeout=90)


def test_combined_log_escapes_peer_text(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            text = config_text(
                "routes:\n  - path: /{rest*}\n    upstream: app\n",
                upstream_url=origin.url,
                certs=certs,
            )
            text = text.replace("format: json", "format: combined")
            async with running_bridge(text, certs) as b:
                reader, writer = await asyncio.open_connection("127.0.0.1", b.ports["http"])
                # Control characters never get this far (llhttp refuses them in a field
                # value, RFC 9110 §5.5); obs-text does, and is escaped.
                writer.write(
                    b'GET /x HTTP/1.1\r\nHost: a\r\nUser-Agent: evil" \\ \xffagent\r\nConnection: close\r\n\r\n'
                )
                await reader.read()
                writer.close()
                await asyncio.sleep(0.1)
                line = (b.directory / "access.log").read_text().splitlines()[-1]
                # (the value is read as latin-1 and logged as UTF-8 bytes: ÿ is C3 BF)
                assert '"evil\\" \\\\ \\xC3\\xBFagent"' in line
                assert line.count("\n") == 0

    run(body())


def test_json_log_lines(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            text = config_text(
                "routes:\n  - path: /{rest*}\n    upstream: app\n",
                upstream_url=origin.url,
                certs=certs,
            )
            async with (
                running_bridge(text, certs) as b,
                httpx.AsyncClient(verify=b.client_ssl(), http2=True) as c,
            ):
                await c.get(b.url("https", "/echo?q=1"), headers={"referer": "https://r.example/"})
                entry = json.loads((b.directory / "access.log").read_text().splitlines()[-1])
                assert entry["protocol"] == "HTTP/2.0" and entry["status"] == 200
                assert entry["upstream_status"] == 200 and entry["route"] == "/{rest*}"
                assert entry["referer"] == "https://r.example/" and entry["target"] == "/echo?q=1"
                assert entry["duration_ms"] >= 0 and entry["bytes"] > 0

    run(body())
