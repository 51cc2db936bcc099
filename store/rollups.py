"""One-minute and one-hour rollups of readings: the center's own incremental job for the Apache TimescaleDB build,
and the policies of the continuous aggregates that replace it on the Timescale-licensed build.

The job reads what ingest committed since its watermark, by ingest transaction id (`readings.ingest_xid`, the
analytics job's cursor, see migration 0003): every reading, late or backfilled, is seen once, in the run whose xid
range holds it, and nothing on the ingest path changes. Each touched minute is RECOMPUTED from its raw readings and
each touched hour from its minutes (upserts, never increments), in the transaction that moves the watermark: a
crashed or repeated run recomputes the same buckets to the same values. The one exception is a bucket whose raw
rows retention may already have deleted (older than `retention_horizons`): recomputing it from what is left would
lose what was rolled up, so the new readings are added to it instead, which is exact because each is seen once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal

from psycopg import sql

from store.analytics import read_watermark, save_watermark, snapshot_xmin
from store.pool import Conn

_LOGGER = logging.getLogger(__name__)

ROLLUP_JOB: Final = "rollup"
# Serialises the job in the center with `ioc db rollup` / `ioc db retention` run by hand.
LIFECYCLE_LOCK_KEY: Final = 0x10C_15
# Transaction ids per step: a first run over a long history goes in bounded transactions, not one.
MAX_XIDS_PER_STEP: Final = 20_000
# Buckets ending this long before the run are taken as complete by readers (reading_aggregates): a reading still
# in flight when the run took its snapshot is younger than this unless it is late, and late ones wait one run.
READY_LAG: Final = timedelta(minutes=1)

License = Literal["apache", "timescale"]

_DIRTY_DDL: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS rollup_dirty (device_id text, metric text, bucket timestamptz, readings bigint, "
    "total float8, minimum float8, maximum float8, flagged bigint, complete boolean) ON COMMIT DELETE ROWS"
)
_DIRTY_HOURS_DDL: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS rollup_dirty_hours (device_id text, metric text, bucket timestamptz, "
    "readings bigint, total float8, minimum float8, maximum float8, flagged bigint, complete boolean) "
    "ON COMMIT DELETE ROWS"
)

# The new readings of the xid range per (device, metric, minute), with whether the minute's raw readings are all
# still there (its start at or after every horizon that applies to the device).
_COLLECT_DIRTY: Final = """
INSERT INTO rollup_dirty
SELECT f.device_id, f.metric, f.bucket, f.readings, f.total, f.minimum, f.maximum, f.flagged,
       f.bucket >= greatest(coalesce(h_all.deleted_before, '-infinity'), coalesce(h_sector.deleted_before, '-infinity'))
FROM (
    SELECT device_id, metric, time_bucket(INTERVAL '1 minute', ts) AS bucket, count(*) AS readings,
           sum(value) AS total, min(value) AS minimum, max(value) AS maximum,
           count(*) FILTER (WHERE quality <> 0) AS flagged
    FROM readings WHERE ingest_xid >= %(lo)s AND ingest_xid < %(hi)s
    GROUP BY 1, 2, 3
) f
LEFT JOIN devices d ON d.device_id = f.device_id
LEFT JOIN retention_horizons h_all ON h_all.scope = 'raw'
LEFT JOIN retention_horizons h_sector ON h_sector.scope = 'raw/' || d.sector
"""

# ORDER BY in every upsert: one lock order for every writer of a rollup.
_RECOMPUTE_MINUTES: Final = """
INSERT INTO readings_1m AS t (bucket, device_id, metric, readings, total, minimum, maximum, flagged)
SELECT k.bucket, k.device_id, k.metric, count(*), sum(r.value), min(r.value), max(r.value),
       count(*) FILTER (WHERE r.quality <> 0)
