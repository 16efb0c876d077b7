"""`pip install` of a built wheel (not the editable checkout) serves the demo (issue 23).

Slow for a test (a wheel build, a venv and an install: about 10-20 s) but part of the suite:
packaging breaks silently otherwise (package data left out of the wheel, an import that only
works from the checkout). The venv sees the machine's packages (`--system-site-packages`), so
nothing is downloaded; the wheel is installed into the venv itself, and the test checks that
the `bridge` the venv runs is the installed one, package data included.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.harness import run

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str | Path, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.timeout(120)
def test_a_built_wheel_installs_and_serves_the_demo(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PIP_NO_INDEX"] = "1"  # everything comes from this machine
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    # Build from a copy: the build's scratch folders never land in the checkout.
    source = tmp_path / "source"
    shutil.copytree(
        ROOT, source, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__")
    )
    dist = tmp_path / "dist"
    _run(
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
        "-w", dist, source, cwd=tmp_path, env=env,
    )  # fmt: skip
    [wheel] = dist.glob("bridge-*.whl")
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--system-site-packages", venv, cwd=tmp_path, env=env)
    python, script = venv / "bin" / "python", venv / "bin" / "bridge"
    _run(python, "-m", "pip", "install", "--no-deps", "--force-reinstall", wheel, cwd=tmp_path, env=env)  # fmt: skip
    # The installed package runs, not the checkout (nor an editable install on the machine),
    # and its package data came with it.
    where = _run(
        python, "-c", "import bridge, pathlib; print(pathlib.Path(bridge.__file__).parent)",
        cwd=tmp_path, env=env,
    ).strip()  # fmt: skip
    package = Path(where)
    assert package.is_relative_to(venv), where
    assert {p.name for p in (package / "demo" / "static").iterdir()} >= {
        "index.html", "app.js", "app.css",
    }  # fmt: skip
    assert script.exists()

    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.Popen(
        [str(script), "demo", "--port", "0"],
        cwd=home,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        url, seen, deadline = None, [], time.monotonic() + 30
        while url is None and time.monotonic() < deadline:  # bounded
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            found = re.search(r"open (https://localhost:\d+/)", line)
            url = found.group(1) if found else None
        assert url, "".join(seen)
        ctx = ssl.create_default_context(cafile=str(home / "certs" / "ca.crt"))

        async def visit() -> None:
            async with httpx.AsyncClient(verify=ctx, timeout=15) as client:
                page = await client.get(url)
                assert page.status_code == 200 and "<html" in page.text
                script_js = await client.get(url + "static/app.js")  # package data, served
                assert script_js.status_code == 200 and "EventSource" in script_js.text
                headers = {"accept": "text/event-stream"}
                async with client.stream("GET", url + "prices/DEMO", headers=headers) as stream:
                    assert stream.status_code == 200
                    async for text in stream.aiter_text():
                        if "data:" in text:
                            break

        run(visit())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert proc.stderr.read().strip().endswith("stopped")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
