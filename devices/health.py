"""Device health: online/offline as devices last said (retained `status`, Last Will), last-seen from the latest
readings, and "silent" when a device sent nothing for `SILENT_AFTER_INTERVALS` report intervals.

Health is computed when asked (SQL over `device_status` and `device_latest`), so "silent" needs no timer:
it is true from the moment the third interval passes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from psycopg import sql

from store.pool import Conn
from store.scope import Scope

SILENT_AFTER_INTERVALS: Final = 3
HealthState = Literal["online", "silent", "offline", "unknown"]
HEALTH_STATES: Final[tuple[HealthState, ...]] = ("online", "silent", "offline", "unknown")


@dataclass(frozen=True, slots=True)
class StatusChange:
    device_id: str
    online: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class DeviceHealth:
    device_id: str
    province: str
    sector: str
    type_code: str
    report_interval_s: float
    state: str
    online: bool | None
    status_changed_at: datetime | None
    last_seen: datetime | None


@dataclass(frozen=True, slots=True)
class HealthSummary:
    province: str
    sector: str
    total: int
    online: int
    silent: int
    offline: int
    unknown: int
    type_code: str = "*"


def record_status(conn: Conn, changes: Iterable[StatusChange]) -> int:
    """Store the latest online/offline of registered devices; returns how many rows changed."""
    changed = 0
    for c in changes:
        cur = conn.execute(
            "INSERT INTO device_status (device_id, online, changed_at) "
            "SELECT %s, %s, %s WHERE EXISTS (SELECT 1 FROM devices WHERE device_id = %s) "
            "ON CONFLICT (device_id) DO UPDATE SET online = excluded.online, changed_at = excluded.changed_at "
            "WHERE device_status.online IS DISTINCT FROM excluded.online",
            (c.device_id, c.online, c.at, c.device_id),
        )
        changed += cur.rowcount
    return changed


# Activity = the last reading received, or the moment the device said it came online.
HEALTH_SQL: Final = f"""
WITH seen AS (
    SELECT device_id, max(received_at) AS last_seen FROM device_latest GROUP BY device_id
), h AS (
    SELECT d.device_id, d.province, d.sector, d.type_code,
           coalesce(d.report_interval_s, t.report_interval_s) AS interval_s,
           s.online, s.changed_at, seen.last_seen,
           greatest(seen.last_seen, CASE WHEN s.online THEN s.changed_at END) AS active_at
    FROM devices d
    JOIN device_types t ON t.code = d.type_code
    LEFT JOIN device_status s ON s.device_id = d.device_id
    LEFT JOIN seen ON seen.device_id = d.device_id
    WHERE d.status = 'active'
)
SELECT device_id, province, sector, type_code, interval_s, online, changed_at, last_seen,
       CASE WHEN online IS FALSE THEN 'offline'
            WHEN active_at IS NULL THEN 'unknown'
            WHEN active_at >= clock_timestamp() - make_interval(secs => {SILENT_AFTER_INTERVALS} * interval_s)
                THEN 'online'
            ELSE 'silent' END AS state
FROM h
"""


def _health(row: tuple[object, ...]) -> DeviceHealth:
    return DeviceHealth(
        device_id=str(row[0]),
        province=str(row[1]),
        sector=str(row[2]),
        type_code=str(row[3]),
        report_interval_s=float(row[4]),  # type: ignore[arg-type]
        online=row[5],  # type: ignore[arg-type]
        status_changed_at=row[6],  # type: ignore[arg-type]
        last_seen=row[7],  # type: ignore[arg-type]
        state=str(row[8]),
    )


def list_health(
    conn: Conn,
    *,
    scope: Scope,
    province: str | None = None,
    sector: str | None = None,
    state: str | None = None,
    device_id: str | None = None,
    limit: int = 1000,
    offset: int = 0,
) -> list[DeviceHealth]:
    """Health of the active devices inside `scope`, by device id."""
    in_scope, scope_params = scope.where(table="x")
    rows = conn.execute(
        sql.SQL(
            "SELECT * FROM ({}) x WHERE (%s::text IS NULL OR province = %s) "
            "AND (%s::text IS NULL OR sector = %s) AND (%s::text IS NULL OR state = %s) "
            "AND (%s::text IS NULL OR device_id = %s) AND {} ORDER BY device_id LIMIT %s OFFSET %s"
        ).format(sql.SQL(HEALTH_SQL), in_scope),
        [province, province, sector, sector, state, state, device_id, device_id, *scope_params, limit, offset],
    ).fetchall()
    return [_health(r) for r in rows]


SummaryGroup = Literal["province", "sector", "type_code"]


def summarize_health(
    conn: Conn,
    *,
    scope: Scope,
    province: str | None = None,
    sector: str | None = None,
    by: Sequence[SummaryGroup] = ("province", "sector"),
) -> list[HealthSummary]:
    """Counts of the active devices inside `scope` in each health state, grouped by `by` (province, sector or
    device type; a field not grouped on is "*" in the result)."""
    in_scope, scope_params = scope.where(table="x")
    groups = [g for g in ("province", "sector", "type_code") if g in by]
    columns = [sql.Identifier(g) if g in groups else sql.Literal("*") for g in ("province", "sector")]
    type_column = sql.Identifier("type_code") if "type_code" in groups else sql.Literal("*")
    group_by = sql.SQL("GROUP BY {}").format(sql.SQL(", ").join(map(sql.Identifier, groups))) if groups else sql.SQL("")
    order_by = sql.SQL("ORDER BY {}").format(sql.SQL(", ").join(map(sql.Identifier, groups))) if groups else sql.SQL("")
    rows = conn.execute(
        sql.SQL(
            "SELECT {}, {}, count(*), count(*) FILTER (WHERE state = 'online'), "
            "count(*) FILTER (WHERE state = 'silent'), count(*) FILTER (WHERE state = 'offline'), "
            "count(*) FILTER (WHERE state = 'unknown'), {} FROM ({}) x "
            "WHERE (%s::text IS NULL OR province = %s) AND (%s::text IS NULL OR sector = %s) AND {} {} {}"
        ).format(columns[0], columns[1], type_column, sql.SQL(HEALTH_SQL), in_scope, group_by, order_by),
        [province, province, sector, sector, *scope_params],
    ).fetchall()
    return [HealthSummary(*r) for r in rows]
