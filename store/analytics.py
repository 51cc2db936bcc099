"""The analytics job's tables: its watermark over `readings.ingest_xid`, the readings it reads by that watermark,
the devices it scores, saved series state (`analytics_state`) and the anomalies it writes."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from store.pool import Conn

# A reading as the job reads it: (device_id, metric, reading time, value, quality, received time), both times in
# epoch seconds. Tuples, not objects, on the hot path.
FetchedReading = tuple[str, str, float, float, int, float]

# date_part, not extract: extract returns numeric (PostgreSQL 14+), and numeric arithmetic and the cast back were
# about a fifth of the server's time on this query (113 → 89 ms for 50,000 rows). Both give the correctly rounded
# float8 of the same microsecond count, so the values are identical for any time within 285 years of 1970.
_FETCH_SQL: Final = (
    "SELECT device_id, metric, date_part('epoch', ts), value, quality, date_part('epoch', received_at) "
    "FROM readings WHERE ingest_xid >= %s AND ingest_xid < %s ORDER BY device_id, metric, ts"
)
_STATE_STAGE_DDL: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS analytics_state_stage "
    "(device_id text, metric text, state bytea) ON COMMIT DELETE ROWS"
)


@dataclass(frozen=True, slots=True)
class AnomalyRow:
    """One reading while its series was anomalous (`is_anomaly`), and which detector saw it; times in epoch
    seconds."""

    ts: float
    device_id: str
    metric: str
    value: float
    score: float
    received_at: float
    detector: str = "univariate"


@dataclass(frozen=True, slots=True)
class RegisteredDevice:
    device_id: str
    type_code: str
    province: str
    sector: str
    # The device's own report interval (None: its type's) and its site (`location->>'site'`, if any).
    report_interval_s: float | None = None
    site: str | None = None


def read_watermark(conn: Conn, job: str) -> int | None:
    """The ingest transaction id `job` has read up to, None when it has never saved one."""
    row = conn.execute("SELECT ingest_xid FROM job_watermarks WHERE job = %s", (job,)).fetchone()
    return None if row is None else int(row[0])


def save_watermark(conn: Conn, *, job: str, ingest_xid: int, reading_ts: float | None) -> None:
    """Record `job`'s watermark and the newest reading time (epoch seconds) it has read, in the caller's
    transaction."""
    conn.execute(
        "INSERT INTO job_watermarks (job, ingest_xid, reading_ts, updated_at) "
        "VALUES (%s, %s, to_timestamp(%s), now()) ON CONFLICT (job) DO UPDATE SET "
        "ingest_xid = excluded.ingest_xid, reading_ts = excluded.reading_ts, updated_at = now()",
        (job, ingest_xid, reading_ts),
    )


def snapshot_xmin(conn: Conn, *, ignoring: int | None = None) -> int:
    """Every transaction with a smaller id has committed or aborted: readings below it can no longer appear.

    `ignoring`: a transaction known to write no readings (the job's own state save, which runs beside its
    ticks); while it is open, the bound is the oldest other open transaction, else the save would hold the
    watermark back for as long as it runs."""
    if ignoring is None:
        row = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").fetchone()
    else:
        row = conn.execute(
            "SELECT coalesce((SELECT min(x::text::bigint) FROM pg_snapshot_xip(s) AS x WHERE x::text::bigint <> %s), "
            "pg_snapshot_xmax(s)::text::bigint) FROM pg_current_snapshot() AS s",
            (ignoring,),
        ).fetchone()
    assert row is not None
    return int(row[0])


def current_xid(conn: Conn) -> int:
    """The id of the caller's transaction (assigned now if it has none yet)."""
    row = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
    assert row is not None
    return int(row[0])


def fetch_readings(conn: Conn, *, low_xid: int, high_xid: int) -> list[FetchedReading]:
    """Readings written by transactions with ids in [low_xid, high_xid), by (device, metric, reading time)."""
    # Binary results: floats and ints arrive without text parsing (about 30 % faster on large batches).
    with conn.cursor(binary=True) as cur:
        return cur.execute(_FETCH_SQL, (low_xid, high_xid)).fetchall()


