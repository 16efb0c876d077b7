"""The files and folders a valid config needs, checked before anything binds a port.

`bridge check` and `bridge serve` both run this (through `load_config`), so what would stop
`serve` later (an access-log folder that does not exist, a key that does not belong to its
certificate) is reported up front as `routes.yaml:LINE:COL: field: message`, like every other
mistake. Checks only read (and probe a folder with `os.access`); nothing is created.

`tls:` files that are named must exist, be readable, be PEM and pair; only an omitted `tls:`
leads to a development certificate (`bridge.certs.server_files`), whose folder must be
writable (or already hold one).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from yaml.nodes import Node

from ..certs import dev_cert_dir
from .model import Config

Report = Callable[[Node | None, str, str], None]


def check_paths(config: Config, positions: dict[str, Node], error: Report) -> None:
    _check_access_log(config, positions.get("access_log.path"), error)
    _check_tls(config, positions, error)


def _check_access_log(config: Config, node: Node | None, error: Report) -> None:
    path = config.access_log.path
    if path == "-":
        return
    file = Path(path)
    field = "access_log.path"
    if file.is_dir():
        error(node, field, f"{file} is a folder; name a file in it")
        return
    folder = file.parent
    if not folder.is_dir():
        error(node, field, f'the folder {folder} does not exist (create it, or use "-")')
        return
    if file.exists():
        if not os.access(file, os.W_OK):
            error(node, field, f"{file} is not writable by this user")
    elif not os.access(folder, os.W_OK | os.X_OK):
        error(node, field, f"cannot create {file.name} in {folder}: not writable by this user")


def _check_tls(config: Config, positions: dict[str, Node], error: Report) -> None:
    """Named files must be a readable PEM certificate and its key: bridge never falls back to
    a development certificate for them, nor writes anything beside them. Only an omitted
    `tls:` gets a development certificate, in `certs/` beside the config."""
    cert, key = config.tls.cert, config.tls.key
    if cert is None or key is None:
        if config.listen.https is not None:
            _check_dev_folder(dev_cert_dir(config.source), error)
        return
    texts: dict[str, bytes] = {}
    for name, file in (("cert", cert), ("key", key)):
        read = _read_file(file)
        if isinstance(read, str):
            error(positions.get(f"tls.{name}"), f"tls.{name}", read)
        else:
            texts[name] = read
    if len(texts) != 2:
        return
    try:
        x509.load_pem_x509_certificates(texts["cert"])
    except ValueError:
        error(positions.get("tls.cert"), "tls.cert", f"{cert} holds no PEM certificate")
        return
    try:
        serialization.load_pem_private_key(texts["key"], None)
    except TypeError:
        # ssl would ask for the passphrase on the terminal, or fail: serve cannot use it.
        error(positions.get("tls.key"), "tls.key", f"{key} is encrypted; bridge needs it plain")
        return
    except (ValueError, UnsupportedAlgorithm):
        error(positions.get("tls.key"), "tls.key", f"{key} holds no PEM private key")
        return
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        why = exc.reason or str(exc)
        if "KEY_VALUES_MISMATCH" in str(why).upper():
            message = f"{key} is not the key of {cert}"
        else:
            message = f"cannot load the certificate and key: {why}"
        error(positions.get("tls.key"), "tls.key", message)
    except OSError as exc:
        error(positions.get("tls.cert"), "tls.cert", f"cannot read: {exc.strerror or exc}")


def _read_file(file: Path) -> bytes | str:
    """The bytes of `file`, or why it cannot be served from."""
    if not file.exists():
        return f"{file} not found"
    if file.is_dir():
        return f"{file} is a folder, not a file"
    if not os.access(file, os.R_OK):
        return f"{file} is not readable by this user"
    try:
        return file.read_bytes()
    except OSError as exc:
        return f"cannot read {file}: {exc.strerror or exc}"


def _check_dev_folder(folder: Path, error: Report) -> None:
    """A development certificate will be written into `folder` (or its nearest existing
    parent, which must let this user create it)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.is_dir() and os.access(probe, os.W_OK | os.X_OK):
        return
    if (folder / "server.crt").exists() and (folder / "server.key").exists():
        return  # generated before; only read now
    error(None, "tls", f"omitted, and a development certificate cannot be written to {folder}")