FROM rollup_dirty k
-- The equality on the bucket allows a hash join (a first run over a long history), the range an index probe per
-- bucket (a few late readings): the planner picks by the dirty table's statistics.
JOIN readings r ON r.device_id = k.device_id AND r.metric = k.metric
               AND time_bucket(INTERVAL '1 minute', r.ts) = k.bucket
               AND r.ts >= k.bucket AND r.ts < k.bucket + INTERVAL '1 minute'
WHERE k.complete AND r.ts >= %(lo)s AND r.ts < %(hi)s
GROUP BY k.device_id, k.metric, k.bucket
ORDER BY k.device_id, k.metric, k.bucket
ON CONFLICT (device_id, metric, bucket) DO UPDATE SET readings = excluded.readings, total = excluded.total,
    minimum = excluded.minimum, maximum = excluded.maximum, flagged = excluded.flagged
"""

_ADD_TO_MINUTES: Final = """
INSERT INTO readings_1m AS t (bucket, device_id, metric, readings, total, minimum, maximum, flagged)
SELECT bucket, device_id, metric, readings, total, minimum, maximum, flagged
FROM rollup_dirty WHERE NOT complete
ORDER BY device_id, metric, bucket
ON CONFLICT (device_id, metric, bucket) DO UPDATE SET readings = t.readings + excluded.readings,
    total = t.total + excluded.total, minimum = least(t.minimum, excluded.minimum),
    maximum = greatest(t.maximum, excluded.maximum), flagged = t.flagged + excluded.flagged
"""

# Touched hours, with the new readings' own aggregates (for hours whose minutes retention may have deleted).
_COLLECT_DIRTY_HOURS: Final = """
INSERT INTO rollup_dirty_hours
SELECT k.device_id, k.metric, time_bucket(INTERVAL '1 hour', k.bucket) AS hour, sum(k.readings), sum(k.total),
       min(k.minimum), max(k.maximum), sum(k.flagged),
       time_bucket(INTERVAL '1 hour', k.bucket) >= coalesce(h.deleted_before, '-infinity')
FROM rollup_dirty k
LEFT JOIN retention_horizons h ON h.scope = 'rollup_1m'
GROUP BY k.device_id, k.metric, hour, h.deleted_before
"""

_RECOMPUTE_HOURS: Final = """
INSERT INTO readings_1h AS t (bucket, device_id, metric, readings, total, minimum, maximum, flagged)
SELECT k.bucket, k.device_id, k.metric, sum(m.readings), sum(m.total), min(m.minimum), max(m.maximum),
       sum(m.flagged)
FROM rollup_dirty_hours k
JOIN readings_1m m ON m.device_id = k.device_id AND m.metric = k.metric
                  AND time_bucket(INTERVAL '1 hour', m.bucket) = k.bucket
                  AND m.bucket >= k.bucket AND m.bucket < k.bucket + INTERVAL '1 hour'
WHERE k.complete AND m.bucket >= %(lo)s AND m.bucket < %(hi)s
GROUP BY k.device_id, k.metric, k.bucket
ORDER BY k.device_id, k.metric, k.bucket
ON CONFLICT (device_id, metric, bucket) DO UPDATE SET readings = excluded.readings, total = excluded.total,
    minimum = excluded.minimum, maximum = excluded.maximum, flagged = excluded.flagged
