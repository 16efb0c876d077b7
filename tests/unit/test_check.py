"""`bridge check` catches what would stop `bridge serve`: files and folders, certificate and key,
an admin listener off loopback, a misleading upstream message, meaningless combinations."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge import __version__
from bridge.certs import ensure_dev_certs
from bridge.errors import ConfigError
from bridge.routing.config import load_config

ROOT = Path(__file__).resolve().parents[2]
ROUTE = "routes: [{path: /, upstream: app}]\n"
APP = 'upstreams: {app: {url: "http://127.0.0.1:9000"}}\n'


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "routes.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p).removeprefix(f"{path}:") for p in info.value.problems]


@pytest.fixture
def unwritable(tmp_path: Path) -> Iterator[Path]:
    """A folder this process cannot create files in. Mode bits stop an ordinary user; root
    (as CI runs) ignores them, so there the folder is made immutable as well (chattr +i),
    which binds root too."""
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    immutable = os.geteuid() == 0
    if immutable:
        chattr = shutil.which("chattr")
        done = chattr is not None and subprocess.run([chattr, "+i", str(folder)]).returncode == 0
        if not done:
            if os.environ.get("BRIDGE_REQUIRE_TOOLS"):
                pytest.fail("running as root and chattr +i failed: cannot make a folder unwritable")
            pytest.skip("running as root without chattr +i: cannot make a folder unwritable")
    try:
        yield folder
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)])
        folder.chmod(0o700)


# Root reads any file (CAP_DAC_OVERRIDE): to see what an unprivileged reader sees, a command
# runs with the two capabilities that bypass file modes dropped (util-linux setpriv).
AS_UNPRIVILEGED_READER = [
    "setpriv",
    "--bounding-set",
    "-dac_override,-dac_read_search",
    "--inh-caps",
    "-dac_override,-dac_read_search",
]


def bridge(*args: str, cwd: Path, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    prefix = AS_UNPRIVILEGED_READER if unprivileged and os.geteuid() == 0 else []
    return subprocess.run(
        [*prefix, sys.executable, "-m", "bridge", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_missing_access_log_folder_is_reported_where_it_is_written(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'listen: {http: ":8080"}\naccess_log: {path: logs/a.log}\n' + APP + ROUTE
    )
    assert problems(path) == [
        f"2:20: access_log.path: the folder {tmp_path / 'logs'} does not exist"
        ' (create it, or use "-")'
    ]
    (tmp_path / "logs").mkdir()
    load_config(path)  # now fine


def test_access_log_that_is_a_folder(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    path = write(tmp_path, 'listen: {http: ":8080"}\naccess_log: {path: logs}\n' + APP + ROUTE)
    assert problems(path) == [
        f"2:20: access_log.path: {tmp_path / 'logs'} is a folder; name a file in it"
    ]


def test_access_log_folder_not_writable(tmp_path: Path, unwritable: Path) -> None:
    folder = unwritable
    path = write(tmp_path, 'listen: {http: ":8080"}\naccess_log: {path: ro/a.log}\n' + APP + ROUTE)
    assert problems(path) == [
        f"2:20: access_log.path: cannot create a.log in {folder}: not writable by this user"
    ]


def test_key_that_is_not_the_certificates_own(tmp_path: Path) -> None:
    ensure_dev_certs(tmp_path / "one")
    ensure_dev_certs(tmp_path / "two")
    path = write(
        tmp_path,
        'listen: {https: ":8443"}\ntls: {cert: one/server.crt, key: two/server.key}\n'
        + APP
        + ROUTE,
    )
    assert problems(path) == [
        f"2:34: tls.key: {tmp_path / 'two/server.key'} is not the key of"
        f" {tmp_path / 'one/server.crt'}"
    ]


def test_certificate_that_is_not_a_certificate(tmp_path: Path) -> None:
    ensure_dev_certs(tmp_path / "c")
    (tmp_path / "c" / "server.crt").write_text("not a certificate\n")
    path = write(
        tmp_path,
        'listen: {https: ":8443"}\ntls: {cert: c/server.crt, key: c/server.key}\n' + APP + ROUTE,
    )
    assert problems(path) == [
        f"2:13: tls.cert: {tmp_path / 'c/server.crt'} holds no PEM certificate"
    ]


def test_only_one_of_the_pair_exists(tmp_path: Path) -> None:
    ensure_dev_certs(tmp_path / "c")
    (tmp_path / "c" / "server.key").unlink()
    path = write(
        tmp_path,
        'listen: {https: ":8443"}\ntls: {cert: c/server.crt, key: c/server.key}\n' + APP + ROUTE,
    )
    assert problems(path) == [f"2:32: tls.key: {tmp_path / 'c/server.key'} not found"]


def files_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*"))


def test_named_certificate_files_that_are_missing_are_never_generated(tmp_path: Path) -> None:
    """A certbot path typo or a volume that did not mount: an error, never a dev certificate
    written into that folder."""
    (tmp_path / "live").mkdir()
    path = write(
        tmp_path,
        'listen: {https: "127.0.0.1:0"}\n'
        "tls: {cert: live/fullchain.pem, key: live/privkey.pem}\n" + APP + ROUTE,
    )
    before = files_under(tmp_path)
    assert problems(path) == [
        f"2:13: tls.cert: {tmp_path / 'live/fullchain.pem'} not found",
        f"2:38: tls.key: {tmp_path / 'live/privkey.pem'} not found",
    ]
    for command in ("check", "serve"):
        done = bridge(command, "-c", "routes.yaml", cwd=tmp_path)
        assert done.returncode == 1, done.stderr
        assert done.stderr.splitlines()[:2] == [
            f"routes.yaml:2:13: tls.cert: {tmp_path / 'live/fullchain.pem'} not found",
            f"routes.yaml:2:38: tls.key: {tmp_path / 'live/privkey.pem'} not found",
        ]
        assert "development certificate" not in done.stderr
    assert files_under(tmp_path) == before  # nothing written, here or in certs/


def test_named_certificate_files_in_a_folder_nobody_may_write(
    tmp_path: Path, unwritable: Path
) -> None:
    folder = unwritable
    path = write(
        tmp_path,
        'listen: {https: ":8443"}\ntls: {cert: ro/c/s.crt, key: ro/c/s.key}\n' + APP + ROUTE,
    )
    assert problems(path) == [
        f"2:13: tls.cert: {folder / 'c/s.crt'} not found",
        f"2:30: tls.key: {folder / 'c/s.key'} not found",
    ]


@pytest.mark.parametrize("broken", ["folder", "cert-not-pem", "key-not-pem", "unreadable"])
def test_named_certificate_files_that_cannot_be_served(tmp_path: Path, broken: str) -> None:
    ensure_dev_certs(tmp_path / "c")
    cert, key = tmp_path / "c/server.crt", tmp_path / "c/server.key"
    if broken == "folder":
        key.unlink()
        key.mkdir()
        expected = f"2:32: tls.key: {key} is a folder, not a file"
    elif broken == "cert-not-pem":
        cert.write_bytes(b"\x30\x82\x01\x0a binary DER, not PEM")
        expected = f"2:13: tls.cert: {cert} holds no PEM certificate"
    elif broken == "key-not-pem":
        key.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
        expected = f"2:32: tls.key: {key} holds no PEM private key"
    else:
        key.chmod(0)
        expected = f"2:32: tls.key: {key} is not readable by this user"
    path = write(
        tmp_path,
        'listen: {https: "127.0.0.1:0"}\ntls: {cert: c/server.crt, key: c/server.key}\n'
        + APP
        + ROUTE,
    )
    before = files_under(tmp_path)
    unreadable = broken == "unreadable"
    if not (unreadable and os.geteuid() == 0):  # this process, as root, could read it
        assert problems(path) == [expected]
    for command in ("check", "serve"):
        done = bridge(command, "-c", "routes.yaml", cwd=tmp_path, unprivileged=unreadable)
        assert done.returncode == 1, done.stderr
        assert done.stderr.splitlines()[0] == "routes.yaml:" + expected
    assert files_under(tmp_path) == before


def test_mismatched_pair_stops_serve_too(tmp_path: Path) -> None:
    ensure_dev_certs(tmp_path / "one")
    ensure_dev_certs(tmp_path / "two")
    write(
        tmp_path,
        'listen: {https: "127.0.0.1:0"}\ntls: {cert: one/server.crt, key: two/server.key}\n'
        + APP
        + ROUTE,
    )
    before = files_under(tmp_path)
    done = bridge("serve", "-c", "routes.yaml", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.splitlines()[0] == (
        f"routes.yaml:2:34: tls.key: {tmp_path / 'two/server.key'} is not the key of"
        f" {tmp_path / 'one/server.crt'}"
    )
    assert files_under(tmp_path) == before


def test_tls_omitted_and_a_file_where_the_certs_folder_would_be(tmp_path: Path) -> None:
    (tmp_path / "certs").write_text("not a folder\n")  # runs as root too: no permission trick
    path = write(tmp_path, 'listen: {https: ":8443"}\n' + APP + ROUTE)
    assert problems(path) == [
        f"1:1: tls: omitted, and a development certificate cannot be written to"
        f" {tmp_path / 'certs'}"
    ]


def test_tls_omitted_generates_into_certs_beside_the_config(tmp_path: Path) -> None:
    from bridge.certs import server_files
    from bridge.routing.model import TlsConfig

    (tmp_path / "conf").mkdir()
    source = tmp_path / "conf/routes.yaml"
    with caplog_of("bridge") as records:
        cert, key = server_files(TlsConfig(), source)
    folder = tmp_path / "conf/certs"
    assert (cert, key) == (folder / "server.crt", folder / "server.key")
    assert cert.exists() and key.exists() and (folder / "ca.crt").exists()
    assert records == [
        f"tls: omitted in {source}: generated a development certificate in {folder}"
        f" (trust {folder / 'ca.crt'}, or set tls.cert and tls.key)"
    ]
    with caplog_of("bridge") as records:
        assert server_files(TlsConfig(), source) == (cert, key)  # reused, no new line
    assert records == []
    named = TlsConfig(cert=tmp_path / "nope.crt", key=tmp_path / "nope.key")
    assert server_files(named, source) == (named.cert, named.key)  # never a fallback
    assert not (tmp_path / "certs").exists()


@contextlib.contextmanager
def caplog_of(name: str) -> Iterator[list[str]]:
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger(name)
    handler = Keep()
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def test_admin_listener_off_loopback_needs_admin_public(tmp_path: Path) -> None:
    text = 'listen: {http: ":8080", admin: "0.0.0.0:9901"}\n' + APP + ROUTE
    assert problems(write(tmp_path, text)) == [
        '1:32: listen.admin: "0.0.0.0" is not a loopback address, and /streams exposes every'
        " stream; use 127.0.0.1 or [::1], or set listen.admin_public: true"
    ]
    text = 'listen: {http: ":8080", admin: "0.0.0.0:9901", admin_public: true}\n' + APP + ROUTE
    assert load_config(write(tmp_path, text)).listen.admin_public is True
    for loopback in ("127.0.0.1:9901", "[::1]:9901", "localhost:9901"):
        text = f'listen: {{http: ":8080", admin: "{loopback}"}}\n' + APP + ROUTE
        assert load_config(write(tmp_path, text)).listen.admin_public is False
    text = 'listen: {http: ":8080", admin_public: yes}\n' + APP + ROUTE
    assert problems(write(tmp_path, text)) == ["1:39: listen.admin_public: expected true or false"]


def test_unknown_upstream_names_the_broken_one_it_probably_meant(tmp_path: Path) -> None:
    text = (
        'listen: {http: ":8080"}\nupstreams: {app: {url: "ftp://x"}}\n'
        "routes: [{path: /, upstream: ap}]\n"
    )
    assert problems(write(tmp_path, text)) == [
        '2:24: upstreams.app.url: expected "http://host[:port][/base]"',
        '3:30: routes[0].upstream: unknown upstream "ap" (upstreams: app (invalid))',
    ]


def test_shutdown_grace_is_a_limit(tmp_path: Path) -> None:
    text = 'listen: {http: ":8080"}\nlimits: {shutdown_grace: 250ms}\n' + APP + ROUTE
    assert load_config(write(tmp_path, text)).limits.shutdown_grace == 0.25
    text = 'listen: {http: ":8080"}\nlimits: {shutdown_grace: soon}\n' + APP + ROUTE
    assert problems(write(tmp_path, text)) == [
        '2:26: limits.shutdown_grace: expected a duration like "2s" (units: ms, s, m, h)'
    ]


SSE_SEND = """\
listen: {http: "127.0.0.1:8080"}
upstreams: {app: {url: "http://127.0.0.1:9000"}}
routes:
  - path: /s
    stream: {upstream: app, poll: /p, every: 1s, protocols: [sse], send: /in}
