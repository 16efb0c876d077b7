"""The files and folders a valid config needs, checked before anything binds a port.

`bridge check` and `bridge serve` both run this (through `load_config`), so what would stop
`serve` later (an access-log folder that does not exist, a key that does not belong to its
certificate) is reported up front as `routes.yaml:LINE:COL: field: message`, like every other
mistake. Checks only read (and probe a folder with `os.access`); nothing is created.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from yaml.nodes import Node

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
    cert, key = config.tls.cert, config.tls.key
    if config.listen.https is None:
        return
    if cert is None or key is None:
        _check_dev_folder(Path(config.source).resolve().parent / "certs", None, error)
        return
    have_cert, have_key = cert.exists(), key.exists()
    if not have_cert and not have_key:
        # ROUTES.md: files absent means a development certificate is generated next to them.
        _check_dev_folder(cert.parent, positions.get("tls.cert"), error)
        return
    if not have_cert or not have_key:
        # Generating a pair here would overwrite the one that exists.
        missing, there = ("cert", key) if not have_cert else ("key", cert)
        error(positions.get(f"tls.{missing}"), f"tls.{missing}", f"not found (but {there} exists)")
        return
    for name, file in (("cert", cert), ("key", key)):
        if not os.access(file, os.R_OK):
            error(positions.get(f"tls.{name}"), f"tls.{name}", f"{file} is not readable")
            return
    try:
        x509.load_pem_x509_certificates(cert.read_bytes())
    except ValueError:
        error(positions.get("tls.cert"), "tls.cert", f"{cert} holds no PEM certificate")
        return
    except OSError as exc:
        error(positions.get("tls.cert"), "tls.cert", f"cannot read: {exc.strerror or exc}")
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


def _check_dev_folder(folder: Path, node: Node | None, error: Report) -> None:
    """A development certificate will be written into `folder` (or its nearest existing
    parent, which must let this user create it)."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.is_dir() and os.access(probe, os.W_OK | os.X_OK):
        return
    if (folder / "server.crt").exists() and (folder / "server.key").exists():
        return  # generated before; only read now
    field = "tls.cert" if node is not None else "tls"
    error(node, field, f"no certificate, and a development one cannot be written to {folder}")
