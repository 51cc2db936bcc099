"""`ioc quarantine list|show|purge`: the messages ingest could not store, for the operator on the center's machine
(the admin API, `/quarantine`, does the same within an admin's provinces)."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import TYPE_CHECKING

from ioc.cli.database import command_database

if TYPE_CHECKING:
    from store.quarantine import QuarantineFilter

ACTOR = "cli"


def _filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, help="only this device id")
    parser.add_argument("--reason", default=None, help="only this reason (e.g. invalid_json, credential_revoked)")
    parser.add_argument("--since", type=datetime.fromisoformat, default=None, help="received at or after (ISO 8601)")
    parser.add_argument("--until", type=datetime.fromisoformat, default=None, help="received before (ISO 8601)")
    stored = parser.add_mutually_exclusive_group()
    stored.add_argument(
        "--partial",
        dest="partial",
        action="store_const",
        const=True,
        default=None,
        help="only messages stored in part (some readings refused)",
    )
    stored.add_argument(
        "--whole", dest="partial", action="store_const", const=False, help="only messages refused whole"
    )


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("quarantine", help="messages ingest could not store: list, show one, purge")
    qsub = group.add_subparsers(dest="quarantine_command", required=True)

    lst = qsub.add_parser("list", help="newest first, without payloads; suppressed counts with --suppressed")
    _filters(lst)
    lst.add_argument("--limit", type=int, default=50, help="rows at most (default 50)")
    lst.add_argument("--suppressed", action="store_true", help="the per-minute counts beyond devices' rate limits")
    lst.set_defaults(func=cmd_list)

    show = qsub.add_parser("show", help="one message with its kept raw bytes")
    show.add_argument("id", type=int, help="the message's number (ioc quarantine list)")
    show.set_defaults(func=cmd_show)

    purge = qsub.add_parser("purge", help="delete the messages the filters select")
    _filters(purge)
    purge.add_argument("--all", action="store_true", help="needed to purge without any filter")
    purge.set_defaults(func=cmd_purge)


def _filter(args: argparse.Namespace) -> QuarantineFilter:
    from store.quarantine import QuarantineFilter
    from store.scope import EVERYTHING

    return QuarantineFilter(
        scope=EVERYTHING,
        device_id=args.device,
        reason=args.reason,
        since=args.since,
        until=args.until,
        partial=args.partial,
    )


def cmd_list(args: argparse.Namespace) -> int:
    from store.quarantine import list_quarantined, list_suppressed

    flt = _filter(args)
    with command_database() as conn:
        if args.suppressed:
            for c in list_suppressed(conn, flt, limit=args.limit):
                print(
                    f"{c.window_start:%Y-%m-%d %H:%M}  {c.device_key or '-':<24} {c.messages:>8} msgs "
                    f"{c.bytes:>10} B  last {c.last_reason}"
                )
            return 0
        for e in list_quarantined(conn, flt, limit=args.limit):
            stored = f"  {e.readings_stored} stored, {e.readings_refused} refused" if e.partial else ""
            print(
                f"{e.id:>8}  {e.received_at:%Y-%m-%d %H:%M:%S}  {e.reason:<22} {e.device_id or '-':<24} "
                f"{e.payload_size:>8} B  {e.topic[:80]}{stored}"
            )
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from store.quarantine import get_quarantined
    from store.scope import EVERYTHING

    with command_database() as conn:
        entry = get_quarantined(conn, args.id, scope=EVERYTHING)
    if entry is None or entry.payload is None:
        print(f"ioc: no quarantined message {args.id}")
        return 1
    print(f"id {entry.id}, received {entry.received_at:%Y-%m-%d %H:%M:%S%z}")
    print(
        f"topic    {entry.topic}\ndevice   {entry.device_id or '-'}\nreason   {entry.reason}\ndetail   {entry.detail}"
    )
    print(f"payload  {entry.payload_size} bytes ({len(entry.payload)} kept)")
    try:
        print(entry.payload.decode("utf-8")[:4000])
    except UnicodeDecodeError:
        print(entry.payload[:2000].hex(" "))
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from devices.audit import record_audit
    from store.quarantine import purge_quarantined

    flt = _filter(args)
    if not args.all and all(v is None for v in (args.device, args.reason, args.since, args.until, args.partial)):
        print("ioc: give a filter (--device, --reason, --since, --until, --partial, --whole) or --all")
        return 2
    with command_database() as conn:
        purged = purge_quarantined(conn, flt)
        record_audit(
            conn,
            actor=ACTOR,
            action="quarantine_purged",
            target="quarantine",
            details={"purged": purged, "device_id": args.device, "reason": args.reason, "partial": args.partial},
        )
    print(f"purged {purged} quarantined messages")
    return 0
