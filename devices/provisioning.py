"""Registry changes with credentials: provision (one or a CSV of many), update, move, decommission,
rotate and revoke secrets. Every change is audited in the caller's transaction; secrets are returned once
and never stored, only their hash (see `devices.credentials`). Changes stay within the caller's scope: a device
outside it is unknown, and one cannot be created in or moved to a province or sector outside it (OutOfScope).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import psycopg
from psycopg import sql

from core.errors import UnknownDevice
from devices.audit import record_audit, record_audit_many
from devices.catalog import Catalog
from devices.credentials import generate_secret, hash_secret
from devices.registry import (
    DEVICE_COLUMNS,
    DeviceDecommissioned,
    DeviceRecord,
    DuplicateDevice,
    InvalidRegistryValue,
    RegistryError,
    check_in_scope,
    get_device,
)
from devices.roster_csv import missing_columns_message
from store.pool import Conn
from store.scope import Scope

DEVICE_ID_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
NAME_MAX_CHARS: Final = 200
_PROGRESS_ROWS: Final = 1000  # rows between two progress reports of an import


@dataclass(frozen=True, slots=True)
class ProvisionedDevice:
    """A new device and its secret: the only time the secret exists outside the device."""

    device: DeviceRecord
    secret: str

    def __repr__(self) -> str:  # never print a secret
        return f"ProvisionedDevice(device={self.device!r})"


@dataclass(frozen=True, slots=True)
class ImportRow:
    """One CSV row's outcome: `secret` is set for rows that were provisioned."""

    row: int
    device_id: str
    ok: bool
    reason: str = ""
    secret: str = ""

    def __repr__(self) -> str:
        return f"ImportRow(row={self.row}, device_id={self.device_id!r}, ok={self.ok}, reason={self.reason!r})"


@dataclass(frozen=True, slots=True)
class _NewDevice:
    device_id: str
    type_code: str
    province: str
    sector: str
    name: str
    report_interval_s: float | None


def _known_provinces(conn: Conn) -> set[str]:
    return {str(r[0]) for r in conn.execute("SELECT code FROM provinces").fetchall()}


def _check_new(
    *,
    device_id: str,
    type_code: str,
    province: str,
    name: str,
    report_interval_s: float | None,
    catalog: Catalog,
    provinces: set[str],
) -> _NewDevice:
    """The device to insert, or InvalidRegistryValue saying what is wrong with it."""
    if DEVICE_ID_RE.fullmatch(device_id) is None:
        raise InvalidRegistryValue(f"bad device id {device_id[:80]!r}: use 1-64 of A-Z a-z 0-9 _ . -")
    dtype = catalog.get(type_code)
    if dtype is None:
        raise InvalidRegistryValue(f"unknown device type {type_code!r}")
    if province not in provinces:
        raise InvalidRegistryValue(f"unknown province {province!r}")
    if len(name) > NAME_MAX_CHARS:
        raise InvalidRegistryValue(f"name longer than {NAME_MAX_CHARS} characters")
    if report_interval_s is not None and not report_interval_s > 0:
        raise InvalidRegistryValue(f"report interval must be positive, got {report_interval_s}")
    return _NewDevice(device_id, type_code, province, dtype.sector, name, report_interval_s)


def provision_device(
    conn: Conn,
    *,
    device_id: str,
    type_code: str,
    province: str,
    catalog: Catalog,
    actor: str,
    scope: Scope,
    name: str = "",
    report_interval_s: float | None = None,
    address: str | None = None,
) -> ProvisionedDevice:
    """Register a device with a fresh secret; InvalidRegistryValue or DuplicateDevice when it cannot be,
    OutOfScope when its province and sector are outside the caller's `scope`."""
    new = _check_new(
        device_id=device_id,
        type_code=type_code,
        province=province,
        name=name,
        report_interval_s=report_interval_s,
        catalog=catalog,
        provinces=_known_provinces(conn),
    )
    check_in_scope(scope, province=new.province, sector=new.sector)
    secret = generate_secret()
    row = conn.execute(
        "INSERT INTO devices (device_id, type_code, province, sector, name, report_interval_s, secret_hash, "
        "credential_status, credential_changed_at) VALUES (%s, %s, %s, %s, %s, %s, %s, 'active', now()) "
        f"ON CONFLICT (device_id) DO NOTHING RETURNING {DEVICE_COLUMNS}",
        (new.device_id, new.type_code, new.province, new.sector, new.name, new.report_interval_s, hash_secret(secret)),
    ).fetchone()
    if row is None:
        raise DuplicateDevice(f"device {device_id!r} already exists")
    record_audit(
        conn,
        actor=actor,
        action="device.create",
        target=device_id,
        details={"type_code": type_code, "province": province, "name": name, "report_interval_s": report_interval_s},
        address=address,
    )
    return ProvisionedDevice(device=DeviceRecord(*row), secret=secret)


