"""What an operator meets after the demo (issue 23): the error-log options in either place,
`bridge health` following the configured admin listener, and `bridge reload` reporting the
running process's own verdict rather than only having asked."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def config(admin: int, http: int, *, extra_listen: str = "") -> str:
    return (
        f'listen:\n  http: "127.0.0.1:{http}"\n  http_mode: serve\n'
        f'  admin: "127.0.0.1:{admin}"\n{extra_listen}'
        'upstreams:\n  app:\n    url: "http://127.0.0.1:9"\n'
        "routes:\n  - path: /{rest*}\n    upstream: app\n"
    )


def bridge(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
    )


@contextlib.contextmanager
def serving(tmp_path: Path, *options: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """`bridge serve` on tmp_path/routes.yaml with a pid file; its log lines so far."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--pid-file", "bridge.pid", *options],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # bounded
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if "listening" in line:
                break
        assert any("listening" in line for line in seen), "".join(seen)
        yield proc, seen
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
def test_log_options_are_accepted_before_or_after_the_subcommand(
    tmp_path: Path, before: bool
) -> None:
    (tmp_path / "routes.yaml").write_text(config(free_port(), free_port()))
    options = ["-v", "--log-format", "json"]
    args = [*options, "serve"] if before else ["serve", *options]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", *args],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()
        record = json.loads(first)  # --log-format json: one object per line
        assert set(record) >= {"time", "level", "logger", "message"}, record
        assert record["time"].endswith("Z")
        lines = [first]
        while not any("listening" in line for line in lines):
            line = proc.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert proc.stderr is not None
    rest = [json.loads(line) for line in proc.stderr.read().splitlines()]
    assert rest[-1]["message"] == "stopped"


@pytest.mark.parametrize("before", [True, False], ids=["before", "after"])
def test_log_level_warning_leaves_out_info(tmp_path: Path, before: bool) -> None:
    (tmp_path / "routes.yaml").write_text(config(free_port(), free_port()))
    options = ["--log-level", "WARNING"]  # the level's case does not matter
    args = [*options, "serve"] if before else ["serve", *options]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", *args, "--pid-file", "bridge.pid"],
        cwd=tmp_path,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while bridge("health", cwd=tmp_path).returncode != 0:  # bounded
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert proc.stderr is not None
    assert proc.stderr.read() == ""  # neither "listening" nor "stopped": both are INFO


