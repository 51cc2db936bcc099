"""Retention on the Apache TimescaleDB build (issue 15): the center's lifecycle job drops old raw chunks on its
schedule (per-sector retention by DELETE of the sectors kept shorter), keeps the rollups, never drops readings the
rollups do not have yet, and prunes the append-only tables; `--dry-run` counts and changes nothing."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from core.errors import StorageError
from core.lifecycle import running_in_thread
from core.settings import Settings
from store.lifecycle import LifecycleConfig, LifecycleJob
from store.pool import open_pool
from store.readings import ReadingRow, write_readings
from store.retention import RetentionPolicy, apply_retention, retention_policy
from store.rollups import roll_up
from tests.integration.conftest import ScratchDatabase, wait_for

DAY = timedelta(days=1)
DEVICES = (("meter-1", "smart_meter", "active_power"), ("probe-1", "soil_probe", "soil_moisture"))


def _policy(**raw_days: float) -> RetentionPolicy:
    settings = Settings.model_validate(
        {
            "raw_retention_days": 5,
            "raw_retention_days_by_sector": raw_days,
            "rollup_minute_retention_days": 30,
            "rollup_hour_retention_days": 60,
        }
    )
    return retention_policy(settings)


def _write(database: ScratchDatabase, rows: list[ReadingRow]) -> None:
    with psycopg.connect(database.url) as conn:
        write_readings(conn, rows)
        conn.commit()


def _hourly(now: datetime, *, days: int) -> list[ReadingRow]:
    """One reading an hour of each device for `days` days up to `now`, at 17 s past the hour."""
    start = now.replace(minute=0, second=17, microsecond=0) - days * DAY
    return [
        (start + timedelta(hours=h), device_id, metric, float(h % 97) + 0.25 * i, 0)
        for h in range(days * 24)
        for i, (device_id, _, metric) in enumerate(DEVICES)
    ]


def _one(database: ScratchDatabase, query: str, *params: object) -> Any:
    return database.scalar(query, tuple(params))


def _all(database: ScratchDatabase, query: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database.url) as conn:
        return conn.execute(query.encode()).fetchall()


def _rollup_totals(database: ScratchDatabase, table: str) -> dict[tuple[Any, ...], tuple[Any, ...]]:
    with psycopg.connect(database.url) as conn:
        rows = conn.execute(
            f"SELECT device_id, metric, bucket, readings, total, minimum, maximum FROM {table}".encode()
        ).fetchall()
    return {tuple(r[:3]): tuple(r[3:]) for r in rows}


@pytest.fixture
def devices(register: Callable[..., object]) -> None:
    for device_id, type_code, _ in DEVICES:
        register(device_id, type_code, "can-tho")


def test_the_job_drops_old_raw_chunks_on_schedule_per_sector_and_keeps_the_rollups(
    database: ScratchDatabase, devices: None
) -> None:
    now = datetime.now(UTC)
    _write(database, _hourly(now, days=12))
    assert _rollup_totals(database, "readings_1h") == {}  # nothing rolled up yet
    policy = _policy(energy=2)
    assert policy.raw["energy"] == 2 * DAY and policy.raw["agriculture"] == 5 * DAY
    with open_pool(database.url, max_size=2) as pool:
        job = LifecycleJob(
            LifecycleConfig(policy=policy, rollup_every_s=0.2, retention_every_s=0.5, first_retention_delay_s=0.3),
            pool=pool,
        )
        with running_in_thread(job.run, name="lifecycle-test"):
            wait_for(
                lambda: (
                    _one(
                        database,
                        "SELECT count(*) FROM show_chunks('readings', older_than => now() - '5 days'::interval)",
                    )
                    == 0
                    and _one(
                        database,
                        "SELECT count(*) FROM readings WHERE device_id = 'meter-1' AND ts < now() - '2 days'::interval",
                    )
                    == 0
                ),
                timeout_s=60,
                what="retention on schedule",
            )
    assert job.last_rollup is not None and job.last_retention is not None
    # Whole days went (chunks of a day): agriculture keeps everything newer than 5 days, nothing older than 6.
    assert _one(database, "SELECT min(ts) FROM readings WHERE device_id = 'probe-1'") >= now - 6 * DAY
    kept = [r for r in _hourly(now, days=12) if r[1] == "probe-1" and r[0] >= now - 5 * DAY]
    assert _one(
        database, "SELECT count(*) FROM readings WHERE device_id = 'probe-1' AND ts >= %s", now - 5 * DAY
    ) == len(kept)
    # Energy, kept 2 days, lost its rows between 2 and 6 days by DELETE; newer ones stay.
    meter_kept = [r for r in _hourly(now, days=12) if r[1] == "meter-1" and r[0] >= now - 2 * DAY]
    assert _one(database, "SELECT count(*) FROM readings WHERE device_id = 'meter-1'") == len(meter_kept)
    # Rollups hold all twelve days of both devices, with the values written.
    hourly = _rollup_totals(database, "readings_1h")
    assert len(hourly) == 2 * 12 * 24
    for ts, device_id, metric, value, _ in _hourly(now, days=12):
        count, total, low, high = hourly[(device_id, metric, ts.replace(second=0))]
        assert (count, low, high) == (1, value, value) and math.isclose(total, value)
    assert _all(database, "SELECT scope FROM retention_horizons ORDER BY 1") == [
        ("raw",),
        ("raw/energy",),
        ("rollup_1m",),
    ]


def test_readings_not_rolled_up_yet_are_never_dropped_and_late_ones_are_added_to_kept_rollups(
    database: ScratchDatabase, devices: None
) -> None:
    now = datetime.now(UTC)
    policy = _policy()
    _write(database, _hourly(now, days=10))
    with psycopg.connect(database.url, autocommit=True) as conn:
        report = apply_retention(conn, policy)  # the rollup job has not run: nothing may go
        step = next(s for s in report.steps if s.table == "readings")
        assert step.removed == 0 and "not rolled up" in step.note
        assert _one(database, "SELECT count(*) FROM readings") == 2 * 10 * 24
        roll_up(conn)
        report = apply_retention(conn, policy)
        assert next(s for s in report.steps if s.table == "readings").removed >= 4
        old_minute = (now - 8 * DAY).replace(minute=0, second=0, microsecond=0)
        assert _one(database, "SELECT count(*) FROM readings WHERE ts < %s", old_minute + DAY) == 0
        before = _rollup_totals(database, "readings_1m")[("probe-1", "soil_moisture", old_minute)]
        # A device's buffer delivers a reading of a minute whose raw readings are gone: added, not recomputed.
        _write(database, [(old_minute + timedelta(seconds=40), "probe-1", "soil_moisture", -3.5, 0)])
        roll_up(conn)
    count, total, low, high = _rollup_totals(database, "readings_1m")[("probe-1", "soil_moisture", old_minute)]
    assert (count, low, high) == (before[0] + 1, -3.5, before[3])
    assert math.isclose(total, before[1] - 3.5)
    hour = _rollup_totals(database, "readings_1h")[("probe-1", "soil_moisture", old_minute)]
    assert (hour[0], hour[2]) == (before[0] + 1, -3.5)


def test_append_only_tables_are_pruned_and_a_dry_run_only_counts(database: ScratchDatabase) -> None:
    with psycopg.connect(database.url) as conn:
        for days_ago in (400, 10):
            at = datetime.now(UTC) - days_ago * DAY
            conn.execute(
                "INSERT INTO alarm_events (at, alarm_id, device_id, province, sector, status, severity, kind, message) "
                "VALUES (%s, 1, 'd', 'can-tho', 'energy', 'active', 'major', 'k', 'm')",
                (at,),
            )
            conn.execute(
                "INSERT INTO audit_log (at, actor, action, target) VALUES (%s, 'admin', 'user.create', 'u')",
                (at - 3300 * DAY,),
            )
            for delivered in (True, False):
                conn.execute(
                    "INSERT INTO federation_outbox (province, period_start, idempotency_key, payload, created_at, "
                    "delivered_at) VALUES ('can-tho', %s, %s, '{}', %s, %s)",
                    (at + timedelta(minutes=delivered), f"k-{days_ago}-{delivered}", at, at if delivered else None),
                )
            conn.execute(
                "INSERT INTO quarantine (received_at, topic, reason, payload, payload_size) "
                "VALUES (%s, 't', 'bad_json', '\\x00', 1)",
                (at,),
            )
            conn.execute(
                "INSERT INTO login_attempts (at, username, address, ok) VALUES (%s, 'u', '10.0.0.1', false)", (at,)
            )
        conn.commit()
    policy = _policy()
    counts = {
        t: _one(database, f"SELECT count(*) FROM {t}")
        for t in ("alarm_events", "audit_log", "federation_outbox", "quarantine", "login_attempts")
    }
    with psycopg.connect(database.url, autocommit=True) as conn:
        dry = apply_retention(conn, policy, dry_run=True)
        removed = {s.table: s.removed for s in dry.steps}
        assert removed["alarm_events"] == 1 and removed["audit_log"] == 1 and removed["federation_outbox"] == 1
        assert removed["quarantine"] == 1 and removed["login_attempts"] == 2  # 14 days; 15 minutes
        assert counts == {
            t: _one(database, f"SELECT count(*) FROM {t}")
            for t in ("alarm_events", "audit_log", "federation_outbox", "quarantine", "login_attempts")
        }
        apply_retention(conn, policy)
    assert _one(database, "SELECT count(*) FROM alarm_events") == 1
    assert _one(database, "SELECT count(*) FROM audit_log") == 1  # the 3310-day-old entry, within ten years
    # Undelivered snapshots stay however old; delivered ones go after 30 days.
    left = _all(database, "SELECT idempotency_key FROM federation_outbox ORDER BY 1")
    assert left == [("k-10-False",), ("k-10-True",), ("k-400-False",)]
    assert _one(database, "SELECT count(*) FROM quarantine") == 1
    assert _one(database, "SELECT count(*) FROM login_attempts") == 0


def test_rollups_kept_shorter_than_raw_readings_are_refused_with_a_clear_error() -> None:
    with pytest.raises(StorageError, match="rollups must be kept longer than raw readings"):
        retention_policy(Settings(raw_retention_days=800, rollup_minute_retention_days=731))


def _ioc(database: ScratchDatabase, *argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ioc", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "IOC_DATABASE_URL": database.url, **(env or {})},
    )


def test_ioc_db_rollup_and_retention_dry_run_then_real_run(database: ScratchDatabase, devices: None) -> None:
    now = datetime.now(UTC)
    _write(database, _hourly(now, days=100))
    done = _ioc(database, "db", "rollup")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("rollups up to date: 4800 minutes and 4800 hours")
    dry = _ioc(database, "db", "retention", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    line = next(x for x in dry.stdout.splitlines() if x.startswith("readings "))
    assert "would remove" in line and int(line.split()[3]) >= 9  # 90 days kept of 100
    assert _one(database, "SELECT count(*) FROM readings") == 4800
    done = _ioc(database, "db", "retention")
    assert done.returncode == 0, done.stderr
    assert _one(database, "SELECT min(ts) FROM readings") >= now - 91 * DAY
    assert _one(database, "SELECT sum(readings) FROM readings_1h") == 4800
    refused = _ioc(database, "db", "retention", env={"IOC_RAW_RETENTION_DAYS": "1000"})
    assert refused.returncode == 2 and "rollups must be kept longer than raw readings" in refused.stderr
    assert "Traceback" not in refused.stderr
