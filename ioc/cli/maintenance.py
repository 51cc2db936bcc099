"""`ioc maintenance add|list|cancel`: planned work during which no alarm is raised for a device, a site, a sector
or a province (the same windows as `/maintenance` in the API; the command line acts on everything)."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta

from ioc.cli.database import command_database

ACTOR = "cli"
MAX_WINDOW = timedelta(days=31)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("maintenance", help="maintenance windows: no alarms for what they cover while they last")
    msub = group.add_subparsers(dest="maintenance_command", required=True)

    add = msub.add_parser("create", aliases=["add"], help="plan a window (from now unless --start)")
    target = add.add_mutually_exclusive_group(required=False)
    target.add_argument("--device", default=None, help="one device")
    target.add_argument("--site", default=None, help="the devices of one site (location.site; needs --province)")
    add.add_argument("--province", default=None, help="a province (with or without --sector)")
    add.add_argument(
        "--sector", default=None, choices=("agriculture", "energy", "transport", "health"), help="one sector"
    )
    add.add_argument("--start", default=None, help="ISO 8601 with a time zone (default: now)")
    span = add.add_mutually_exclusive_group(required=True)
    span.add_argument("--end", default=None, help="ISO 8601 with a time zone")
    span.add_argument("--hours", type=float, default=None, help="how long from the start")
    add.add_argument("--reason", required=True, help="what the work is (shown with the window)")
    add.set_defaults(func=cmd_add)

    lst = msub.add_parser("list", help="windows, latest start first")
    lst.add_argument("--active", action="store_true", help="only those covering the present moment")
    lst.add_argument("--all", action="store_true", help="include cancelled windows")
    lst.set_defaults(func=cmd_list)

    cancel = msub.add_parser("cancel", help="end a window now (or call off one not yet begun)")
    cancel.add_argument("id", type=int, help="the window's number (ioc maintenance list)")
    cancel.set_defaults(func=cmd_cancel)


def _moment(text: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SystemExit(f"ioc maintenance: {what} is not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise SystemExit(f"ioc maintenance: {what} needs a time zone, e.g. {text}+07:00")
    return moment


def cmd_add(args: argparse.Namespace) -> int:
    from devices.audit import record_audit
    from store.maintenance import create_window

    starts = _moment(args.start, "--start") if args.start else datetime.now(UTC)
    ends = _moment(args.end, "--end") if args.end else starts + timedelta(hours=args.hours)
    if ends <= starts or ends - starts > MAX_WINDOW:
        print(
            f"ioc maintenance: a window ends after it starts and lasts at most {MAX_WINDOW.days} days", file=sys.stderr
        )
        return 2
    if args.device is None and args.site is None and args.province is None and args.sector is None:
        print("ioc maintenance: name what the window covers: --device, --site, --province or --sector", file=sys.stderr)
        return 2
    if args.device is not None and (args.province or args.sector):
        print("ioc maintenance: a device's window names the device only", file=sys.stderr)
        return 2
    if args.site is not None and args.province is None:
        print("ioc maintenance: a site's window needs --province", file=sys.stderr)
        return 2
    with command_database() as conn:
        window = create_window(
            conn,
            device_id=args.device,
            site=args.site,
            province=args.province,
            sector=args.sector,
            starts_at=starts,
            ends_at=ends,
            reason=args.reason,
            by=ACTOR,
        )
        record_audit(
            conn, actor=ACTOR, action="maintenance.create", target=f"maintenance:{window.id}", details=window.as_json()
        )
    print(f"maintenance window {window.id}: {_describe(window)}")
    return 0


def _describe(window: object) -> str:
    from store.maintenance import MaintenanceWindow

    assert isinstance(window, MaintenanceWindow)
    what = (
        f"device {window.device_id}"
        if window.device_id
        else " ".join(
            part
            for part in (
                f"site {window.site}" if window.site else "",
                f"province {window.province}" if window.province else "",
                f"sector {window.sector}" if window.sector else "",
            )
            if part
        )
    )
    state = f", cancelled {window.cancelled_at:%Y-%m-%d %H:%M %Z}" if window.cancelled_at else ""
    return f"{what} from {window.starts_at.isoformat()} to {window.ends_at.isoformat()}: {window.reason}{state}"


def cmd_list(args: argparse.Namespace) -> int:
    from store.maintenance import list_windows
    from store.scope import EVERYTHING

    with command_database() as conn:
        windows = list_windows(
            conn,
            scope=EVERYTHING,
            active_at=datetime.now(UTC) if args.active else None,
            include_cancelled=args.all,
        )
    for window in windows:
        print(f"{window.id}\t{_describe(window)}")
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    from devices.audit import record_audit
    from store.maintenance import cancel_window
    from store.scope import EVERYTHING

    now = datetime.now(UTC)
    with command_database() as conn:
        window = cancel_window(conn, args.id, by=ACTOR, now=now, scope=EVERYTHING)
        record_audit(
            conn,
            actor=ACTOR,
            action="maintenance.cancel",
            target=f"maintenance:{window.id}",
            details={"cancelled_at": now.isoformat()},
        )
    print(f"maintenance window {window.id} cancelled")
    return 0
