"""The `ioc` command line: one entry point that builds Settings and wires the parts together."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from core.errors import IocError

_LOGGER = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace], int]


def _add_center_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ioc import commands

    up = sub.add_parser("up", help="run the center: migrate, ingest workers and the API")
    up.add_argument("--workers", type=int, default=None, help="ingest worker processes")
    up.set_defaults(func=commands.cmd_up)

    demo = sub.add_parser("demo", help="run the center plus a simulated device fleet")
    demo.add_argument("--devices", type=int, default=24, help="simulated devices")
    demo.add_argument("--interval", type=float, default=2.0, help="seconds between a device's reports")
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=commands.cmd_demo)

    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    migrate = db_sub.add_parser("migrate", help="apply pending migrations and sync catalog data (idempotent)")
    migrate.set_defaults(func=commands.cmd_db_migrate)

    ingest = sub.add_parser("ingest", help="run ingest workers against the configured broker and database")
    ingest.add_argument("--workers", type=int, default=None)
    ingest.set_defaults(func=commands.cmd_ingest)

    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default=None)
    api.add_argument("--port", type=int, default=None)
    api.set_defaults(func=commands.cmd_api)

    services = sub.add_parser("services", help="start the embedded broker and database and print their URLs")
    services.set_defaults(func=commands.cmd_services)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ioc", description="IoT telemetry ingestion and monitoring center")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default: IOC_LOG_LEVEL or INFO)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_center_commands(sub)
    _add_optional_commands(sub)
    return parser


def _add_optional_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Command groups that live with the part that owns them."""
    import importlib

    for module_name in (
        "analytics.commands",
        "analytics.live_commands",
        "firmware_sim.commands",
        "ioc.bench",
        "devices.commands",
    ):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.add_parsers(sub)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = args.log_level or "INFO"
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler: Handler = args.func
    # SIGTERM (systemd, docker, `timeout`) shuts down like Ctrl-C: embedded services are stopped on the way out.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return handler(args)
    except IocError as exc:
        print(f"ioc: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
