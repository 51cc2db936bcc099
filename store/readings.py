"""The readings hypertable: batch writes through binary COPY, last values, and time-bucketed reads; the reads
(and those of a device's anomalies) within a caller's scope."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg import sql

from store.pool import Conn
from store.scope import Scope

QUALITY_GOOD = 0
QUALITY_OUT_OF_RANGE = 1

# (ts, device_id, metric, value, quality): tuples, not objects, on the hot path.
ReadingRow = tuple[datetime, str, str, float, int]

_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS readings_stage "
    "(ts timestamptz, device_id text, metric text, value float8, quality int2) ON COMMIT DELETE ROWS"
)
_LATEST_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS latest_stage "
    "(ts timestamptz, device_id text, metric text, value float8, quality int2) ON COMMIT DELETE ROWS"
)
_COPY_TYPES = ["timestamptz", "text", "text", "float8", "int2"]


@dataclass(frozen=True, slots=True)
class WriteResult:
    inserted: int
    duplicates: int


def _copy_rows(conn: Conn, table: str, rows: Sequence[ReadingRow]) -> None:
    with (
        conn.cursor() as cur,
        cur.copy(
            sql.SQL("COPY {} (ts, device_id, metric, value, quality) FROM STDIN (FORMAT BINARY)").format(
                sql.Identifier(table)
            )
        ) as copy,
    ):
        copy.set_types(_COPY_TYPES)
        for row in rows:
            copy.write_row(row)


def write_readings(conn: Conn, rows: Sequence[ReadingRow]) -> WriteResult:
    """COPY `rows` into `readings`, absorbing any (device, metric, ts) already stored.

    Runs inside the caller's transaction: nothing is visible (or acknowledged) before the caller commits.
    The common case, no duplicate, is one COPY straight into the hypertable inside a savepoint; only a batch
    holding a redelivered reading takes the slower path through a staging table and ON CONFLICT DO NOTHING.
    """
    if not rows:
        return WriteResult(inserted=0, duplicates=0)
    try:
        with conn.transaction():
            _copy_rows(conn, "readings", rows)
        return WriteResult(inserted=len(rows), duplicates=0)
    except psycopg.errors.UniqueViolation:
        pass
    conn.execute(_STAGE_DDL)
    _copy_rows(conn, "readings_stage", rows)
    # DISTINCT ON: one batch may carry the same reading twice (a redelivery inside one batch).
    cur = conn.execute(
        "INSERT INTO readings (ts, device_id, metric, value, quality) "
        "SELECT DISTINCT ON (device_id, metric, ts) ts, device_id, metric, value, quality "
        "FROM readings_stage ON CONFLICT DO NOTHING"
    )
    return WriteResult(inserted=cur.rowcount, duplicates=len(rows) - cur.rowcount)


def upsert_latest(conn: Conn, latest: Sequence[ReadingRow]) -> None:
    """Refresh `device_latest` with the newest reading per (device, metric); older ones never overwrite.

    Set-based (COPY into a staging table, one INSERT … ON CONFLICT): a row per key through executemany costs
    the ingest process as much Python as the readings themselves.
    """
    if not latest:
        return
    conn.execute(_LATEST_STAGE_DDL)
    _copy_rows(conn, "latest_stage", latest)
    # ORDER BY: one lock order for every writer, or two ingest workers upserting the same keys deadlock.
    conn.execute(
        "INSERT INTO device_latest AS l (ts, device_id, metric, value, quality, received_at) "
        "SELECT ts, device_id, metric, value, quality, now() FROM latest_stage ORDER BY device_id, metric "
        "ON CONFLICT (device_id, metric) DO UPDATE SET ts = excluded.ts, value = excluded.value, "
        "quality = excluded.quality, received_at = excluded.received_at WHERE excluded.ts >= l.ts"
    )


class LatestValues:
    """The newest reading per (device, metric) seen since the last flush: `device_latest` is refreshed from
    here about once a second instead of once per batch, which keeps it current at a fraction of the cost."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str], ReadingRow] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, rows: Sequence[ReadingRow]) -> None:
        latest = self._rows
        for row in rows:
            key = (row[1], row[2])
            seen = latest.get(key)
            if seen is None or row[0] >= seen[0]:
                latest[key] = row

    def rows(self) -> list[ReadingRow]:
        return list(self._rows.values())

    def clear(self) -> None:
        self._rows.clear()


def _device_in_scope(scope: Scope) -> tuple[sql.Composed, list[list[str]]]:
    """`EXISTS (…)`: the device named by the query's first parameter is registered and inside `scope`. Evaluated
    once per query (it does not refer to the outer row), so the hypertable scan is not slowed."""
    in_scope, params = scope.where(table="d")
    return sql.SQL("EXISTS (SELECT 1 FROM devices d WHERE d.device_id = %s AND {})").format(in_scope), params


