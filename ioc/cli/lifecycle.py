"""`ioc db rollup` / `ioc db retention [--dry-run]`: the data lifecycle job's two steps run once, by hand (the center
runs them on its own schedule: store/lifecycle.py)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core.settings import Settings
from ioc.cli.database import command_database


def add_db_parsers(db_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    rollup = db_sub.add_parser(
        "rollup",
        help="bring the one-minute and one-hour rollups up to every committed reading (the center does it every "
        "IOC_ROLLUP_INTERVAL_S; with the Timescale license continuous aggregates do it)",
    )
    rollup.set_defaults(func=cmd_db_rollup)
    retention = db_sub.add_parser(
        "retention",
        help="remove what the IOC_*_RETENTION_DAYS settings no longer keep: old raw chunks (per sector), rollups, "
        "anomalies, alarm events, delivered federation snapshots, the audit log, quarantine, login attempts",
    )
    retention.add_argument("--dry-run", action="store_true", help="count what would go and change nothing")
    retention.add_argument("--json", type=Path, default=None, help="also write the report here")
    retention.set_defaults(func=cmd_db_retention)


def cmd_db_rollup(args: argparse.Namespace) -> int:
    from store.rollups import roll_up

    with command_database() as conn:
        conn.commit()
        conn.autocommit = True
        result = roll_up(conn)
    state = "up to date" if result.caught_up else "not caught up yet (run again)"
    print(f"rollups {state}: {result.minutes} minutes and {result.hours} hours written in {result.steps} step(s)")
    return 0


def cmd_db_retention(args: argparse.Namespace) -> int:
    from store.retention import apply_retention, retention_policy

    policy = retention_policy(Settings())  # StorageError (a clear message) when rollups would not outlive raw data
    with command_database() as conn:
        conn.commit()
        conn.autocommit = True
        report = apply_retention(conn, policy, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for step in report.steps:
        note = f"  ({step.note})" if step.note else ""
        print(
            f"{step.table:<24} {verb} {step.removed:>10} {step.unit:<6} older than {step.cutoff:%Y-%m-%d %H:%M}{note}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    return 0
