"""The `ioc` command line: one parser, a module per command group; each handler builds Settings and wires parts.

Importing this package stays cheap: worker processes started with `spawn` re-import the `ioc` script, so the
command groups (and what they import) are loaded only when the parser is built."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from core.errors import IocError

Handler = Callable[[argparse.Namespace], int]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ioc")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "unknown"


# What `ioc` exits with: shown by `ioc --help` and README ("Command line"); `main` makes it so.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130
EXIT_CODES_HELP = f"""exit codes:
  {EXIT_OK}    done
  {EXIT_FAILED}    the command ran but part of the work failed (rows of an import, a check), or an unexpected
       error (a bug: the traceback is printed)
  {EXIT_REFUSED}    nothing was done: a usage error (bad or missing option) or an error ioc explains on stderr
       (an unknown name, with the closest valid ones; a refused value; a service that cannot be reached)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C, SIGTERM)

shell completion: source <(ioc completion bash)"""


def build_parser() -> argparse.ArgumentParser:
    from ioc.cli import (
        alarms,
        analytics,
        bench,
        catalog,
        center,
        completion,
        dashboards,
        devices,
        keys,
        maintenance,
        quarantine,
        simulate,
        users,
    )

    parser = argparse.ArgumentParser(
        prog="ioc",
        description="IoT telemetry ingestion and monitoring center",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ioc {_version()}")
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (default: IOC_LOG_LEVEL or INFO)")
    sub = parser.add_subparsers(dest="command", required=True)
    groups = (center, devices, catalog, alarms, users, keys, quarantine, simulate, analytics, maintenance, dashboards)
    for group in (*groups, bench, completion):
        group.add_parsers(sub)
    return parser


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    from core.settings import Settings

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level or Settings().log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    handler: Handler = args.func
    # SIGTERM (systemd, docker, `timeout`) shuts down like Ctrl-C: embedded services are stopped on the way out.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return handler(args)
    except IocError as exc:
        print(f"ioc: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
