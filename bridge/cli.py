"""The `bridge` command: serve, check, demo, certs (../shared/ROUTES.md "Command line")."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from . import __version__
from .errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bridge", description="Turn polled HTTP endpoints into push streams."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {}
    for name, text in (
        ("serve", "run the proxy"),
        ("check", "validate the config and print the route table"),
        ("reload", "validate the config, then make the running bridge reload it (SIGHUP)"),
    ):
        cmd = commands[name] = sub.add_parser(name, help=text)
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
    demo = sub.add_parser("demo", help="run the embedded polling demo app with bridge in front")
    demo.add_argument("--port", type=int, default=8443, help="HTTPS port for bridge (default 8443)")
    certs = sub.add_parser("certs", help="generate a development CA and server certificate")
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
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"bridge {__version__}")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # hpack logs every header it decodes at DEBUG, cookies and credentials included: `-v`
    # must not put clients' secrets in the server's log.
    logging.getLogger("hpack").setLevel(logging.INFO)
    if args.command == "check":
        return _check(args.config, print_config=args.print_config)
    if args.command == "serve":
        return _serve(args.config, args.workers, args.pid_file)
    if args.command == "reload":
        return _reload(args.config, args.pid_file)
    if args.command == "certs":
        from .certs import generate_for_cli

        generate_for_cli(Path(args.dir), hosts=tuple(args.host), force=args.force)
        return 0
    if args.command == "demo":
        from .demo.run import run_demo

        return run_demo(port=args.port)
    return 2


def _load(path: str):  # type: ignore[no-untyped-def]
    from .routing.config import load_config

    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{path}: {len(exc.problems)} problem(s); not serving", file=sys.stderr)
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
    print(f"{path}: ok")
    return 0


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
    running process is not even asked (it would refuse it too, and keep serving)."""
    import os
    import signal

    if _load(path) is None:
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
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        print(f"bridge reload: cannot signal process {pid}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"{path}: ok; asked process {pid} to reload (its error log says what changed)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