def fetch_active_devices(conn: Conn) -> list[tuple[RegisteredDevice, float | None]]:
    """Active devices, each with the reading time (epoch seconds) of its newest reading, None if it has none."""
    rows = conn.execute(
        "SELECT d.device_id, d.type_code, d.province, d.sector, d.report_interval_s, d.location->>'site', "
        "extract(epoch FROM max(l.ts))::float8 "
        "FROM devices d LEFT JOIN device_latest l USING (device_id) WHERE d.status = 'active' "
        "GROUP BY d.device_id"
    ).fetchall()
    return [(RegisteredDevice(*row[:6]), None if row[6] is None else float(row[6])) for row in rows]


def fetch_devices(conn: Conn, device_ids: Collection[str]) -> list[RegisteredDevice]:
    """The registered devices among `device_ids`, whatever their status."""
    rows = conn.execute(
        "SELECT device_id, type_code, province, sector, report_interval_s, location->>'site' FROM devices "
        "WHERE device_id = ANY(%s)",
        (list(device_ids),),
    ).fetchall()
    return [RegisteredDevice(*row) for row in rows]


def fetch_series_states(conn: Conn, *, job: str, keys: Iterable[tuple[str, str]]) -> list[tuple[str, str, bytes]]:
    """(device_id, metric, state) saved by `job` for those of the (device_id, metric) `keys` it has saved."""
    device_ids: list[str] = []
    metrics: list[str] = []
    for device_id, metric in sorted(keys):
        device_ids.append(device_id)
        metrics.append(metric)
    rows = conn.execute(
        "SELECT s.device_id, s.metric, s.state FROM analytics_state s "
        "JOIN unnest(%s::text[], %s::text[]) AS k(d, m) ON s.device_id = k.d AND s.metric = k.m "
        "WHERE s.job = %s",
        (device_ids, metrics, job),
    ).fetchall()
    return [(device_id, metric, bytes(state)) for device_id, metric, state in rows]


def save_series_states(conn: Conn, *, job: str, states: Iterable[tuple[str, str, bytes]]) -> None:
    """Upsert `job`'s (device_id, metric, state) rows in the caller's transaction: one binary COPY into a staging
    table, one INSERT … ON CONFLICT. `states` is consumed while it is copied."""
    conn.execute(_STATE_STAGE_DDL)
    with (
        conn.cursor() as cur,
        cur.copy("COPY analytics_state_stage (device_id, metric, state) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(["text", "text", "bytea"])
        for row in states:
            copy.write_row(row)
    conn.execute(
        "INSERT INTO analytics_state (job, device_id, metric, state, updated_at) "
        "SELECT %s, device_id, metric, state, now() FROM analytics_state_stage "
        "ON CONFLICT (job, device_id, metric) DO UPDATE SET state = excluded.state, "
        "updated_at = excluded.updated_at",
        (job,),
    )


def insert_anomalies(conn: Conn, rows: Sequence[AnomalyRow]) -> int:
    """Store `rows`, absorbing any already stored; returns how many were new."""
    if not rows:
        return 0
    cur = conn.execute(
        "INSERT INTO anomalies (ts, device_id, metric, value, score, detector, received_at) "
        "SELECT to_timestamp(t), d, m, v, s, k, to_timestamp(r) FROM unnest("
        "%s::float8[], %s::text[], %s::text[], %s::float8[], %s::float8[], %s::text[], %s::float8[]) "
        "AS u(t, d, m, v, s, k, r) ON CONFLICT DO NOTHING",
        (
            [r.ts for r in rows],
            [r.device_id for r in rows],
            [r.metric for r in rows],
            [r.value for r in rows],
            [r.score for r in rows],
            [r.detector for r in rows],
            [r.received_at for r in rows],
        ),
    )
    return cur.rowcount
