"""The effective configuration from the outside: `bridge check --print` on the repository's
routes.yaml, checked again by `bridge check`, and `/config` on the admin listener of a running
bridge, before and after a reload."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import yaml

from bridge.routing.config import load_config, parse_config
from tests.e2e.test_commands import ROOT, bridge
from tests.support.harness import config_text, run, running_bridge
from tests.support.origin import Origin
from tests.unit.test_printer import comparable

ROUTES = """\
routes:
  - path: /prices/{symbol}
    stream:
      upstream: app
      poll: /api/price?s={symbol}
      every: 100ms
  - path: /{rest*}
    upstream: app
"""


def test_check_print_is_yaml_that_check_accepts(tmp_path: Path) -> None:
    shutil.copy(ROOT / "routes.yaml", tmp_path / "routes.yaml")
    printed = bridge("check", "--print", "-c", "routes.yaml", cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.startswith("# The effective configuration of routes.yaml\n")
    assert "shutdown_grace: 10s\n" in printed.stdout  # a default the file states nowhere else
    assert yaml.safe_load(printed.stdout)["broker"] == "memory"
    (tmp_path / "printed.yaml").write_text(printed.stdout)
    again = bridge("check", "-c", "printed.yaml", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.endswith("printed.yaml: ok\n")
    assert "warning" not in again.stderr
    original, reread = (load_config(tmp_path / n) for n in ("routes.yaml", "printed.yaml"))
    assert comparable(reread) == comparable(original)


def test_check_print_of_a_broken_file_prints_nothing(tmp_path: Path) -> None:
    (tmp_path / "routes.yaml").write_text("listen: {http: 8080}\n")
    done = bridge("check", "--print", "-c", "routes.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == ""
    assert "problem(s)" in done.stderr


def test_admin_config_is_the_config_in_force_after_a_reload(certs: Path) -> None:
    async def body() -> None:
        async with Origin() as origin:
            origin.json("/api/price", {"p": 1})
            admin_listen = 'admin: "127.0.0.1:0"'
            text = config_text(
                ROUTES, upstream_url=origin.url, certs=certs, extra_listen=admin_listen
            )
            async with running_bridge(text, certs) as b:
                admin = httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{b.ports['admin']}", timeout=5
                )
                async with admin:
                    response = await admin.get("/config")
                    assert response.status_code == 200
                    assert response.headers["content-type"] == "application/yaml; charset=utf-8"
                    assert response.headers["cache-control"] == "no-store"
                    before = yaml.safe_load(response.text)
                    assert before["limits"]["max_connections"] == 20000
                    assert before["routes"][0]["stream"]["heartbeat"] == "15s"
                    assert before["access_log"]["path"] == "access.log"  # relative, as written
                    # What /config shows, saved beside the file, loads to the config in force.
                    shown = parse_config(response.text, b.directory / "shown.yaml")
                    assert comparable(shown) == comparable(b.bridge.config)

                    changed = ROUTES.replace("every: 100ms", "every: 100ms\n      heartbeat: 5s")
                    changed += "limits: {max_connections: 321}\n"
                    (b.directory / "routes.yaml").write_text(
                        config_text(
                            changed, upstream_url=origin.url, certs=certs, extra_listen=admin_listen
                        )
                    )
                    assert await b.bridge.reload()
                    after = yaml.safe_load((await admin.get("/config")).text)
                    assert after["limits"]["max_connections"] == 321
                    assert after["routes"][0]["stream"]["heartbeat"] == "5s"
                    head = await admin.head("/config")
                    assert head.status_code == 200 and head.content == b""

    run(body())