"""

_ADD_TO_HOURS: Final = _ADD_TO_MINUTES.replace("readings_1m", "readings_1h").replace(
    "rollup_dirty", "rollup_dirty_hours"
)


@dataclass(frozen=True, slots=True)
class RollupResult:
    """What one `roll_up` call did: transactions (steps), minutes and hours written, and where the watermark is."""

    steps: int
    minutes: int
    hours: int
    watermark_xid: int
    caught_up: bool


def timescaledb_license(conn: Conn) -> License:
    """'timescale' when the Timescale-licensed features (continuous aggregates, policies) are there; 'apache'
    otherwise (the Apache-2 build, or a licensed build switched to apache)."""
    row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    return "timescale" if row is not None and row[0] == "timescale" else "apache"


def roll_up(conn: Conn, *, max_steps: int = 1000) -> RollupResult:
    """Bring both rollups up to every reading committed so far (at most `max_steps` transactions); the caller's
    connection must not be inside a transaction. On the licensed build the continuous aggregates do this: only
    the readers' watermark is set."""
    if timescaledb_license(conn) == "timescale":
        with conn.transaction():
            save_watermark(conn, job=ROLLUP_JOB, ingest_xid=0, reading_ts=float("inf"))
        return RollupResult(steps=0, minutes=0, hours=0, watermark_xid=0, caught_up=True)
    steps = minutes = hours = 0
    watermark = 0
    caught_up = False
    while steps < max_steps and not caught_up:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (LIFECYCLE_LOCK_KEY,))
            low = read_watermark(conn, ROLLUP_JOB) or 0
            xmin = snapshot_xmin(conn)
            high = min(xmin, low + MAX_XIDS_PER_STEP)
            caught_up = high >= xmin
            if high > low:
                step_minutes, step_hours = _roll_up_range(conn, low=low, high=high)
                minutes += step_minutes
                hours += step_hours
            ready = _ready_time(conn) if caught_up else _saved_ready_time(conn)
            save_watermark(conn, job=ROLLUP_JOB, ingest_xid=max(high, low), reading_ts=ready)
            watermark = max(high, low)
        steps += 1
    _LOGGER.debug("rollup: %d steps, %d minutes, %d hours, watermark %d", steps, minutes, hours, watermark)
    return RollupResult(steps=steps, minutes=minutes, hours=hours, watermark_xid=watermark, caught_up=caught_up)


def _roll_up_range(conn: Conn, *, low: int, high: int) -> tuple[int, int]:
    """Recompute (or add to) the minutes and hours the readings of ingest transactions [low, high) fall in."""
    conn.execute(_DIRTY_DDL)
    conn.execute(_DIRTY_HOURS_DDL)
    conn.execute(_COLLECT_DIRTY, {"lo": low, "hi": high})
    span = _span(conn, "rollup_dirty", width=timedelta(minutes=1))
    if span is None:
        return 0, 0
    conn.execute("ANALYZE rollup_dirty")
    minutes = conn.execute(_RECOMPUTE_MINUTES, {"lo": span[0], "hi": span[1]}).rowcount
    minutes += conn.execute(_ADD_TO_MINUTES).rowcount
    conn.execute(_COLLECT_DIRTY_HOURS)
    hour_span = _span(conn, "rollup_dirty_hours", width=timedelta(hours=1))
    assert hour_span is not None  # every dirty minute lies in a dirty hour
    conn.execute("ANALYZE rollup_dirty_hours")
    hours = conn.execute(_RECOMPUTE_HOURS, {"lo": hour_span[0], "hi": hour_span[1]}).rowcount
    hours += conn.execute(_ADD_TO_HOURS).rowcount
    return max(0, minutes), max(0, hours)


def _span(conn: Conn, table: str, *, width: timedelta) -> tuple[datetime, datetime] | None:
    """[first bucket, end of the last) of a dirty table: constants that let the planner skip other chunks."""
    row = conn.execute(sql.SQL("SELECT min(bucket), max(bucket) FROM {}").format(sql.Identifier(table))).fetchone()
    if row is None or row[0] is None:
        return None
    return row[0], row[1] + width


def _ready_time(conn: Conn) -> float:
    """Epoch seconds before which every bucket is complete in the rollups, as of this run's snapshot."""
    row = conn.execute(
        "SELECT extract(epoch FROM time_bucket(INTERVAL '1 minute', now() - %s))::float8", (READY_LAG,)
    ).fetchone()
    assert row is not None
    return float(row[0])


def _saved_ready_time(conn: Conn) -> float | None:
    row = conn.execute(
        "SELECT extract(epoch FROM reading_ts)::float8 FROM job_watermarks WHERE job = %s", (ROLLUP_JOB,)
    ).fetchone()
    return None if row is None or row[0] is None else float(row[0])
