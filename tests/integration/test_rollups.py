"""Rollups on the Apache TimescaleDB build (issue 15): the center's incremental job keeps one-minute and one-hour
rollups equal to aggregates recomputed from the same raw readings, including late and backfilled readings, across
restarts and repeated runs; and every bucketed read (API store function, dashboards' SQL function) gives the numbers
raw readings give while reading rollups for whole minutes and hours."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from dashboards.measures import ACTIVE_POWER
from dashboards.queries import PROVINCE_FILTER, per_device_series
from store.readings import ReadingRow, bucket_rows, write_readings
from store.rollups import ROLLUP_JOB, roll_up, timescaledb_license
from store.scope import EVERYTHING
from tests.grafana_sql import TimeRange, Variable, expand
from tests.integration.conftest import ScratchDatabase

_BUCKET_AGGREGATES = (
    "count(*)::bigint, sum(value), min(value), max(value), count(*) FILTER (WHERE quality <> 0)::bigint"
)


def _write(database: ScratchDatabase, rows: Iterable[ReadingRow]) -> int:
    """One ingest-like transaction (binary COPY, duplicates absorbed), committed."""
    with psycopg.connect(database.url) as conn:
        result = write_readings(conn, list(rows))
        conn.commit()
    return result.inserted


def _roll_up(database: ScratchDatabase) -> Any:
    with psycopg.connect(database.url, autocommit=True) as conn:
        return roll_up(conn)


def _series(
    device_id: str, metric: str, *, start: datetime, count: int, step_s: float, seed: int, flag_every: int = 0
) -> list[ReadingRow]:
    rng = random.Random(seed)
    return [
        (
            start + timedelta(seconds=i * step_s),
            device_id,
            metric,
            round(rng.uniform(-50, 250), 3),
            1 if flag_every and i % flag_every == 0 else 0,
        )
        for i in range(count)
    ]


def _rows(database: ScratchDatabase, query: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    with psycopg.connect(database.url) as conn:
        return {tuple(r[:3]): tuple(r[3:]) for r in conn.execute(query.encode()).fetchall()}


def _assert_same(
    actual: dict[tuple[Any, ...], tuple[Any, ...]], expected: dict[tuple[Any, ...], tuple[Any, ...]]
) -> None:
    assert actual.keys() == expected.keys()
    for key, (count, total, low, high, flagged) in expected.items():
        got = actual[key]
        assert (got[0], got[2], got[3], got[4]) == (count, low, high, flagged), key
        assert math.isclose(got[1], total, rel_tol=1e-12, abs_tol=1e-9), key


def _assert_rollups_equal_raw(database: ScratchDatabase) -> int:
    for table, width in (("readings_1m", "1 minute"), ("readings_1h", "1 hour")):
        expected = _rows(
            database,
            f"SELECT time_bucket('{width}', ts), device_id, metric, {_BUCKET_AGGREGATES} FROM readings GROUP BY 1, 2, 3",
        )
        actual = _rows(
            database, f"SELECT bucket, device_id, metric, readings, total, minimum, maximum, flagged FROM {table}"
        )
        _assert_same(actual, expected)
    return len(actual)


@pytest.fixture
def history(database: ScratchDatabase, register: Callable[..., object]) -> datetime:
    """Two devices with six hours of readings every 20 s (a quarter of one metric flagged), three days ago,
    starting off the minute; rolled up once. Returns the start."""
    register("meter-1", "smart_meter", "can-tho")
    register("probe-1", "soil_probe", "can-tho")
    start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(days=3, minutes=-17, seconds=-23)
    _write(database, _series("meter-1", "active_power", start=start, count=1080, step_s=20, seed=1, flag_every=4))
    _write(database, _series("meter-1", "voltage", start=start, count=1080, step_s=20, seed=2))
    _write(database, _series("probe-1", "soil_moisture", start=start, count=1080, step_s=20, seed=3))
    with psycopg.connect(database.url) as conn:
        assert timescaledb_license(conn) == "apache"
    result = _roll_up(database)
    assert result.caught_up and result.minutes == 3 * 361 and result.hours == 3 * 7
    return start


def test_rollups_equal_raw_aggregates_after_late_duplicate_and_backfilled_readings(
    database: ScratchDatabase, history: datetime
) -> None:
    assert _assert_rollups_equal_raw(database) == 3 * 7
    # Late: readings between those already rolled up, in minutes and hours that already have rollups.
    late = _series("meter-1", "active_power", start=history + timedelta(seconds=7), count=200, step_s=60, seed=4)
    # Redelivered: the same (device, metric, ts) again with another value: absorbed, never counted twice.
    redelivered = [(ts, d, m, v + 1000.0, q) for ts, d, m, v, q in late[:50]]
    # Backfilled: a device's store-and-forward buffer, two days before anything it had sent.
    backfill = _series("probe-1", "soil_moisture", start=history - timedelta(days=2), count=500, step_s=30, seed=5)
    assert _write(database, late) == 200
    assert _write(database, redelivered + backfill[:250]) == 250
    assert _write(database, backfill[250:]) == 250
    result = _roll_up(database)
    assert result.caught_up and result.minutes > 0
    assert _assert_rollups_equal_raw(database) == 3 * 7 + 5  # 250 minutes of backfill span 5 hours

    # Nothing new: a run changes nothing; a run from scratch (the watermark lost) recomputes the same values.
    assert _roll_up(database).minutes == 0
    with psycopg.connect(database.url) as conn:
        conn.execute("DELETE FROM job_watermarks WHERE job = %s", (ROLLUP_JOB,))
        conn.commit()
    again = _roll_up(database)
    assert again.minutes == database.scalar("SELECT count(*) FROM readings_1m")
    _assert_rollups_equal_raw(database)


def test_a_run_that_fails_leaves_the_rollups_and_watermark_as_they_were(
    database: ScratchDatabase, history: datetime
) -> None:
    before = database.scalar("SELECT ingest_xid FROM job_watermarks WHERE job = %s", (ROLLUP_JOB,))
    _write(database, _series("meter-1", "voltage", start=history + timedelta(seconds=3), count=30, step_s=60, seed=6))
    with psycopg.connect(database.url, autocommit=True) as conn:
        # The run dies in the middle (here: a statement timeout while it recomputes): its transaction rolls back.
        conn.execute("SET statement_timeout = 1")
        with pytest.raises(psycopg.errors.QueryCanceled):
            roll_up(conn)
    assert database.scalar("SELECT ingest_xid FROM job_watermarks WHERE job = %s", (ROLLUP_JOB,)) == before
    assert database.scalar("SELECT sum(readings) FROM readings_1m") == 3 * 1080
    _roll_up(database)  # the restarted job
    _assert_rollups_equal_raw(database)


@pytest.mark.parametrize(
    ("bucket_s", "offset_from", "offset_to"),
    [
        (30, timedelta(minutes=5, seconds=11), timedelta(hours=2, seconds=3)),  # not whole minutes: raw only
        (60, timedelta(seconds=41), timedelta(hours=5, minutes=1, seconds=13)),  # minutes, raw edges
        (300, timedelta(minutes=-30), timedelta(hours=7)),  # wider than the data
        (3600, timedelta(minutes=42, seconds=10), timedelta(hours=5, minutes=2, seconds=55)),  # hours, minutes, raw
        (3 * 3600, timedelta(days=-2, hours=-1), timedelta(hours=6)),  # with the backfill
        (86400, timedelta(days=-3), timedelta(days=1)),
    ],
)
def test_bucketed_reads_equal_time_bucket_over_raw_readings(
    database: ScratchDatabase, history: datetime, bucket_s: int, offset_from: timedelta, offset_to: timedelta
) -> None:
    backfill = _series("meter-1", "active_power", start=history - timedelta(days=2), count=300, step_s=45, seed=7)
    _write(database, backfill)
    _roll_up(database)
    start, end = history + offset_from, history + offset_to
    with psycopg.connect(database.url) as conn:
        for metric in ("active_power", None):
            buckets = bucket_rows(
                conn, scope=EVERYTHING, device_id="meter-1", metric=metric, start=start, end=end, bucket_s=bucket_s
            )
            expected = conn.execute(
                "SELECT time_bucket(make_interval(secs => %s), ts) AS b, metric, count(*), avg(value), min(value), "
                "max(value) FROM readings WHERE device_id = 'meter-1' AND (%s::text IS NULL OR metric = %s) "
                "AND ts >= %s AND ts < %s GROUP BY 1, 2 ORDER BY 1, 2",
                (bucket_s, metric, metric, start, end),
            ).fetchall()
            assert expected
            assert [(b[0], b[1], b[2], b[4], b[5]) for b in buckets] == [
                (r[0], r[1], r[2], r[4], r[5]) for r in expected
            ]
            assert all(math.isclose(b[3], r[3], rel_tol=1e-12) for b, r in zip(buckets, expected, strict=True))


def test_long_ranges_read_the_rollups_not_raw_readings(database: ScratchDatabase, history: datetime) -> None:
    """Raw readings removed behind the rollups' back: over a range of whole minutes, hourly buckets still count
    them (whole hours from readings_1h, the last part-hour from readings_1m); unaligned buckets read raw."""
    start, end = history - timedelta(minutes=17, seconds=23), history + timedelta(hours=6, seconds=-23)
    with psycopg.connect(database.url) as conn:
        hourly_before = bucket_rows(
            conn, scope=EVERYTHING, device_id="probe-1", metric=None, start=start, end=end, bucket_s=3600
        )
        conn.execute("DELETE FROM readings WHERE device_id = 'probe-1'")
        conn.commit()
        hourly_after = bucket_rows(
            conn, scope=EVERYTHING, device_id="probe-1", metric=None, start=start, end=end, bucket_s=3600
        )
        raw_only = bucket_rows(
            conn, scope=EVERYTHING, device_id="probe-1", metric=None, start=start, end=end, bucket_s=45
        )
    assert sum(b[2] for b in hourly_before) == 1079  # the last reading is after `end`
    assert hourly_after == hourly_before
    assert raw_only == []


@pytest.mark.parametrize("interval", ["20s", "5m", "1h"])
def test_a_dashboards_series_over_rollups_equals_the_same_series_over_raw_readings(
    database: ScratchDatabase, history: datetime, interval: str
) -> None:
    """The energy dashboard's per-device series as Grafana sends it (macros expanded) against the pre-rollup shape
    of the same panel (`$__timeGroupAlias` over raw readings)."""
    time_range = TimeRange(
        start=history - timedelta(minutes=3, seconds=5), end=history + timedelta(hours=5, seconds=31), interval=interval
    )
    variables = {"province": Variable(("can-tho",), quoted=True)}
    raw_shape = f"""
SELECT $__timeGroupAlias(r.ts, $__interval), r.device_id AS metric, avg(r.value) AS value
FROM readings r JOIN devices d ON d.device_id = r.device_id
WHERE r.ts >= $__timeFrom() AND r.ts < $__timeTo() AND r.metric = '{ACTIVE_POWER.metric}'
  AND d.type_code IN ({ACTIVE_POWER.types_sql}) AND {PROVINCE_FILTER}
GROUP BY 1, 2 ORDER BY 1, 2
"""
    with psycopg.connect(database.url) as conn:
        panel = conn.execute(
            expand(per_device_series(ACTIVE_POWER), time_range=time_range, variables=variables).encode()
        ).fetchall()
        raw = conn.execute(expand(raw_shape, time_range=time_range, variables=variables).encode()).fetchall()
    assert len(panel) == len(raw) >= 6
    for got, want in zip(panel, raw, strict=True):
        assert got[:2] == want[:2] and math.isclose(got[2], want[2], rel_tol=1e-12)
