"""`ioc devices …`: the registry from the command line. Secrets are printed once (or written to a 0600 file).

The broker follows the registry through the device monitor of a running `ioc up` (it re-renders the access
files within a second of a change); with no center running, the next `ioc up` syncs at start. The command line
runs with the database's own rights: its calls pass the all-scope `EVERYTHING`, and the actor is `cli`.
"""

from __future__ import annotations

import argparse
from typing import Any

from ioc.cli.database import command_database


def _add(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    return parser


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    devices = sub.add_parser("devices", help="device registry: create, list, import, move, revoke …")
    dsub = devices.add_subparsers(dest="devices_command", required=True)

    create = _add(dsub, "create", "register one device and print its secret (shown once)")
    create.add_argument("device_id")
    create.add_argument("--type", dest="type_code", required=True, help="device type code, e.g. soil_probe")
    create.add_argument("--province", required=True, help="province code, e.g. can-tho")
    create.add_argument("--name", default="")
    create.add_argument("--interval", type=float, default=None, help="report interval override, seconds")
    create.set_defaults(func=cmd_create)

    lst = _add(dsub, "list", "list devices")
    lst.add_argument("--province")
    lst.add_argument("--sector")
    lst.add_argument("--limit", type=int, default=1000)
    lst.set_defaults(func=cmd_list)

    show = _add(dsub, "show", "one device, its health and its audit trail")
    show.add_argument("device_id")
    show.set_defaults(func=cmd_show)

    update = _add(dsub, "update", "change a device's name or report interval")
    update.add_argument("device_id")
    update.add_argument("--name")
    update.add_argument("--interval", type=float, default=None, help="seconds; 0 = back to the type's")
    update.set_defaults(func=cmd_update)

    move = _add(dsub, "move", "move a device to another province (its history stays)")
    move.add_argument("device_id")
    move.add_argument("province")
    move.set_defaults(func=cmd_move)

    decommission = _add(dsub, "decommission", "retire a device: credentials revoked, history kept")
    decommission.add_argument("device_id")
    decommission.add_argument("--reason", default="")
    decommission.set_defaults(func=cmd_decommission)

    imp = _add(dsub, "import", "bulk provisioning from CSV: device_id,type_code,province[,name][,report_interval_s]")
    imp.add_argument("csv_file", type=argparse.FileType("r", encoding="utf-8"))
    imp.add_argument("--secrets-out", required=True, help="CSV file (mode 0600) that receives the new secrets")
    imp.set_defaults(func=cmd_import)

    rotate = _add(dsub, "rotate-secret", "issue a new secret (printed once); the old one stops working")
    rotate.add_argument("device_id")
    rotate.set_defaults(func=cmd_rotate)

    revoke = _add(dsub, "revoke", "revoke a device's credentials; a connected device is cut off")
    revoke.add_argument("device_id")
    revoke.add_argument("--reason", default="")
    revoke.set_defaults(func=cmd_revoke)


ACTOR = "cli"


def _print_device(device: Any) -> None:
    interval = "type default" if device.report_interval_s is None else f"{device.report_interval_s:g} s"
    print(
        f"{device.device_id}\t{device.type_code}\t{device.province}/{device.sector}\t{device.status}\t"
        f"credentials {device.credential_status}\tinterval {interval}\t{device.name}"
    )


def cmd_create(args: argparse.Namespace) -> int:
    from devices.catalog import load_catalog
    from devices.provisioning import provision_device
    from store.scope import EVERYTHING

    with command_database() as conn:
        created = provision_device(
            conn,
            device_id=args.device_id,
            type_code=args.type_code,
            province=args.province,
            catalog=load_catalog(),
            actor=ACTOR,
            scope=EVERYTHING,
            name=args.name,
            report_interval_s=args.interval,
        )
    _print_device(created.device)
    print(f"secret (shown once, store it in the device now): {created.secret}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from devices.registry import list_devices
    from store.scope import EVERYTHING

    with command_database() as conn:
        devices = list_devices(conn, scope=EVERYTHING, province=args.province, sector=args.sector, limit=args.limit)
        for device in devices:
            _print_device(device)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from devices.audit import list_audit
    from devices.health import list_health
    from devices.registry import get_device
    from store.scope import EVERYTHING

    with command_database() as conn:
        _print_device(get_device(conn, args.device_id, scope=EVERYTHING))
        for h in list_health(conn, scope=EVERYTHING, device_id=args.device_id):
            print(f"health: {h.state} (online: {h.online}, last seen: {h.last_seen})")
        for entry in list_audit(conn, scope=EVERYTHING, target=args.device_id):
            print(f"{entry.at:%Y-%m-%d %H:%M:%S%z}\t{entry.actor}\t{entry.action}\t{dict(entry.details)}")
    return 0


def cmd_update(args: argparse.Namespace) -> int:
    from devices.provisioning import update_device
    from store.scope import EVERYTHING

    changes: dict[str, Any] = {"name": args.name}
    if args.interval is not None:
        changes["report_interval_s"] = args.interval or None
    with command_database() as conn:
        _print_device(update_device(conn, args.device_id, actor=ACTOR, scope=EVERYTHING, **changes))
    return 0


def cmd_move(args: argparse.Namespace) -> int:
    from devices.provisioning import update_device
    from store.scope import EVERYTHING

    with command_database() as conn:
        _print_device(update_device(conn, args.device_id, actor=ACTOR, scope=EVERYTHING, province=args.province))
    return 0


def cmd_decommission(args: argparse.Namespace) -> int:
    from devices.provisioning import decommission_device
    from store.scope import EVERYTHING

    with command_database() as conn:
        _print_device(decommission_device(conn, args.device_id, actor=ACTOR, scope=EVERYTHING, reason=args.reason))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    import csv
    import os
    import time

    from devices.catalog import load_catalog
    from devices.provisioning import import_devices_csv
    from store.scope import EVERYTHING

    started = time.monotonic()
    text = args.csv_file.read()
    fd = os.open(args.secrets_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with command_database() as conn, os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
        rows = import_devices_csv(conn, text, catalog=load_catalog(), actor=ACTOR, scope=EVERYTHING)
        writer = csv.writer(out)
        writer.writerow(["device_id", "secret"])
        writer.writerows([r.device_id, r.secret] for r in rows if r.ok)
    failed = [r for r in rows if not r.ok]
    for r in failed:
        print(f"row {r.row}\t{r.device_id or '-'}\terror\t{r.reason}")
    print(
        f"{len(rows) - len(failed)} devices provisioned, {len(failed)} rows failed, "
        f"{time.monotonic() - started:.1f} s; secrets in {args.secrets_out}"
    )
    return 1 if failed else 0


def cmd_rotate(args: argparse.Namespace) -> int:
    from devices.provisioning import rotate_secret
    from store.scope import EVERYTHING

    with command_database() as conn:
        secret = rotate_secret(conn, args.device_id, actor=ACTOR, scope=EVERYTHING)
    print(f"new secret for {args.device_id} (shown once): {secret}")
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    from devices.provisioning import revoke_secret
    from store.scope import EVERYTHING

    with command_database() as conn:
        _print_device(revoke_secret(conn, args.device_id, actor=ACTOR, scope=EVERYTHING, reason=args.reason))
    return 0
