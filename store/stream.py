"""What a live stream reads: readings and alarm events committed since a watermark, within a scope and filters.

The watermark is a transaction id: every transaction below `pg_snapshot_xmin(pg_current_snapshot())` has ended,
so reading [low, high) once per step never skips a late commit and never returns a row twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from psycopg import sql

from store.pool import Conn
from store.scope import Scope

STEP_ROWS_MAX: Final = 20_000  # an ingest batch is at most 5,000 rows: one transaction always fits in a step


@dataclass(frozen=True, slots=True)
class StreamFilter:
    """Which events a subscriber asked for (within its scope): None = any."""

    province: str | None = None
    sector: str | None = None
    device_id: str | None = None


@dataclass(frozen=True, slots=True)
class StreamReading:
    xid: int
    ts: datetime
    device_id: str
    metric: str
    value: float
    quality: int
    province: str
    sector: str


@dataclass(frozen=True, slots=True)
class StreamAlarmEvent:
    xid: int
    event_id: int
    at: datetime
    alarm_id: int
    device_id: str
    province: str
    sector: str
    status: str
    severity: str
    kind: str
    message: str
    assigned_to: str | None


def current_watermark(conn: Conn) -> int:
    """The transaction id below which every transaction has ended."""
    row = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").fetchone()
    assert row is not None
    return int(row[0])


def _filters(
    scope: Scope, wanted: StreamFilter, *, alias: str, device_column: str = "device_id"
) -> tuple[sql.Composed, list[object]]:
    clause, params = scope.where(table=alias)
    parts: list[sql.Composable] = [clause]
    values: list[object] = list(params)
    for column, value in (("province", wanted.province), ("sector", wanted.sector), (device_column, wanted.device_id)):
        if value is not None:
            parts.append(sql.SQL("{} = %s").format(sql.Identifier(alias, column)))
            values.append(value)
    return sql.SQL(" AND ").join(parts), values


def fetch_stream_readings(
    conn: Conn, *, low_xid: int, high_xid: int, scope: Scope, wanted: StreamFilter
) -> tuple[list[StreamReading], int]:
    """Readings written by transactions in [low_xid, high_xid) that the scope and filter allow, in commit order;
    and the watermark they bring the reader to (high_xid, or less when a step holds more than STEP_ROWS_MAX rows)."""
    where, params = _filters(scope, wanted, alias="d")
    query = sql.SQL(
        "SELECT r.ingest_xid, r.ts, r.device_id, r.metric, r.value, r.quality, d.province, d.sector "
        "FROM readings r JOIN devices d ON d.device_id = r.device_id "
        "WHERE r.ingest_xid >= %s AND r.ingest_xid < %s AND {} "
        "ORDER BY r.ingest_xid, r.device_id, r.metric, r.ts LIMIT %s"
    ).format(where)
    rows = conn.execute(query, [low_xid, high_xid, *params, STEP_ROWS_MAX + 1]).fetchall()
    readings = [StreamReading(*row) for row in rows]
    if len(readings) <= STEP_ROWS_MAX:
        return readings, high_xid
    # More than a step: stop before the last transaction seen, which the next step reads whole.
    last = readings[-1].xid
    return [r for r in readings if r.xid < last], last


def fetch_stream_alarm_events(
    conn: Conn, *, low_xid: int, high_xid: int, scope: Scope, wanted: StreamFilter
) -> list[StreamAlarmEvent]:
    """Alarm events written by transactions in [low_xid, high_xid) that the scope and filter allow, in order."""
    where, params = _filters(scope, wanted, alias="e")
    query = sql.SQL(
        "SELECT e.xid, e.event_id, e.at, e.alarm_id, e.device_id, e.province, e.sector, e.status, e.severity, "
        "e.kind, e.message, e.assigned_to FROM alarm_events e WHERE e.xid >= %s AND e.xid < %s AND {} ORDER BY e.xid, e.event_id"
    ).format(where)
    return [StreamAlarmEvent(*row) for row in conn.execute(query, [low_xid, high_xid, *params]).fetchall()]