@dataclass(frozen=True, slots=True)
class StoredReading:
    ts: datetime
    metric: str
    value: float
    quality: int


def query_readings(
    conn: Conn,
    *,
    scope: Scope,
    device_id: str,
    metric: str | None,
    start: datetime,
    end: datetime,
    limit: int,
    newest_first: bool = True,
    after: tuple[datetime, str] | None = None,
) -> list[StoredReading]:
    """Raw readings of one device in [start, end), newest first (or oldest first), at most `limit`; `after` is the
    (ts, metric) of the last reading of the previous page. None when the device is outside `scope`."""
    in_scope, scope_params = _device_in_scope(scope)
    direction = sql.SQL("DESC" if newest_first else "ASC")
    page = (
        sql.SQL("AND (ts, metric) {} (%s, %s)").format(sql.SQL("<" if newest_first else ">")) if after else sql.SQL("")
    )
    rows = conn.execute(
        sql.SQL(
            "SELECT ts, metric, value, quality FROM readings WHERE {} "
            "AND device_id = %s AND (%s::text IS NULL OR metric = %s) AND ts >= %s AND ts < %s {} "
            "ORDER BY ts {}, metric {} LIMIT %s"
        ).format(in_scope, page, direction, direction),
        [device_id, *scope_params, device_id, metric, metric, start, end, *(after or ()), limit],
    ).fetchall()
    return [StoredReading(ts=r[0], metric=r[1], value=r[2], quality=r[3]) for r in rows]


# (start, metric, count, mean, minimum, maximum): tuples, not objects, for answers of thousands of buckets.
BucketRow = tuple[datetime, str, int, float, float, float]
BUCKET_FIELDS = ("start", "metric", "count", "mean", "minimum", "maximum")


def bucket_rows(
    conn: Conn,
    *,
    scope: Scope,
    device_id: str,
    metric: str | None,
    start: datetime,
    end: datetime,
    bucket_s: int,
) -> list[BucketRow]:
    """Per-bucket aggregates of one device in [start, end), by bucket then metric; none when the device is outside
    `scope`.

    Through `reading_aggregates` (migration 0009), as the dashboards: whole hours and minutes come from the rollups
    when the bucket is whole hours or minutes, the rest from raw readings, with the numbers raw readings give."""
    in_scope, scope_params = _device_in_scope(scope)
    return (
        conn.cursor(binary=True)
        .execute(
            sql.SQL(
                "SELECT a.bucket, a.metric, a.readings, a.total / a.readings, a.minimum, a.maximum "
                "FROM reading_aggregates(ARRAY[%s], CASE WHEN %s::text IS NULL THEN NULL ELSE ARRAY[%s] END, "
                "%s, %s, make_interval(secs => %s)) a WHERE {} ORDER BY a.bucket, a.metric"
            ).format(in_scope),
            [device_id, metric, metric, start, end, bucket_s, device_id, *scope_params],
        )
        .fetchall()
    )


@dataclass(frozen=True, slots=True)
class LatestValue:
    metric: str
    ts: datetime
    value: float
    quality: int
    received_at: datetime


def query_latest(conn: Conn, *, scope: Scope, device_id: str) -> list[LatestValue]:
    """The newest reading per metric of one device; none when the device is outside `scope`."""
    in_scope, scope_params = _device_in_scope(scope)
    rows = conn.execute(
        sql.SQL(
            "SELECT metric, ts, value, quality, received_at FROM device_latest WHERE {} AND device_id = %s "
            "ORDER BY metric"
        ).format(in_scope),
        [device_id, *scope_params, device_id],
    ).fetchall()
    return [LatestValue(metric=r[0], ts=r[1], value=r[2], quality=r[3], received_at=r[4]) for r in rows]


@dataclass(frozen=True, slots=True)
class StoredAnomaly:
    ts: datetime
    metric: str
    value: float
    score: float
    detector: str
    details: dict[str, object]


def query_anomalies(
    conn: Conn,
    *,
    scope: Scope,
    device_id: str,
    metric: str | None,
    start: datetime,
    end: datetime,
    limit: int,
) -> list[StoredAnomaly]:
    """Anomalous readings of one device in [start, end), oldest first; none when the device is outside `scope`."""
    in_scope, scope_params = _device_in_scope(scope)
    rows = conn.execute(
        sql.SQL(
            "SELECT ts, metric, value, score, detector, details FROM anomalies WHERE {} "
            "AND device_id = %s AND (%s::text IS NULL OR metric = %s) AND ts >= %s AND ts < %s "
            "ORDER BY ts, metric LIMIT %s"
        ).format(in_scope),
        [device_id, *scope_params, device_id, metric, metric, start, end, limit],
    ).fetchall()
    return [StoredAnomaly(ts=r[0], metric=r[1], value=r[2], score=r[3], detector=r[4], details=r[5]) for r in rows]