"""


def test_send_on_an_sse_only_stream_is_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, SSE_SEND)
    config = load_config(path)
    assert [str(w) for w in config.warnings] == [
        f"{path}:5:74: routes[0].stream.send: has no effect: only WebSocket messages are sent"
        " upstream, and protocols has no websocket"
    ]
    done = bridge("check", "-c", "routes.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "routes.yaml:5:74: warning: routes[0].stream.send: has no effect" in done.stderr
    assert done.stdout.endswith("routes.yaml: ok\n")


def test_other_websocket_only_fields_and_http_mode_alone_warn(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        listen: {https: "127.0.0.1:0", http_mode: serve}
        upstreams: {app: {url: "http://127.0.0.1:9000"}}
        routes:
          - path: /s
            stream:
              upstream: app
              poll: /p
              every: 1s
              protocols: [sse]
              ws_format: raw
              origins: ["https://a.example"]
        """,
    )
    config = load_config(path, check_files=False)
    assert [str(w).removeprefix(f"{path}:") for w in config.warnings] == [
        "1:43: listen.http_mode: has no effect without listen.http",
        "10:18: routes[0].stream.ws_format: has no effect: it shapes WebSocket messages, and"
        " protocols has no websocket",
        "11:16: routes[0].stream.origins: has no effect: Origin is checked on WebSocket"
        " handshakes, and protocols has no websocket",
    ]


def test_check_refuses_what_serve_would_fail_on(tmp_path: Path) -> None:
    write(tmp_path, 'listen: {http: "127.0.0.1:0"}\naccess_log: {path: logs/a.log}\n' + APP + ROUTE)
    for command in ("check", "serve"):
        done = bridge(command, "-c", "routes.yaml", cwd=tmp_path)
        assert done.returncode == 1
        assert done.stderr.splitlines()[0] == (
            f"routes.yaml:2:20: access_log.path: the folder {tmp_path / 'logs'} does not exist"
            ' (create it, or use "-")'
        )


def test_version(tmp_path: Path) -> None:
    done = bridge("--version", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"bridge {__version__}\n")


def test_repository_example_passes_check_with_its_files(tmp_path: Path) -> None:
    shutil.copy(ROOT / "routes.yaml", tmp_path / "routes.yaml")
    done = bridge("check", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr
