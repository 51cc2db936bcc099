"""`ioc bench storage`: bytes per device-year of raw readings and of the one-minute and one-hour rollups.

In a fresh runtime folder it starts a private PostgreSQL with TimescaleDB (the Apache build here), writes N devices
x M metrics x D days of readings at one per interval straight into the hypertable (one day per transaction, as ingest
writes many transactions), runs the rollup job (store.rollups) and times it, vacuums, and measures each hypertable
with `hypertable_detailed_size` (heap, indexes, TOAST over all chunks). Bytes per device-year are the measured bytes
/ (devices x days) x 365.25: storage grows linearly with time, chunk by chunk, so a week measures a year.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from devices.schema import migrate_database
from embedded.runtime import EmbeddedPostgres
from store.pool import Conn, connect
from store.rollups import roll_up

DAYS_PER_YEAR: Final = 365.25
TABLES: Final = ("readings", "readings_1m", "readings_1h")


@dataclass(frozen=True, slots=True)
class StorageBenchConfig:
    devices: int = 200
    metrics: int = 3
    days: float = 7.0
    interval_s: int = 60


def _seed(conn: Conn, config: StorageBenchConfig, now: datetime, progress: Callable[[str], None]) -> int:
    device_ids = [f"bench-{i:05d}" for i in range(config.devices)]
    metrics = [f"metric_{m}" for m in range(config.metrics)]
    start = now - timedelta(days=config.days)
    per_day = int(86400 / config.interval_s)
    written = 0
    for day in range(int(config.days + 0.999)):
        day_start = start + timedelta(days=day)
        steps = min(per_day, int((now - day_start).total_seconds() / config.interval_s))
        with conn.transaction():
            # A slow random walk per series: values like a sensor's, not constants that compress to nothing.
            cur = conn.execute(
                "INSERT INTO readings (ts, device_id, metric, value, quality) "
                "SELECT %s + make_interval(secs => s * %s), d, m, "
                "round((100 + 20 * sin(s / 90.0 + hashtext(d || m)) + random())::numeric, 3)::float8, 0 "
                "FROM unnest(%s::text[]) AS d, unnest(%s::text[]) AS m, generate_series(0, %s - 1) AS s",
                (day_start, config.interval_s, device_ids, metrics, steps),
            )
        written += cur.rowcount
        progress(f"seeded day {day + 1}: {written:,} readings")
    return written


def _sizes(conn: Conn, table: str) -> dict[str, int]:
    row = conn.execute(
        "SELECT table_bytes, index_bytes, toast_bytes, total_bytes FROM hypertable_detailed_size(%s::regclass)",
        (table,),
    ).fetchone()
    rows = conn.execute(f"SELECT count(*) FROM {table}".encode()).fetchone()  # one of TABLES, never user input
    assert row is not None and rows is not None
    heap, index, toast, total = (int(v or 0) for v in row)
    return {"rows": int(rows[0]), "heap_bytes": heap, "index_bytes": index, "toast_bytes": toast, "total_bytes": total}


def run_storage_bench(
    config: StorageBenchConfig, *, runtime_dir: Path, progress: Callable[[str], None] = print
) -> dict[str, Any]:
    if config.devices < 1 or config.metrics < 1 or config.days <= 0 or config.interval_s < 1:
        raise ValueError("devices, metrics and interval must be at least 1 and days positive")
    root = runtime_dir / f"bench-storage-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    try:
        with EmbeddedPostgres(root / "pg") as pg:
            migrate_database(pg.url)
            with connect(pg.url, autocommit=True) as conn:
                license_row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
                version_row = conn.execute(
                    "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
                ).fetchone()
                seed_started = time.perf_counter()
                readings = _seed(conn, config, now, progress)
                seed_s = time.perf_counter() - seed_started
                progress("rolling up")
                rollup_started = time.perf_counter()
                rolled = roll_up(conn)
                rollup_s = time.perf_counter() - rollup_started
                for table in TABLES:
                    conn.execute(f"VACUUM ANALYZE {table}".encode())  # one of TABLES
                sizes = {table: _sizes(conn, table) for table in TABLES}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    device_years = config.devices * config.days / DAYS_PER_YEAR
    per_device_year = {t: round(s["total_bytes"] / device_years) for t, s in sizes.items()}
    return {
        "config": asdict(config),
        "timescaledb": {
            "version": version_row[0] if version_row else None,
            "license": license_row[0] if license_row else None,
        },
        "readings": readings,
        "seed_s": round(seed_s, 1),
        "rollup": {
            "seconds": round(rollup_s, 2),
            "readings_per_s": round(readings / rollup_s) if rollup_s > 0 else None,
            "minutes_written": rolled.minutes,
            "hours_written": rolled.hours,
            "steps": rolled.steps,
        },
        "sizes": sizes,
        "bytes_per_reading": {t: round(s["total_bytes"] / readings, 1) for t, s in sizes.items()},
        "bytes_per_device_year": per_device_year,
        "mib_per_device_year": {t: round(b / 2**20, 2) for t, b in per_device_year.items()},
        "note": (
            f"{config.metrics} metrics per device, one reading per {config.interval_s} s; raw readings kept "
            "IOC_RAW_RETENTION_DAYS (default 90) cost bytes_per_device_year['readings'] x days / 365.25 per device; "
            "uncompressed (compression needs the Timescale license)"
        ),
    }
