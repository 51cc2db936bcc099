"""The device registry: device types and provinces synced from the catalog data, and the devices themselves, read
within a caller's scope (a device outside it is answered as an unknown one)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from psycopg import sql

from core.errors import Conflict, Forbidden, InvalidRequest, IocError, UnknownDevice
from devices.catalog import Catalog
from devices.health import HEALTH_SQL
from devices.provinces import Province
from store.pool import Conn
from store.scope import Scope

DEVICE_COLUMNS = (
    "device_id, type_code, province, sector, name, status, created_at, credential_status, report_interval_s"
)


class RegistryError(IocError):
    """Base of the registry's errors; what is raised is always one of the kinds below, each with one meaning."""


class InvalidRegistryValue(RegistryError, InvalidRequest):
    """A value the registry does not accept: unknown device type, province or role, a bad id, name or interval."""


class DuplicateDevice(RegistryError, Conflict):
    """A device id that is already registered."""


class DeviceDecommissioned(RegistryError, Conflict):
    """A change to a device that is decommissioned (or a second decommissioning)."""


class OutOfScope(RegistryError, Forbidden):
    """A device the caller may not place where it asked: a province or sector outside the caller's scope."""


def check_in_scope(scope: Scope, *, province: str, sector: str) -> None:
    """OutOfScope unless a device in `province` and `sector` is inside `scope` (for a device being created or
    moved: what the caller asks for, not a stored row, which the queries scope themselves)."""
    if not scope.allows(province=province, sector=sector):
        raise OutOfScope(f"{province}/{sector} is outside your scope")


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    device_id: str
    type_code: str
    province: str
    sector: str
    name: str
    status: str
    created_at: datetime
    credential_status: str = "none"
    # None = the device type's report interval
    report_interval_s: float | None = None

    @property
    def active(self) -> bool:
        return self.status == "active"


def sync_catalog(conn: Conn, catalog: Catalog) -> int:
    """Upsert every device type of the catalog; returns how many rows changed."""
    changed = 0
    for dtype in catalog.types.values():
        spec = json.dumps(
            {
                "description": dtype.description,
                "metrics": [asdict(m) for m in dtype.metrics],
                "rules": [asdict(r) for r in dtype.rules],
            },
            sort_keys=True,
        )
        cur = conn.execute(
            "INSERT INTO device_types (code, name, sector, report_interval_s, spec) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (code) DO UPDATE SET name = excluded.name, sector = excluded.sector, "
            "report_interval_s = excluded.report_interval_s, spec = excluded.spec, updated_at = now() "
            "WHERE (device_types.name, device_types.sector, device_types.report_interval_s, device_types.spec) "
            "IS DISTINCT FROM (excluded.name, excluded.sector, excluded.report_interval_s, excluded.spec)",
            (dtype.code, dtype.name, dtype.sector, dtype.report_interval_s, spec),
        )
        changed += cur.rowcount
    return changed


def sync_provinces(conn: Conn, provinces: Iterable[Province]) -> int:
    changed = 0
    for p in provinces:
        cur = conn.execute(
            "INSERT INTO provinces (code, name, name_ascii, kind, merged_from) VALUES (%s, %s, %s, %s, %s) "
            "ON CONFLICT (code) DO UPDATE SET name = excluded.name, name_ascii = excluded.name_ascii, "
            "kind = excluded.kind, merged_from = excluded.merged_from "
            "WHERE (provinces.name, provinces.name_ascii, provinces.kind, provinces.merged_from) "
            "IS DISTINCT FROM (excluded.name, excluded.name_ascii, excluded.kind, excluded.merged_from)",
            (p.code, p.name, p.name_ascii, p.kind, list(p.merged_from)),
        )
        changed += cur.rowcount
    return changed


def _record(row: Sequence[object]) -> DeviceRecord:
    return DeviceRecord(*row)  # type: ignore[arg-type]


def create_device(
    conn: Conn, *, device_id: str, type_code: str, province: str, catalog: Catalog, name: str = ""
) -> DeviceRecord:
    """Register one device; its sector comes from its type."""
    dtype = catalog.get(type_code)
    if dtype is None:
        raise InvalidRegistryValue(f"unknown device type {type_code!r}")
    if conn.execute("SELECT 1 FROM provinces WHERE code = %s", (province,)).fetchone() is None:
        raise InvalidRegistryValue(f"unknown province {province!r}")
    row = conn.execute(
        f"INSERT INTO devices (device_id, type_code, province, sector, name) VALUES (%s, %s, %s, %s, %s) "
        f"ON CONFLICT (device_id) DO NOTHING RETURNING {DEVICE_COLUMNS}",
        (device_id, type_code, province, dtype.sector, name),
    ).fetchone()
    if row is None:
        raise DuplicateDevice(f"device {device_id!r} already exists")
    return _record(row)


def get_device(conn: Conn, device_id: str, *, scope: Scope) -> DeviceRecord:
    """The device, or UnknownDevice when it is not registered or outside `scope` (the same answer, so that a
    caller learns nothing of devices it may not see)."""
    condition, params = scope.where()
    row = conn.execute(
        sql.SQL("SELECT {} FROM devices WHERE device_id = %s AND {}").format(sql.SQL(DEVICE_COLUMNS), condition),
        [device_id, *params],
    ).fetchone()
    if row is None:
        raise UnknownDevice(device_id)
    return _record(row)


def lookup_devices(conn: Conn, device_ids: Sequence[str]) -> dict[str, DeviceRecord]:
    """The registered devices among `device_ids` (missing ids are simply absent)."""
    rows = conn.execute(
        f"SELECT {DEVICE_COLUMNS} FROM devices WHERE device_id = ANY(%s)", (list(device_ids),)
    ).fetchall()
    return {r[0]: _record(r) for r in rows}


def list_devices(
    conn: Conn,
    *,
    scope: Scope,
    province: str | None = None,
    sector: str | None = None,
    type_code: str | None = None,
    status: str | None = None,
    health: str | None = None,
    search: str | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> list[DeviceRecord]:
    """Devices inside `scope`, by id, filtered by province, sector, type, registry status, health state
    (devices.health) and a case-insensitive search in the id and name."""
    condition, params = scope.where()
    pattern = (
        None if search is None else "%" + search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    )
    rows = conn.execute(
        sql.SQL(
            "SELECT {} FROM devices WHERE (%s::text IS NULL OR province = %s) "
            "AND (%s::text IS NULL OR sector = %s) AND (%s::text IS NULL OR type_code = %s) "
            "AND (%s::text IS NULL OR status = %s) "
            "AND (%s::text IS NULL OR device_id ILIKE %s OR name ILIKE %s) "
            "AND (%s::text IS NULL OR device_id IN (SELECT device_id FROM ({}) h WHERE h.state = %s)) "
            "AND {} ORDER BY device_id LIMIT %s OFFSET %s"
        ).format(sql.SQL(DEVICE_COLUMNS), sql.SQL(HEALTH_SQL), condition),
        [
            province,
            province,
            sector,
            sector,
            type_code,
            type_code,
            status,
            status,
            pattern,
            pattern,
            pattern,
            health,
            health,
            *params,
            limit,
            offset,
        ],
    ).fetchall()
    return [_record(r) for r in rows]