_UNSET: Final = object()


def update_device(
    conn: Conn,
    device_id: str,
    *,
    actor: str,
    scope: Scope,
    name: str | None = None,
    province: str | None = None,
    report_interval_s: float | object | None = _UNSET,
    address: str | None = None,
) -> DeviceRecord:
    """Change a device's name, province (a move: readings keep the device id, so history stays) or report
    interval (None = back to the type's). Each change is audited with its old and new value. A device outside
    `scope` is unknown; a move out of it is OutOfScope."""
    before = get_device(conn, device_id, scope=scope)
    if not before.active:
        raise DeviceDecommissioned(f"device {device_id!r} is decommissioned")
    changes: dict[str, tuple[object, object]] = {}
    if name is not None and name != before.name:
        if len(name) > NAME_MAX_CHARS:
            raise InvalidRegistryValue(f"name longer than {NAME_MAX_CHARS} characters")
        changes["name"] = (before.name, name)
    if province is not None and province != before.province:
        if province not in _known_provinces(conn):
            raise InvalidRegistryValue(f"unknown province {province!r}")
        check_in_scope(scope, province=province, sector=before.sector)
        changes["province"] = (before.province, province)
    if report_interval_s is not _UNSET and report_interval_s != before.report_interval_s:
        if report_interval_s is not None and not (isinstance(report_interval_s, int | float) and report_interval_s > 0):
            raise InvalidRegistryValue(f"report interval must be positive, got {report_interval_s}")
        changes["report_interval_s"] = (before.report_interval_s, report_interval_s)
    if not changes:
        return before
    in_scope, scope_params = scope.where()
    row = conn.execute(
        sql.SQL(
            "UPDATE devices SET name = %s, province = %s, report_interval_s = %s, updated_at = now() "
            "WHERE device_id = %s AND {} RETURNING {}"
        ).format(in_scope, sql.SQL(DEVICE_COLUMNS)),
        [
            changes.get("name", (None, before.name))[1],
            changes.get("province", (None, before.province))[1],
            changes.get("report_interval_s", (None, before.report_interval_s))[1],
            device_id,
            *scope_params,
        ],
    ).fetchone()
    if row is None:
        raise UnknownDevice(device_id)
    action = "device.move" if set(changes) == {"province"} else "device.update"
    record_audit(
        conn,
        actor=actor,
        action=action,
        target=device_id,
        details={key: {"from": old, "to": new} for key, (old, new) in changes.items()},
        address=address,
    )
    return DeviceRecord(*row)


def decommission_device(
    conn: Conn, device_id: str, *, actor: str, scope: Scope, reason: str = "", address: str | None = None
) -> DeviceRecord:
    """Retire a device: its credentials are revoked (the broker cuts it off), its history stays. A device
    outside `scope` is unknown."""
    in_scope, scope_params = scope.where()
    row = conn.execute(
        sql.SQL(
            "UPDATE devices SET status = 'decommissioned', decommissioned_at = now(), updated_at = now(), "
            "secret_hash = NULL, "
            "credential_status = CASE WHEN credential_status = 'none' THEN 'none' ELSE 'revoked' END, "
            "credential_changed_at = now() WHERE device_id = %s AND status = 'active' AND {} RETURNING {}"
        ).format(in_scope, sql.SQL(DEVICE_COLUMNS)),
        [device_id, *scope_params],
    ).fetchone()
    if row is None:
        get_device(conn, device_id, scope=scope)  # UnknownDevice when it does not exist (for this caller)
        raise DeviceDecommissioned(f"device {device_id!r} is already decommissioned")
    record_audit(
        conn,
        actor=actor,
        action="device.decommission",
        target=device_id,
        details={"reason": reason},
        address=address,
    )
    return DeviceRecord(*row)


def rotate_secret(conn: Conn, device_id: str, *, actor: str, scope: Scope, address: str | None = None) -> str:
    """A new secret for an active device (also re-enables a revoked one); the old one stops working at the
    next broker sync, which also disconnects a session that used it. A device outside `scope` is unknown."""
    in_scope, scope_params = scope.where()
    cur = conn.execute(
        sql.SQL(
            "UPDATE devices SET secret_hash = %s, credential_status = 'active', credential_changed_at = now(), "
            "updated_at = now() WHERE device_id = %s AND status = 'active' AND {}"
        ).format(in_scope),
        [hash_secret(secret := generate_secret()), device_id, *scope_params],
    )
    if cur.rowcount == 0:
        device = get_device(conn, device_id, scope=scope)
        raise DeviceDecommissioned(f"device {device.device_id!r} is decommissioned")
    record_audit(conn, actor=actor, action="device.rotate_secret", target=device_id, details={}, address=address)
    return secret


