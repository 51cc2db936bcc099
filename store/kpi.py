"""Cross-device figures for dashboards and the national center: open alarms by severity and reading rates, per
province and sector, within a scope."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import sql

from store.pool import Conn
from store.scope import Scope


@dataclass(frozen=True, slots=True)
class AlarmCounts:
    province: str
    sector: str
    critical: int
    major: int
    minor: int
    warning: int
    unacknowledged: int


@dataclass(frozen=True, slots=True)
class ReadingRate:
    province: str
    sector: str
    readings: int
    per_minute: float


def count_open_alarms(conn: Conn, *, scope: Scope, province: str | None = None) -> list[AlarmCounts]:
    """Alarms not yet cleared, per province and sector, by severity; `unacknowledged` = still active."""
    clause, params = scope.where()
    rows = conn.execute(
        sql.SQL(
            "SELECT province, sector, count(*) FILTER (WHERE severity = 'critical'), "
            "count(*) FILTER (WHERE severity = 'major'), count(*) FILTER (WHERE severity = 'minor'), "
            "count(*) FILTER (WHERE severity = 'warning'), count(*) FILTER (WHERE status = 'active') "
            "FROM alarms WHERE status <> 'cleared' AND (%s::text IS NULL OR province = %s) AND {} "
            "GROUP BY province, sector ORDER BY province, sector"
        ).format(clause),
        [province, province, *params],
    ).fetchall()
    return [AlarmCounts(*r) for r in rows]


def reading_rates(
    conn: Conn, *, scope: Scope, window_s: float = 600.0, province: str | None = None
) -> list[ReadingRate]:
    """Readings received in the last `window_s` seconds per province and sector, and the rate per minute."""
    clause, params = scope.where(table="d")
    rows = conn.execute(
        sql.SQL(
            "SELECT d.province, d.sector, count(*) FROM readings r JOIN devices d ON d.device_id = r.device_id "
            "WHERE r.ts > now() - make_interval(secs => %s) AND r.received_at > now() - make_interval(secs => %s) "
            "AND (%s::text IS NULL OR d.province = %s) AND {} GROUP BY d.province, d.sector "
            "ORDER BY d.province, d.sector"
        ).format(clause),
        [window_s, window_s, province, province, *params],
    ).fetchall()
    return [ReadingRate(str(p), str(s), int(n), int(n) * 60.0 / window_s) for p, s, n in rows]


@dataclass(frozen=True, slots=True)
class AlarmOfDay:
    id: int
    raised_at: datetime
    device_id: str
    sector: str
    metric: str | None
    kind: str
    severity: str
    status: str
    message: str
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    cleared_at: datetime | None


def alarms_raised(conn: Conn, *, province: str, start: datetime, end: datetime) -> list[AlarmOfDay]:
    """Alarms of a province raised in [start, end), oldest first."""
    rows = conn.execute(
        "SELECT id, raised_at, device_id, sector, metric, kind, severity, status, message, acknowledged_by, "
        "acknowledged_at, cleared_at FROM alarms WHERE province = %s AND raised_at >= %s AND raised_at < %s "
        "ORDER BY raised_at, id",
        (province, start, end),
    ).fetchall()
    return [AlarmOfDay(*r) for r in rows]


def readings_between(conn: Conn, *, province: str, start: datetime, end: datetime) -> dict[str, int]:
    """Readings per sector of a province with reading times in [start, end)."""
    rows = conn.execute(
        "SELECT d.sector, count(*) FROM readings r JOIN devices d ON d.device_id = r.device_id "
        "WHERE d.province = %s AND r.ts >= %s AND r.ts < %s GROUP BY d.sector",
        (province, start, end),
    ).fetchall()
    return {str(sector): int(n) for sector, n in rows}


def provinces_with_devices(conn: Conn) -> list[str]:
    return [str(r[0]) for r in conn.execute("SELECT DISTINCT province FROM devices WHERE status = 'active' ORDER BY 1")]


# (device_id, province, sector, type_code, metric, ts, value, quality): tuples, not objects, for thousands of rows.
LatestRow = tuple[str, str, str, str, str, datetime, float, int]
LATEST_FIELDS = ("device_id", "province", "sector", "type_code", "metric", "ts", "value", "quality")


def latest_values(
    conn: Conn,
    *,
    scope: Scope,
    province: str | None = None,
    sector: str | None = None,
    type_code: str | None = None,
    metric: str | None = None,
    limit: int = 10_000,
) -> list[LatestRow]:
    """The newest value of every metric of the active devices in scope (one row per device and metric)."""
    clause, params = scope.where(table="d")
    return (
        conn.cursor(binary=True)
        .execute(
            sql.SQL(
                "SELECT d.device_id, d.province, d.sector, d.type_code, l.metric, l.ts, l.value, l.quality "
                "FROM devices d JOIN device_latest l ON l.device_id = d.device_id "
                "WHERE d.status = 'active' AND (%s::text IS NULL OR d.province = %s) AND (%s::text IS NULL OR d.sector = %s) "
                "AND (%s::text IS NULL OR d.type_code = %s) AND (%s::text IS NULL OR l.metric = %s) AND {} "
                "ORDER BY d.device_id, l.metric LIMIT %s"
            ).format(clause),
            [province, province, sector, sector, type_code, type_code, metric, metric, *params, limit],
        )
        .fetchall()
    )


@dataclass(frozen=True, slots=True)
class MetricTotal:
    province: str
    sector: str
    type_code: str
    metric: str
    devices: int
    total: float
    mean: float
    minimum: float
    maximum: float
    newest: datetime


def latest_totals(
    conn: Conn,
    *,
    scope: Scope,
    metric: str,
    province: str | None = None,
    sector: str | None = None,
    type_code: str | None = None,
) -> list[MetricTotal]:
    """Across devices: the sum, mean, min and max of each device's newest value of `metric`, per province, sector
    and device type (a province's metered power, its river levels)."""
    clause, params = scope.where(table="d")
    rows = conn.execute(
        sql.SQL(
            "SELECT d.province, d.sector, d.type_code, l.metric, count(*), sum(l.value), avg(l.value), min(l.value), "
            "max(l.value), max(l.ts) FROM devices d JOIN device_latest l ON l.device_id = d.device_id "
            "WHERE d.status = 'active' AND l.metric = %s AND (%s::text IS NULL OR d.province = %s) "
            "AND (%s::text IS NULL OR d.sector = %s) AND (%s::text IS NULL OR d.type_code = %s) AND {} "
            "GROUP BY d.province, d.sector, d.type_code, l.metric ORDER BY 1, 2, 3"
        ).format(clause),
        [metric, province, province, sector, sector, type_code, type_code, *params],
    ).fetchall()
    return [MetricTotal(*r) for r in rows]
