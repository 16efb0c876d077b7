"""The `bridge` command: serve, check, demo, certs (../shared/ROUTES.md "Command line")."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from .errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bridge", description="Turn polled HTTP endpoints into push streams."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("serve", "run the proxy"),
        ("check", "validate the config and print the route table"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument(
            "-c", "--config", default="routes.yaml", help="config file (default: ./routes.yaml)"
        )
        if name == "serve":
            cmd.add_argument(
                "--workers", default="1", help="processes, or auto for one per core (default 1)"
            )
    demo = sub.add_parser("demo", help="run the embedded polling demo app with bridge in front")
    demo.add_argument("--port", type=int, default=8443, help="HTTPS port for bridge (default 8443)")
    certs = sub.add_parser("certs", help="generate a development CA and server certificate")
    certs.add_argument("--dir", default="certs", help="output directory (default: ./certs)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "check":
        return _check(args.config)
    if args.command == "serve":
        return _serve(args.config, args.workers)
    if args.command == "certs":
        from .certs import generate_for_cli

        generate_for_cli(Path(args.dir))
        return 0
    if args.command == "demo":
        from .demo.run import run_demo

        return run_demo(port=args.port)
    return 2


def _load(path: str):  # type: ignore[no-untyped-def]
    from .routing.config import load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{path}: {len(exc.problems)} problem(s); not serving", file=sys.stderr)
        return None


def _check(path: str) -> int:
    from .routing.table import describe

    config = _load(path)
    if config is None:
        return 1
    print(describe(config))
    print(f"{path}: ok")
    return 0


def _serve(path: str, workers: str = "1") -> int:
    from .app import create_bridge
    from .server.run import run
    from .server.workers import plan, worker_index

    config = _load(path)
    if config is None:
        return 1
    config = plan(path, config, workers)  # --workers N > 1: this process supervises
    if isinstance(config, int):
        return config

    async def go() -> None:
        bridge = create_bridge(config)
        bridge.reuse_port = worker_index() is not None  # the workers share their ports
        await bridge.serve_forever()

    try:
        run(go)
    except KeyboardInterrupt:  # pragma: no cover
        pass
    except OSError as exc:
        print(f"bridge: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
