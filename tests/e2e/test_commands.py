"""The commands and files a user meets first: `bridge certs`, `bridge demo`, `bridge serve` with
a bad config or a busy port, and the README / .ci/run / Dockerfile promises of issue 2."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from bridge.demo.run import ports_free
from bridge.routing.config import load_config
from tests.support.harness import run

ROOT = Path(__file__).resolve().parents[2]


def bridge(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_bridge_certs_writes_a_ca_and_a_server_certificate(tmp_path: Path) -> None:
    done = bridge("certs", "--dir", "out/certs", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "out" / "certs"
    assert "ca.crt" in done.stdout
    for key in ("ca.key", "server.key"):
        assert stat.S_IMODE(os.stat(out / key).st_mode) == 0o600, key
    readme = (out / "README.md").read_text()
    assert "ca.crt" in readme and "tls:" in readme  # how to trust, and how to replace
    ca = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    server = x509.load_pem_x509_certificates((out / "server.crt").read_bytes())[0]
    public = ca.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert server.signature_hash_algorithm is not None
    public.verify(  # raises if the server certificate is not signed by this CA
        server.signature, server.tbs_certificate_bytes, ec.ECDSA(server.signature_hash_algorithm)
    )
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    # the pair loads as a TLS server identity, and a client trusting only ca.crt accepts it
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(out / "server.crt", out / "server.key")
    ssl.create_default_context(cafile=str(out / "ca.crt"))


def test_bridge_certs_keeps_the_ca_unless_forced_and_adds_hosts(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    assert bridge("certs", "--dir", "certs", cwd=tmp_path).returncode == 0
    ca = (out / "ca.crt").read_bytes()
    first = (out / "server.crt").read_bytes()
    done = bridge("certs", "--dir", "certs", "--host", "app.test", "--host", "10.0.0.5",
                  cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("kept ")
    assert (out / "ca.crt").read_bytes() == ca  # what already trusts it keeps trusting
    assert (out / "server.crt").read_bytes() != first
    server = x509.load_pem_x509_certificates((out / "server.crt").read_bytes())[0]
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"localhost", "app.test"} <= set(names.get_values_for_type(x509.DNSName))
    addresses = {str(a) for a in names.get_values_for_type(x509.IPAddress)}
    assert {"127.0.0.1", "::1", "10.0.0.5"} <= addresses
    # a client trusting the old ca.crt accepts the new server certificate for the new name
    (tmp_path / "old-ca.crt").write_bytes(ca)
    trusting = ssl.create_default_context(cafile=str(tmp_path / "old-ca.crt"))
    assert trusting.cert_store_stats()["x509_ca"] == 1
    issuer = x509.load_pem_x509_certificate(ca)
    assert server.issuer == issuer.subject
    issuer.public_key().verify(  # type: ignore[call-arg]
        server.signature, server.tbs_certificate_bytes, ec.ECDSA(server.signature_hash_algorithm)
    )
    forced = bridge("certs", "--dir", "certs", "--force", cwd=tmp_path)
    assert forced.returncode == 0 and forced.stdout.startswith("wrote ")
    assert (out / "ca.crt").read_bytes() != ca


@contextlib.contextmanager
def demo(tmp_path: Path, *options: str) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """`bridge [options] demo` on free ports: the process, its page URL and its admin URL
    (read from its log, within a deadline); killed on the way out if still running."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", *options, "demo", "--port", "0"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = admin = None
        deadline = time.monotonic() + 30
        assert proc.stderr is not None
        seen = []
        while (url is None or admin is None) and time.monotonic() < deadline:  # bounded
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            found = re.search(r"open (https://localhost:\d+/)", line)
            if found:
                url = found.group(1)
            found = re.search(r"admin: (http://127.0.0.1:\d+/)metrics", line)
            if found:
                admin = found.group(1)
        assert url and admin, "".join(seen)
        yield proc, url, admin
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stop(proc: subprocess.Popen[str], how: signal.Signals = signal.SIGTERM) -> str:
    """Stop it with `how`; it must exit 0. The rest of its log."""
    proc.send_signal(how)
    assert proc.wait(20) == 0
    assert proc.stderr is not None
    return proc.stderr.read()


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["int", "term"])
def test_bridge_demo_serves_the_page_and_stops_on_a_signal(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    with demo(tmp_path) as (proc, url, admin):
        ca = tmp_path / "certs" / "ca.crt"

        async def visit() -> None:
            ctx = ssl.create_default_context(cafile=str(ca))
            async with httpx.AsyncClient(verify=ctx, http2=True, timeout=10) as c:
                page = await c.get(url)
                assert page.status_code == 200 and "<html" in page.text
                price = await c.get(url + "api/prices?symbol=DEMO")
                assert price.json()["symbol"] == "DEMO"
                stats = await c.get(url + "api/stats")
                assert stats.json()["viewers"] == 0 and stats.json()["polls"] >= 1
                async with httpx.AsyncClient(timeout=10) as plain:
                    metrics = await plain.get(admin + "metrics")
                    assert "bridge_connections" in metrics.text

        run(visit())
        rest = stop(proc, stop_signal)
        assert "Traceback" not in rest
        assert rest.strip().splitlines()[-1].endswith("bridge: stopped")  # as `serve` says


def test_verbose_logging_never_writes_request_headers(tmp_path: Path) -> None:
    """`-v` is DEBUG for every logger; hpack's logs each decoded header at DEBUG (cookies and
    credentials included), so bridge keeps that one at INFO."""
    with demo(tmp_path, "-v") as (proc, url, _):

        async def visit() -> None:
            ctx = ssl.create_default_context(cafile=str(tmp_path / "certs" / "ca.crt"))
            async with httpx.AsyncClient(verify=ctx, http2=True, timeout=10) as c:
                secrets = {"cookie": "session=SECRET-4711", "authorization": "Bearer TOKEN-4711"}
                page = await c.get(url, headers=secrets)
                assert page.status_code == 200 and page.http_version == "HTTP/2"

        run(visit())
        # Without the fix, hpack's DEBUG lines show both values ("session=SECRET-4711").
        assert "4711" not in stop(proc)


def test_serve_refuses_a_bad_config_before_listening(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text(
        'listen:\n  https: "127.0.0.1:0"\nroutes:\n  - path: /x\n    upstream: nowhere\n'
    )
    done = bridge("serve", "-c", "./bad.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        './bad.yaml:5:15: routes[0].upstream: unknown upstream "nowhere" (upstreams: none are defined)'
    )
    assert "listening" not in done.stderr


def test_serve_without_tls_generates_into_certs_beside_the_config_and_says_so(
    tmp_path: Path,
) -> None:
    """`tls:` omitted: a development certificate in certs/ beside the config (not the cwd), and
    a log line that says exactly that; a second start reuses it silently."""
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "routes.yaml").write_text(
        'listen:\n  https: "127.0.0.1:0"\n'
        'upstreams:\n  app:\n    url: "http://127.0.0.1:9"\n'
        "routes:\n  - path: /{rest*}\n    upstream: app\n"
    )
    folder = tmp_path / "conf" / "certs"
    for start in ("first", "second"):
        proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve", "-c", "conf/routes.yaml"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stderr is not None
            seen: list[str] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # bounded
                line = proc.stderr.readline()
                if not line:
                    break
                seen.append(line)
                if "bridge listening" in line:
                    break
            log = "".join(seen)
            assert "bridge listening (https=" in log, log
            told = (
                "tls: omitted in conf/routes.yaml: generated a development certificate in"
                f" {folder} (trust {folder / 'ca.crt'}, or set tls.cert and tls.key)"
            )
            assert (told in log) == (start == "first"), log
            assert "no TLS certificate configured" not in log
        finally:
            assert "Traceback" not in stop(proc)
        assert sorted(p.name for p in folder.iterdir()) == [
            "README.md",
            "ca.crt",
            "ca.key",
            "server.crt",
            "server.key",
        ]
    assert not (tmp_path / "certs").exists()


def test_serve_on_a_busy_port_exits_1_with_a_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (tmp_path / "routes.yaml").write_text(
            f'listen:\n  http: "127.0.0.1:{port}"\n'
            'upstreams:\n  app:\n    url: "http://127.0.0.1:9"\n'
            "routes:\n  - path: /{rest*}\n    upstream: app\n"
        )
        done = bridge("serve", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("bridge: ")
    assert "Traceback" not in done.stderr


def test_demo_on_a_busy_port_names_the_port_option(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = bridge("demo", "--port", str(port), cwd=tmp_path)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"bridge demo: a port in {port}-{port + 2} is in use"), last
    assert "--port" in last and "Traceback" not in done.stderr
    # The port it suggests has its next two free as well (the demo needs all three).
    found = re.search(r"try bridge demo --port (\d+) \((\d+)-(\d+) are free now\)", last)
    assert found, last
    other = int(found.group(1))
    assert other != port and int(found.group(3)) == other + 2
    assert ports_free(other)


def test_demo_help_says_it_uses_three_ports(tmp_path: Path) -> None:
    done = bridge("demo", "--help", cwd=tmp_path)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    assert "--port (HTTPS), --port + 1 (HTTP" in text and "--port + 2 (the admin" in text


def _shell_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S)]


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second() -> None:
    readme = (ROOT / "README.md").read_text()
    # The first thing after the title: two shell blocks, one command each.
    opening = readme.split("\n", 1)[1].lstrip()
    assert opening.startswith("```sh\n")
    demo, tests = _shell_blocks(readme)[:2]
    assert "\n" not in demo and "\n" not in tests
    assert "pip install" in demo and demo.endswith("bridge demo")
    assert "pip install" in tests and "pytest" in tests
    assert readme.index(tests) < readme.index("---")  # both before anything else
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [
        line.strip()
        for line in ci.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[-1] == tests  # exactly the README's test command, last
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


def test_dockerfile_is_slim_non_root_and_serves_on_8443_tcp_and_udp() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    [base] = [line for line in lines if line.startswith("FROM ")]
    assert re.fullmatch(r"FROM python:3\.\d+-slim(-\w+)?", base), base
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    exposed = {port for line in lines if line.startswith("EXPOSE ") for port in line.split()[1:]}
    assert {"8443/tcp", "8443/udp"} <= exposed
    [cmd] = [line for line in lines if line.startswith(("CMD ", "ENTRYPOINT "))]
    assert '"bridge", "serve"' in cmd and '"--pid-file"' in cmd  # so bridge reload works inside
    # The image's own config is a minimal one that says what to mount, not the annotated
    # example (whose upstream is 127.0.0.1:9000, the container itself).
    [copied] = [line for line in lines if line.startswith("COPY") and "routes.yaml" in line]
    source, target = copied.split()[-2:]
    assert source == "deploy/docker/routes.yaml" and target == "./conf/routes.yaml"
    config = load_config(ROOT / source, check_files=False)
    assert config.upstreams["app"].host != "127.0.0.1"
    assert "mount" in (ROOT / source).read_text().lower()
    # The health check follows the configured admin address: `bridge health -c <the config>`.
    [health] = [line for line in lines if line.startswith("HEALTHCHECK ")]
    assert '"bridge", "health", "-c", "/srv/bridge/conf/routes.yaml"' in health
    assert '"/srv/bridge/conf/routes.yaml"' in cmd


def test_python_dash_m_bridge_and_the_console_script_share_main() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["bridge"] == "bridge.cli:main"
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "--help"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    for command in ("serve", "check", "demo", "certs"):
        assert command in done.stdout
