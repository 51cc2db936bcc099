"""`ioc alarms list|show|ack|clear`: the alarm lifecycle for an operator on the center's machine, through the same
functions the API's `/alarms` routes call (`analytics.alarms`), so the audit log records each change the same way.

The command line runs with the database's own rights (all provinces); the actor recorded is `cli:<login name>`
unless `--by` names the person.
"""

from __future__ import annotations

import argparse
import getpass
import json
from typing import TYPE_CHECKING, Any

from ioc.cli.database import command_database
from protocol.topics import SECTORS

if TYPE_CHECKING:
    from analytics.alarms import Alarm

_SEVERITIES = ("warning", "minor", "major", "critical")
_STATES = ("active", "acknowledged", "cleared", "open")


def _default_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name (a container without a passwd entry)
        return "cli"


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("alarms", help="alarms: list, show one, ack, clear (recorded in the audit log)")
    asub = group.add_subparsers(dest="alarms_command", required=True)

    lst = asub.add_parser("list", help="alarms newest first (default: the open ones)")
    lst.add_argument("--province", help="only this province: code or name (ioc provinces)")
    lst.add_argument("--sector", choices=SECTORS, help="only this sector")
    lst.add_argument("--severity", choices=_SEVERITIES, help="only this severity")
    lst.add_argument(
        "--state", choices=_STATES, default="open", help="active, acknowledged, cleared, or open = not cleared"
    )
    lst.add_argument("--device", help="only this device id")
    lst.add_argument("--limit", type=int, default=100, help="alarms at most (default 100)")
    lst.add_argument("--json", action="store_true", help="print a JSON array")
    lst.set_defaults(func=cmd_list)

    show = asub.add_parser("show", help="one alarm with its comments")
    show.add_argument("alarm_id", type=int, help="the alarm's number (ioc alarms list)")
    show.add_argument("--json", action="store_true", help="print a JSON object")
    show.set_defaults(func=cmd_show)

    for verb, what, func in (
        ("ack", "take an active alarm: it stops escalating", cmd_ack),
        ("clear", "clear an active or acknowledged alarm", cmd_clear),
    ):
        change = asub.add_parser(verb, help=what)
        change.add_argument("alarm_id", type=int, help="the alarm's number (ioc alarms list)")
        change.add_argument("--comment", "-m", default=None, help="a note kept with the change and in the audit log")
        change.add_argument(
            "--by", default=_default_actor(), help="who does it, for the audit log (default: %(default)s)"
        )
        change.add_argument("--json", action="store_true", help="print the changed alarm as a JSON object")
        change.set_defaults(func=func)


def _print_alarm(alarm: Alarm) -> None:
    metric = alarm.metric or "-"
    print(
        f"#{alarm.id}\t{alarm.status}\t{alarm.severity}\t{alarm.raised_at:%Y-%m-%d %H:%M:%S%z}\t"
        f"{alarm.province}/{alarm.sector}\t{alarm.device_id}\t{metric}\t{alarm.message}"
    )


def _alarm_json(alarm: Alarm) -> dict[str, object]:
    return alarm.as_json()


def cmd_list(args: argparse.Namespace) -> int:
    from analytics.alarms import list_alarms
    from devices.naming import resolve_province_code
    from devices.provinces import load_provinces
    from store.scope import EVERYTHING

    province = None if args.province is None else resolve_province_code(load_provinces(), args.province)
    status = None if args.state == "open" else args.state
    with command_database() as conn:
        alarms = list_alarms(
            conn,
            scope=EVERYTHING,
            status=status,
            open_only=args.state == "open",
            province=province,
            sector=args.sector,
            severity=args.severity,
            device_id=args.device,
            limit=args.limit,
        )
    if args.json:
        print(json.dumps([_alarm_json(a) for a in alarms], ensure_ascii=False, indent=2))
        return 0
    for alarm in alarms:
        _print_alarm(alarm)
    if not alarms:
        print(f"no {args.state} alarms")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from analytics.alarms import get_alarm, list_alarm_comments
    from store.scope import EVERYTHING

    with command_database() as conn:
        alarm = get_alarm(conn, args.alarm_id, scope=EVERYTHING)
        comments = list_alarm_comments(conn, args.alarm_id, scope=EVERYTHING)
    if args.json:
        document = _alarm_json(alarm) | {
            "comments": [{"at": c.at.isoformat(), "actor": c.actor, "note": c.note} for c in comments]
        }
        print(json.dumps(document, ensure_ascii=False, indent=2))
        return 0
    _print_alarm(alarm)
    if alarm.acknowledged_by:
        print(f"acknowledged by {alarm.acknowledged_by} at {alarm.acknowledged_at}: {alarm.ack_note or ''}")
    if alarm.cleared_by:
        print(f"cleared by {alarm.cleared_by} at {alarm.cleared_at} ({alarm.clear_reason}): {alarm.clear_note or ''}")
    for c in comments:
        print(f"comment {c.at:%Y-%m-%d %H:%M:%S%z} {c.actor}: {c.note}")
    return 0


def _change(args: argparse.Namespace, change: Any) -> int:
    from datetime import UTC, datetime

    from store.scope import EVERYTHING

    with command_database() as conn:
        alarm = change(
            conn, args.alarm_id, by=args.by, note=args.comment, now=datetime.now(UTC), scope=EVERYTHING, address=None
        )
    if args.json:
        print(json.dumps(_alarm_json(alarm), ensure_ascii=False, indent=2))
    else:
        _print_alarm(alarm)
    return 0


def cmd_ack(args: argparse.Namespace) -> int:
    from analytics.alarms import acknowledge_alarm

    return _change(args, acknowledge_alarm)


def cmd_clear(args: argparse.Namespace) -> int:
    from analytics.alarms import clear_alarm

    return _change(args, clear_alarm)