def test_bad_log_options_are_refused(tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_text("listen: {http: 1}\n")
    done = bridge("check", "-v", "--log-level", "error", cwd=tmp_path)
    assert done.returncode == 1 and "listen.http" in done.stderr  # problems are not log lines
    refused = bridge("check", "--log-format", "xml", cwd=tmp_path)
    assert refused.returncode == 2 and "--log-format" in refused.stderr


def test_bridge_health_follows_the_configured_admin_listener(tmp_path: Path) -> None:
    admin = free_port()
    (tmp_path / "routes.yaml").write_text(config(admin, free_port()))
    down = bridge("health", cwd=tmp_path)
    assert down.returncode == 1 and f"127.0.0.1:{admin}/healthz" in down.stderr
    with serving(tmp_path):
        up = bridge("health", "-c", "routes.yaml", cwd=tmp_path)
        assert up.returncode == 0, up.stderr
        assert f"http://127.0.0.1:{admin}/healthz: ok" in up.stdout
    (tmp_path / "none.yaml").write_text(config(admin, free_port()).replace("  admin:", "  #"))
    missing = bridge("health", "-c", "none.yaml", cwd=tmp_path)
    assert missing.returncode == 1 and "no listen.admin" in missing.stderr


def test_bridge_reload_reports_the_running_process_verdict(tmp_path: Path) -> None:
    admin, http = free_port(), free_port()
    path = tmp_path / "routes.yaml"
    path.write_text(config(admin, http))
    with serving(tmp_path) as (proc, _), socket.socket() as busy:
        # A file with mistakes: the running process is not asked, and keeps serving.
        path.write_text(config(admin, http).replace("http_mode: serve", "http_mode: sometimes"))
        refused = bridge("reload", cwd=tmp_path)
        assert refused.returncode == 1
        assert refused.stderr.splitlines()[-1] == (
            "routes.yaml: 1 problem(s); the running bridge was not asked to reload and keeps"
            " serving its current config"
        )
        # A good file: the process's own verdict comes back.
        path.write_text(config(admin, http).replace("http_mode: serve", "http_mode: redirect"))
        done = bridge("reload", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == (
            f"routes.yaml: ok; asked process {proc.pid} to reload: reloaded"
            " (its error log says what changed)"
        )
        # A file the check passes but the process cannot apply (a new listener's port is
        # taken): the process refuses it, and `bridge reload` says so and exits 1.
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        path.write_text(config(admin, http, extra_listen=f'  https: "127.0.0.1:{taken}"\n'))
        failed = bridge("reload", cwd=tmp_path)
        assert failed.returncode == 1, failed.stdout
        assert f"process {proc.pid} refused routes.yaml (could not apply it" in failed.stderr
        assert "keeps serving its previous config" in failed.stderr
        ok = bridge("health", cwd=tmp_path)
        assert ok.returncode == 0  # still serving


def test_the_deploy_examples_are_consistent() -> None:
    """What an operator copies: the configs pass `bridge check`; systemd reloads through
    `bridge reload` and waits longer than the graceful stop; logrotate signals USR1."""
    from bridge.routing.config import load_config
    from bridge.routing.units import parse_duration
    from bridge.settings import Limits

    for name in ("deploy/docker/routes.yaml", "deploy/compose/conf/routes.yaml"):
        load_config(ROOT / name, check_files=False)
    unit = dict(
        line.split("=", 1)
        for line in (ROOT / "deploy/systemd/bridge.service").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert (
        " reload " in unit["ExecReload"] and "--pid-file " + unit["PIDFile"] in unit["ExecReload"]
    )
    assert "--pid-file " + unit["PIDFile"] in unit["ExecStart"]
    assert unit["KillSignal"] == "SIGTERM"
    assert parse_duration(unit["TimeoutStopSec"]) > Limits().shutdown_grace
    rotate = (ROOT / "deploy/logrotate/bridge").read_text()
    assert "kill -USR1" in rotate and unit["PIDFile"] in rotate and "copytruncate" not in rotate
    compose = (ROOT / "deploy/compose/compose.yaml").read_text()
    assert all(f"\n  {service}:" in compose for service in ("bridge", "app", "redis"))


def test_the_documentation_links_stay_inside_the_repository() -> None:
    """README, docs/, routes.yaml and certs/README.md point into docs/, never outside the
    repository (a clone has no ../shared); every relative link names a file that exists.
    The code's own comments name the repository's documents, not the project's shared folder."""
    import re

    pages = [ROOT / "README.md", ROOT / "certs" / "README.md", *(ROOT / "docs").glob("*.md")]
    for page in pages:
        text = page.read_text()
        assert "../shared" not in text, page
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
            if "://" in target:
                continue
            resolved = (page.parent / target).resolve()
            assert resolved.is_relative_to(ROOT), (page, target)
            assert resolved.exists(), (page, target)
    assert "docs/configuration.md" in (ROOT / "routes.yaml").read_text()
    for source in (ROOT / "bridge").rglob("*.py"):
        text = source.read_text()
        assert "../shared" not in text and "ROUTES.md" not in text, source
    readme = (ROOT / "README.md").read_text()
    assert "docs/architecture.md" in readme and "docs/performance.md" in readme
    assert "| 10,000 subscribers |" not in readme  # benchmark tables live in docs/performance.md


def test_the_configuration_reference_names_every_key_the_loader_accepts() -> None:
    from bridge.routing import model
    from bridge.settings import Limits

    reference = (ROOT / "docs" / "configuration.md").read_text()
    sections = (
        model.Config, model.Listen, model.TlsConfig, model.AccessLogConfig, model.Upstream,
        model.Route, model.StreamSpec, Limits,
    )  # fmt: skip
    accepted = [key for section in sections for key in model.keys(section)]
    keys = [*accepted, *(f"longpoll.{key}" for key in model.keys(model.LongPoll))]
    missing = [key for key in keys if f"`{key}`" not in reference]
    assert not missing, missing
    # Keys of the contract this version's loader still refuses are marked as such.
    for key in ("engines", "notify", "headers", "ignore_query", "authorize"):
        if key not in accepted:
            # Where the key is defined: its table row, or its section's heading.
            row, heading = reference.find(f"| `{key}` |"), reference.find(f"## `{key}`")
            at = row if row >= 0 else heading
            assert at >= 0, key
            assert "not implemented yet in this version" in reference[at : at + 600], key
