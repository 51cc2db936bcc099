"""`ioc devices …`: the registry from the command line. Secrets are printed once (or written to a 0600 file).

The broker follows the registry through the device monitor of a running `ioc up` (it re-renders the access
files within a second of a change); with no center running, the next `ioc up` syncs at start. The command line
runs with the database's own rights: its calls pass the all-scope `EVERYTHING`, and the actor is `cli`.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any, Final

from core.errors import IocError
from ioc.cli.database import command_center, command_database
from protocol.topics import SECTORS

if TYPE_CHECKING:
    from devices.onboarding import OnboardingSheet


_DEVICE_ID_HELP: Final = "the device's id: 1-64 of A-Z a-z 0-9 _ . -"
_PROVINCE_HELP: Final = "code or name, any case, with or without diacritics, e.g. can-tho, 'Huế', hue (ioc provinces)"


def _add(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    return parser


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ioc.cli.catalog import add_types_parser

    devices = sub.add_parser("devices", help="device registry: create, list, show, import, move, revoke …")
    dsub = devices.add_subparsers(dest="devices_command", required=True)

    create = _add(dsub, "create", "register one device; print what to configure it with (secret shown once)")
    create.add_argument("device_id", help=_DEVICE_ID_HELP + " (also its broker username)")
    create.add_argument(
        "--type", dest="type_code", required=True, help="device type: code or name, e.g. soil_probe, fridge"
    )
    create.add_argument("--province", required=True, help=_PROVINCE_HELP)
    create.add_argument("--name", default="", help="a name people know it by, e.g. its site")
    create.add_argument("--interval", type=float, default=None, help="report interval override, seconds")
    create.add_argument("--json", action="store_true", help="print one JSON object (secret included) for scripts")
    create.set_defaults(func=cmd_create)

    lst = _add(dsub, "list", "list devices")
    lst.add_argument("--province", help="only this province: " + _PROVINCE_HELP)
    lst.add_argument("--sector", choices=SECTORS, help="only this sector")
    lst.add_argument("--limit", type=int, default=1000, help="devices at most (default 1000)")
    lst.add_argument("--json", action="store_true", help="print a JSON array")
    lst.set_defaults(func=cmd_list)

    show = _add(dsub, "show", "one device: health, recent refused messages with reasons, audit trail")
    show.add_argument("device_id", help="the device's id")
    show.add_argument("--refusals", type=int, default=10, help="recent quarantined messages to show (default 10)")
    show.set_defaults(func=cmd_show)

    add_types_parser(dsub)

    update = _add(dsub, "update", "change a device's name or report interval")
    update.add_argument("device_id", help="the device's id")
    update.add_argument("--name", help="the new name")
    update.add_argument("--interval", type=float, default=None, help="seconds; 0 = back to the type's")
    update.set_defaults(func=cmd_update)

    move = _add(dsub, "move", "move a device to another province (its history stays)")
    move.add_argument("device_id", help="the device's id")
    move.add_argument("province", help="where it goes: " + _PROVINCE_HELP)
    move.set_defaults(func=cmd_move)

    decommission = _add(dsub, "decommission", "retire a device: credentials revoked, history kept")
    decommission.add_argument("device_id", help="the device's id")
    decommission.add_argument("--reason", default="", help="why, kept in the audit log")
    decommission.set_defaults(func=cmd_decommission)

    imp = _add(
        dsub,
        "import",
        "bulk provisioning from a roster CSV: device_id,type_code,province[,sector][,name][,report_interval_s] "
        "(what `ioc devices export` and `ioc simulate --export-devices` write)",
    )
    imp.add_argument("csv_file", type=argparse.FileType("r", encoding="utf-8"), help="the roster CSV to read")
    imp.add_argument(
        "--secrets-out",
        required=True,
        help="new CSV file (mode 0600) that receives device_id,secret of the new devices (`ioc simulate "
        "--credentials` reads it); never overwritten, and not created when no device was provisioned",
    )
    imp.set_defaults(func=cmd_import)

    exp = _add(dsub, "export", "write the active devices as a roster CSV (what `ioc devices import` reads)")
    exp.add_argument("csv_file", help="file to write; - for standard output")
    exp.add_argument("--province", help="only this province (code)")
    exp.add_argument("--sector", help="only this sector")
    exp.set_defaults(func=cmd_export)

    rotate = _add(dsub, "rotate-secret", "issue a new secret (printed once); the old one stops working")
    rotate.add_argument("device_id", help="the device's id")
    rotate.set_defaults(func=cmd_rotate)

    revoke = _add(dsub, "revoke", "revoke a device's credentials; a connected device is cut off")
    revoke.add_argument("device_id", help="the device's id")
    revoke.add_argument("--reason", default="", help="why, kept in the audit log")
    revoke.set_defaults(func=cmd_revoke)


ACTOR = "cli"


class DevicesCommandError(IocError):
    """A device command that cannot run as asked (a secrets file that exists, a file that cannot be written)."""


def _print_device(device: Any) -> None:
    interval = "type default" if device.report_interval_s is None else f"{device.report_interval_s:g} s"
    print(
        f"{device.device_id}\t{device.type_code}\t{device.province}/{device.sector}\t{device.status}\t"
        f"credentials {device.credential_status}\tinterval {interval}\t{device.name}"
    )


def cmd_create(args: argparse.Namespace) -> int:
    from core.settings import Settings
    from devices.catalog import load_catalog
    from devices.naming import resolve_province_code, resolve_type_code
    from devices.onboarding import build_onboarding_sheet
    from devices.provinces import load_provinces
    from devices.provisioning import provision_device
    from ioc.center import device_broker
    from store.scope import EVERYTHING

    catalog = load_catalog()
    # Names are resolved before any service starts: a typo is answered at once, with the closest valid names.
    type_code = resolve_type_code(catalog, args.type_code)
    province = resolve_province_code(load_provinces(), args.province)
    settings = Settings()
    with command_center(settings) as (conn, urls):
        created = provision_device(
            conn,
            device_id=args.device_id,
            type_code=type_code,
            province=province,
            catalog=catalog,
            actor=ACTOR,
            scope=EVERYTHING,
            name=args.name,
            report_interval_s=args.interval,
        )
        broker = device_broker(settings, urls)
    sheet = build_onboarding_sheet(
        created.device, device_type=catalog.types[type_code], secret=created.secret, broker=broker
    )
    if args.json:
        print(json.dumps(sheet.as_json(), ensure_ascii=False, indent=2))
    else:
        _print_sheet(sheet, type_name=catalog.types[type_code].name)
    return 0


def _print_sheet(sheet: OnboardingSheet, *, type_name: str) -> None:
    """The onboarding sheet for a person: what to type into the device, in the order it is needed."""
    device, topics, broker = sheet.device, sheet.topics, sheet.broker
    rows = [
        ("device", f"{device.device_id} — {device.type_code} ({type_name}) in {device.province}/{device.sector}"),
        ("username", sheet.username),
        ("secret", f"{sheet.secret}   (shown once: store it in the device now)"),
    ]
    if broker.url:
        rows.append(("broker", broker.url))
    if broker.tls_url:
        rows.append(("broker TLS", broker.tls_url))
    if broker.ca_file:
        rows.append(("TLS CA", f"{broker.ca_file}   (copy this file to the device; it signs the TLS listener)"))
    if not (broker.url or broker.tls_url):
        rows.append(("broker", "unknown here: ask the operator (IOC_DEVICE_BROKER_URL sets what is printed)"))
    rows += [
        ("telemetry", f"{topics.telemetry}   (publish, QoS 1, JSON; SenML: {topics.telemetry_senml})"),
        ("status", f"{topics.status}   (retained online/offline, also the Last Will)"),
        ("commands", f"{topics.command}   (subscribe; acknowledge on {topics.command_ack})"),
        ("report every", f"{sheet.report_interval_s:g} s"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    print("metrics:")
    name_width = max(len(m.name) for m in sheet.metrics)
    unit_width = max(len(m.unit) for m in sheet.metrics)
    ranges = {m.name: f"[{m.min:g}, {m.max:g}]" for m in sheet.metrics}
    range_width = max(len(r) for r in ranges.values())
    for m in sheet.metrics:
        print(f"  {m.name:<{name_width}}  {m.unit:<{unit_width}}  {ranges[m.name]:<{range_width}}  {m.description}")
    print(f"payload: {sheet.sample_payload}   (ts: epoch seconds or ISO 8601 UTC)")
    if sheet.mosquitto_pub:
        print("send one reading now (Debian: apt install mosquitto-clients):")
        print(f"  {sheet.mosquitto_pub}")


def cmd_list(args: argparse.Namespace) -> int:
    from devices.naming import resolve_province_code
    from devices.provinces import load_provinces
    from devices.registry import list_devices
    from store.scope import EVERYTHING

    province = None if args.province is None else resolve_province_code(load_provinces(), args.province)
    with command_database() as conn:
        devices = list_devices(conn, scope=EVERYTHING, province=province, sector=args.sector, limit=args.limit)
    if args.json:
        print(json.dumps([_device_json(d) for d in devices], ensure_ascii=False, indent=2))
        return 0
    for device in devices:
        _print_device(device)
    return 0


def _device_json(device: Any) -> dict[str, object]:
    from dataclasses import asdict

    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in asdict(device).items()}


def cmd_show(args: argparse.Namespace) -> int:
    from devices.audit import list_audit
    from devices.health import list_health
    from devices.registry import get_device
    from store.quarantine import QuarantineFilter, list_quarantined
    from store.scope import EVERYTHING

    with command_database() as conn:
        _print_device(get_device(conn, args.device_id, scope=EVERYTHING))
        for h in list_health(conn, scope=EVERYTHING, device_id=args.device_id):
            print(f"health: {h.state} (online: {h.online}, last seen: {h.last_seen})")
        # The query of GET /devices/{id}/quarantine: why the center refused this device's recent messages.
        flt = QuarantineFilter(scope=EVERYTHING, device_id=args.device_id)
        refused = list_quarantined(conn, flt, limit=args.refusals)
        print(f"refused messages, newest first ({len(refused)} shown; raw bytes: ioc quarantine show ID):")
        for q in refused:
            print(f"  {q.received_at:%Y-%m-%d %H:%M:%S%z}\t#{q.id}\t{q.reason}\t{q.detail}\t{q.topic}")
        if not refused:
            print("  none")
        print("audit trail:")
        for entry in list_audit(conn, scope=EVERYTHING, target=args.device_id):
            print(f"  {entry.at:%Y-%m-%d %H:%M:%S%z}\t{entry.actor}\t{entry.action}\t{dict(entry.details)}")
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
    from devices.naming import resolve_province_code
    from devices.provinces import load_provinces
    from devices.provisioning import update_device
    from store.scope import EVERYTHING

    province = resolve_province_code(load_provinces(), args.province)
    with command_database() as conn:
        _print_device(update_device(conn, args.device_id, actor=ACTOR, scope=EVERYTHING, province=province))
    return 0


def cmd_decommission(args: argparse.Namespace) -> int:
    from devices.provisioning import decommission_device
    from store.scope import EVERYTHING

    with command_database() as conn:
        _print_device(decommission_device(conn, args.device_id, actor=ACTOR, scope=EVERYTHING, reason=args.reason))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from devices.catalog import load_catalog
    from devices.provisioning import import_devices_csv
    from ioc.cli.progress import progress_bar
    from store.scope import EVERYTHING

    started = time.monotonic()
    secrets_out = Path(args.secrets_out)
    if secrets_out.exists():
        raise DevicesCommandError(f"{secrets_out} exists: secrets are never overwritten; name a new file")
    with args.csv_file as fh:
        text = fh.read()
    with command_database() as conn, progress_bar("checking rows", total=max(0, text.count("\n") - 1)) as advance:
        rows = import_devices_csv(conn, text, catalog=load_catalog(), actor=ACTOR, scope=EVERYTHING, on_rows=advance)
        provisioned = [r for r in rows if r.ok]
        if provisioned:
            # Written before the commit: should the file fail, nothing is registered whose secret is lost.
            _write_secrets(secrets_out, [(r.device_id, r.secret) for r in provisioned])
    failed = [r for r in rows if not r.ok]
    for r in failed:
        print(f"row {r.row}\t{r.device_id or '-'}\terror\t{r.reason}")
    where = f"secrets in {secrets_out}" if provisioned else "no secrets file written"
    print(
        f"{len(provisioned)} devices provisioned, {len(failed)} rows failed, "
        f"{time.monotonic() - started:.1f} s; {where}"
    )
    return 1 if failed else 0


def _write_secrets(path: Any, rows: list[tuple[str, str]]) -> None:
    """A new file, readable by its owner only, created no earlier than its content exists."""
    import csv
    import os

    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise DevicesCommandError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["device_id", "secret"])
        writer.writerows(rows)


def cmd_export(args: argparse.Namespace) -> int:
    import contextlib
    import sys
    from pathlib import Path

    from devices.roster_csv import count_active_devices, iter_active_devices, write_roster
    from ioc.cli.progress import progress_bar
    from store.scope import EVERYTHING

    with contextlib.ExitStack() as stack:
        conn = stack.enter_context(command_database())
        total = count_active_devices(conn, scope=EVERYTHING, province=args.province, sector=args.sector)
        if args.csv_file == "-":
            out = sys.stdout
        else:
            try:
                out = stack.enter_context(Path(args.csv_file).open("w", encoding="utf-8", newline=""))
            except OSError as exc:
                raise DevicesCommandError(f"cannot write {args.csv_file}: {exc.strerror}") from exc
        advance = stack.enter_context(progress_bar("exporting devices", total=total))
        written = 0
        for _ in write_roster(
            out, iter_active_devices(conn, scope=EVERYTHING, province=args.province, sector=args.sector)
        ):
            written += 1
            advance(1)
    if args.csv_file != "-":
        print(f"{written} devices written to {args.csv_file}")
    return 0


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
