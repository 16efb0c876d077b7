"""The `bridge` command: serve, check, reload, health, demo, certs (docs/configuration.md
"Command line"). The error-log options (`-v`, `--log-level`, `--log-format`) are accepted before
or after the subcommand."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import __version__, errorlog, settings
from .errors import ConfigError

_NOT_ASKED = "the running bridge was not asked to reload and keeps serving its current config"


def _log_options() -> argparse.ArgumentParser:
    """The error-log options, shared by the top level and every subcommand. SUPPRESS: a
    subcommand that was not given one leaves what the top level was given."""
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
        help="debug logging (--log-level debug)",
    )  # fmt: skip
    options.add_argument(
        "--log-level", type=str.lower, choices=errorlog.LEVELS, default=argparse.SUPPRESS,
        help="error log (stderr) level (default: info)",
    )  # fmt: skip
    options.add_argument(
        "--log-format", type=str.lower, choices=errorlog.FORMATS, default=argparse.SUPPRESS,
        help="error log (stderr) format: text lines or one JSON object per line (default: text)",
    )  # fmt: skip
    return options


def main(argv: list[str] | None = None) -> int:
    log_options = _log_options()
    parser = argparse.ArgumentParser(
        prog="bridge",
        description="Turn polled HTTP endpoints into push streams.",
        parents=[log_options],
    )
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {}
    for name, text in (
        ("serve", "run the proxy"),
        ("check", "validate the config and print the route table"),
        ("reload", "validate the config, make the running bridge reload it, report its verdict"),
        ("health", "ask the running bridge's admin listener for /healthz (exit 0 when healthy)"),
    ):
        cmd = commands[name] = sub.add_parser(name, help=text, parents=[log_options])
        cmd.add_argument(
            "-c", "--config", default="routes.yaml", help="config file (default: ./routes.yaml)"
        )
        if name == "serve":
            cmd.add_argument(
                "--workers", default="1", help="processes, or auto for one per core (default 1)"
            )
    commands["check"].add_argument(
        "--print",
        action="store_true",
        dest="print_config",
        help="print the whole effective config (defaults filled, secrets masked) as YAML",
    )
    commands["serve"].add_argument(
        "--pid-file", help="write the process id here (for bridge reload); removed at exit"
    )
    commands["reload"].add_argument(
        "--pid-file", help="the running bridge's pid file (default: bridge.pid beside the config)"
    )
    demo = sub.add_parser(
        "demo",
        help="run the embedded polling demo app with bridge in front",
        description="The demo listens on three loopback ports: --port (HTTPS), --port + 1"
        " (HTTP, redirects to HTTPS) and --port + 2 (the admin listener); all three must be free.",
        parents=[log_options],
    )
    demo.add_argument(
        "--port",
        type=int,
        default=8443,
        help="HTTPS port for bridge (default 8443); the demo also uses the next two (HTTP, admin)",
    )
    certs = sub.add_parser(
        "certs", help="generate a development CA and server certificate", parents=[log_options]
    )
    certs.add_argument("--dir", default="certs", help="output directory (default: ./certs)")
    certs.add_argument(
        "--host",
        action="append",
        default=[],
        help="another name or IP address for the server certificate (repeatable)",
    )
    certs.add_argument(
        "--force", action="store_true", help="replace the development CA too (default: keep it)"
    )
    parser.add_argument("--version", action="version", version=f"bridge {__version__}")
    args = parser.parse_args(argv)
    level = getattr(args, "log_level", None) or (
        "debug" if getattr(args, "verbose", False) else "info"
    )
    errorlog.configure(level, getattr(args, "log_format", "text"))
    if args.command == "check":
        return _check(args.config, print_config=args.print_config)
    if args.command == "serve":
        return _serve(args.config, args.workers, args.pid_file)
    if args.command == "reload":
        return _reload(args.config, args.pid_file)
    if args.command == "health":
        return _health(args.config)
    if args.command == "certs":
        from .certs import generate_for_cli

        generate_for_cli(Path(args.dir), hosts=tuple(args.host), force=args.force)
        return 0
    if args.command == "demo":
        from .demo.run import run_demo

        return run_demo(port=args.port)
    return 2


def _load(path: str, refused: str = "not serving", check_files: bool = True):  # type: ignore[no-untyped-def]
    """The config at `path`, or None after printing every problem and `refused` (what that
    means for the command that asked)."""
    from .routing.config import load_config

    try:
        config = load_config(path, check_files=check_files)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{path}: {len(exc.problems)} problem(s); {refused}", file=sys.stderr)
        return None
    for warning in config.warnings:
        print(
            f"{warning.path}:{warning.line}:{warning.col}: warning: {warning.message}",
            file=sys.stderr,
        )
    return config


def _check(path: str, *, print_config: bool = False) -> int:
    from .routing.printer import render
    from .routing.table import describe

    config = _load(path)
    if config is None:
        return 1
    if print_config:  # stdout is the YAML alone, so it can be saved and checked again
        print(render(config), end="")
        return 0
    print(describe(config))
    print(_engines_line(config.engines.http2, config.engines.http3))
    print(f"{path}: ok")
    return 0


def _engines_line(http2: str, http3: str) -> str:
    """The protocol engines `serve` would run with this config, and why not the asked one."""
    from .protocol.http2 import engine_in_use

    running, why = engine_in_use(http2)
    note = f" ({why})" if why else ""
    return f"engines: http2 {running}{note}, http3 {http3}"


def _serve(path: str, workers: str = "1", pid_file: str | None = None) -> int:
    from .app import create_bridge
    from .server.run import run
    from .server.workers import plan, worker_index

    config = _load(path)
    if config is None:
        return 1
    # --workers N > 1: this process supervises, and its pid is the one `bridge reload` signals.
    config = plan(path, config, workers, Path(pid_file) if pid_file else None)
    if isinstance(config, int):
        return config

    async def go() -> None:
        bridge = create_bridge(config)
        bridge.reuse_port = worker_index() is not None  # the workers share their ports
        # One pid file per process group: a worker does not write it (its supervisor does).
        pid = Path(pid_file) if pid_file and worker_index() is None else None
        await bridge.serve_forever(pid)

    try:
        run(go)
    except KeyboardInterrupt:  # pragma: no cover
        pass
    except OSError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return 1
    return 0


def _reload(path: str, pid_file: str | None) -> int:
    """Like `nginx -s reload` after `nginx -t`: a file with mistakes is reported here, and the
    running process is not even asked (it would refuse it too, and keep serving). A good file
    is signalled, and the running process's verdict is read back from its admin listener's
    `bridge_reloads_total`: exit 1 when it refused the file (it keeps serving the old one)."""
    import os
    import signal

    from .control import admin_url, reload_counts

    config = _load(path, _NOT_ASKED)
    if config is None:
        return 1
    where = Path(pid_file) if pid_file else Path(path).resolve().parent / "bridge.pid"
    try:
        pid = int(where.read_text().strip())
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not a process id"
        print(
            f"bridge reload: cannot read {where}: {why} (start it with bridge serve --pid-file)",
            file=sys.stderr,
        )
        return 1
    admin = admin_url(config)
    before = reload_counts(admin) if admin is not None else None
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        print(f"bridge reload: cannot signal process {pid}: {exc.strerror}", file=sys.stderr)
        return 1
    asked = f"{path}: ok; asked process {pid} to reload"
    if admin is None or before is None:
        unheard = f"no admin listener answered at {admin}" if admin else "no listen.admin to ask"
        print(f"{asked} ({unheard}, so its error log has the verdict)")
        return 0
    verdict = _reload_verdict(admin, before)
    if verdict == "ok":
        print(f"{asked}: reloaded (its error log says what changed)")
        return 0
    if verdict is None:
        print(
            f"bridge reload: process {pid} gave no verdict within {settings.RELOAD_VERDICT_WAIT:g}s"
            f" ({admin}/metrics); its error log says what happened",
            file=sys.stderr,
        )
        return 1
    why = "found problems in the file" if verdict == "invalid" else "could not apply it"
    print(
        f"bridge reload: process {pid} refused {path} ({why}: reload outcome {verdict!r}) and"
        " keeps serving its previous config; its error log says why",
        file=sys.stderr,
    )
    return 1


def _reload_verdict(admin: str, before: dict[str, int]) -> str | None:
    """The outcome of the first reload counted after `before`, or None if none is counted
    within settings.RELOAD_VERDICT_WAIT."""
    from .control import OUTCOMES, reload_counts

    deadline = time.monotonic() + settings.RELOAD_VERDICT_WAIT
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = reload_counts(admin)
        if now is None:
            continue  # busy this moment (a reload in progress): ask again
        for outcome in OUTCOMES:
            if now.get(outcome, 0) > before.get(outcome, 0):
                return outcome
    return None


def _health(path: str) -> int:
    """`/healthz` on the admin listener the config names: the container health check that
    follows `listen.admin` wherever the mounted config puts it."""
    from .control import admin_url, get

    config = _load(path, "cannot find the admin listener", check_files=False)
    if config is None:
        return 1
    admin = admin_url(config)
    if admin is None:
        print(
            f"bridge health: {path} has no listen.admin (with a fixed port) to ask", file=sys.stderr
        )
        return 1
    status, body = get(admin + "/healthz")
    if status != 200:
        print(f"bridge health: {admin}/healthz: {status or body}", file=sys.stderr)
        return 1
    print(f"{admin}/healthz: {body.strip()}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