def revoke_secret(
    conn: Conn, device_id: str, *, actor: str, scope: Scope, reason: str = "", address: str | None = None
) -> DeviceRecord:
    """Revoke a device's credentials: it can no longer connect, and a live session is cut off at the next sync.
    A device outside `scope` is unknown."""
    in_scope, scope_params = scope.where()
    row = conn.execute(
        sql.SQL(
            "UPDATE devices SET secret_hash = NULL, credential_status = 'revoked', credential_changed_at = now(), "
            "updated_at = now() WHERE device_id = %s AND {} RETURNING {}"
        ).format(in_scope, sql.SQL(DEVICE_COLUMNS)),
        [device_id, *scope_params],
    ).fetchone()
    if row is None:
        raise UnknownDevice(device_id)
    record_audit(
        conn, actor=actor, action="device.revoke", target=device_id, details={"reason": reason}, address=address
    )
    return DeviceRecord(*row)


def _parse_interval(text: str) -> float | None:
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise InvalidRegistryValue(f"report_interval_s {text[:40]!r} is not a number") from exc


def import_devices_csv(
    conn: Conn,
    text: str,
    *,
    catalog: Catalog,
    actor: str,
    scope: Scope,
    address: str | None = None,
    on_rows: Callable[[int], None] | None = None,
) -> list[ImportRow]:
    """Provision every good row of a roster CSV (`devices.roster_csv`: `device_id,type_code,province` required,
    `sector`, `name`, `report_interval_s` optional) and report each row: a bad row (one outside the caller's
    `scope` too) is reported with its reason and does not stop the good ones. `on_rows(n)` is told as rows are
    checked (a progress display).

    Rows are checked in Python (type, province, id, duplicates in the file and in the registry), then the
    good ones go in with one COPY; should that lose a race with a concurrent insert, each row is retried on
    its own savepoint so the report stays exact. Row numbers count the header as row 1, as a spreadsheet does.
    """
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = missing_columns_message(header)
    if missing is not None:
        raise InvalidRegistryValue(missing)
    reader.fieldnames = header
    provinces = _known_provinces(conn)
    report: dict[int, ImportRow] = {}
    candidates: list[tuple[int, _NewDevice]] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(reader, start=2):
        if on_rows is not None and index > 2 and (index - 2) % _PROGRESS_ROWS == 0:
            on_rows(_PROGRESS_ROWS)  # the rows before this one
        row = {k: (v or "").strip() for k, v in raw.items() if k is not None}
        device_id = row.get("device_id", "")
        try:
            new = _check_row(raw, row, seen, catalog=catalog, provinces=provinces)
            check_in_scope(scope, province=new.province, sector=new.sector)
        except RegistryError as exc:
            report[index] = ImportRow(row=index, device_id=device_id, ok=False, reason=str(exc))
            continue
        seen[device_id] = index
        candidates.append((index, new))
    checked = len(report) + len(candidates)
    if on_rows is not None and checked:
        on_rows(checked - (checked - 1) // _PROGRESS_ROWS * _PROGRESS_ROWS)
    return _insert_checked(conn, report, candidates, actor=actor, address=address)


def _check_row(
    raw: Mapping[str | None, object],
    row: Mapping[str, str],
    seen: Mapping[str, int],
    *,
    catalog: Catalog,
    provinces: set[str],
) -> _NewDevice:
    if None in raw:
        raise InvalidRegistryValue("more fields than the header has")
    device_id = row.get("device_id", "")
    new = _check_new(
        device_id=device_id,
        type_code=row.get("type_code", ""),
        province=row.get("province", ""),
        name=row.get("name", ""),
        report_interval_s=_parse_interval(row.get("report_interval_s", "")),
        catalog=catalog,
        provinces=provinces,
    )
    sector = row.get("sector", "")
    if sector and sector != new.sector:
        raise InvalidRegistryValue(f"sector {sector[:40]!r} is not that of type {new.type_code!r} ({new.sector})")
    if device_id in seen:
        raise InvalidRegistryValue(f"device id repeats row {seen[device_id]}")
    return new


def _insert_checked(
    conn: Conn,
    report: dict[int, ImportRow],
    candidates: list[tuple[int, _NewDevice]],
    *,
    actor: str,
    address: str | None,
) -> list[ImportRow]:
    existing = {
        str(r[0])
        for r in conn.execute(
            "SELECT device_id FROM devices WHERE device_id = ANY(%s)", ([n.device_id for _, n in candidates],)
        ).fetchall()
    }
    fresh = []
    for index, new in candidates:
        if new.device_id in existing:
            report[index] = ImportRow(index, new.device_id, ok=False, reason=f"device {new.device_id!r} already exists")
        else:
            fresh.append((index, new, generate_secret()))
    hashed = [(index, new, secret, hash_secret(secret)) for index, new, secret in fresh]
    try:
        with conn.transaction():
            _copy_devices(conn, [(new, digest) for _, new, _, digest in hashed])
        for index, new, secret, _ in hashed:
            report[index] = ImportRow(index, new.device_id, ok=True, secret=secret)
    except psycopg.errors.UniqueViolation:
        for index, new, secret, digest in hashed:
            report[index] = _insert_one(conn, index, new, secret, digest)
    record_audit_many(
        conn,
        [(actor, "device.create", r.device_id, {"via": "csv_import", "row": r.row}) for r in report.values() if r.ok],
        address=address,
    )
    return [report[i] for i in sorted(report)]


def _copy_devices(conn: Conn, rows: Iterable[tuple[_NewDevice, str]]) -> None:
    columns = "device_id, type_code, province, sector, name, report_interval_s, secret_hash, credential_status, credential_changed_at"
    with conn.cursor() as cur, cur.copy(f"COPY devices ({columns}) FROM STDIN") as copy:
        for new, digest in rows:
            copy.write_row(
                (
                    new.device_id,
                    new.type_code,
                    new.province,
                    new.sector,
                    new.name,
                    new.report_interval_s,
                    digest,
                    "active",
                    "now",
                )
            )


def _insert_one(conn: Conn, index: int, new: _NewDevice, secret: str, digest: str) -> ImportRow:
    try:
        with conn.transaction():
            _copy_devices(conn, [(new, digest)])
    except psycopg.errors.UniqueViolation:
        return ImportRow(index, new.device_id, ok=False, reason=f"device {new.device_id!r} already exists")
    return ImportRow(index, new.device_id, ok=True, secret=secret)


@dataclass(frozen=True, slots=True)
class FleetDevice:
    """A device of a fleet registered in one go (a demo's or a benchmark's simulated devices)."""

    device_id: str
    type_code: str
    province: str
    name: str = ""


def provision_fleet(conn: Conn, fleet: Iterable[FleetDevice], *, catalog: Catalog, actor: str) -> dict[str, str]:
    """Register the devices not registered yet (one COPY) and give every device of `fleet` a fresh secret (the
    already registered ones in one UPDATE); returns device id → secret. Every change is audited."""
    provinces = _known_provinces(conn)
    checked = [
        _check_new(
            device_id=d.device_id,
            type_code=d.type_code,
            province=d.province,
            name=d.name,
            report_interval_s=None,
            catalog=catalog,
            provinces=provinces,
        )
        for d in fleet
    ]
    secrets = {new.device_id: generate_secret() for new in checked}
    digests = {device_id: hash_secret(secret) for device_id, secret in secrets.items()}
    existing = {
        str(r[0])
        for r in conn.execute("SELECT device_id FROM devices WHERE device_id = ANY(%s)", (list(secrets),)).fetchall()
    }
    _copy_devices(conn, [(new, digests[new.device_id]) for new in checked if new.device_id not in existing])
    rotated = conn.execute(
        "UPDATE devices d SET secret_hash = s.digest, credential_status = 'active', credential_changed_at = now(), "
        "updated_at = now() FROM unnest(%s::text[], %s::text[]) AS s(device_id, digest) "
        "WHERE d.device_id = s.device_id AND d.status = 'active' RETURNING d.device_id",
        (sorted(existing), [digests[i] for i in sorted(existing)]),
    ).fetchall()
    if len(rotated) != len(existing):
        retired = sorted(existing - {str(r[0]) for r in rotated})
        raise DeviceDecommissioned(f"decommissioned devices cannot rejoin a fleet: {', '.join(retired[:5])}")
    record_audit_many(
        conn,
        [(actor, "device.create", i, {"via": "fleet"}) for i in secrets if i not in existing]
        + [(actor, "device.rotate_secret", i, {"via": "fleet"}) for i in sorted(existing)],
    )
    return secrets
