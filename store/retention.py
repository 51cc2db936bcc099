"""Retention: raw readings per sector, rollups for years, and the append-only tables (anomalies, alarm events,
delivered federation snapshots, the audit log, quarantine, login attempts), applied by one scheduled job.

Raw readings share one hypertable across sectors and `drop_chunks` drops whole chunks (a day of every sector), so
chunks are dropped at the LONGEST sector retention and the rows of sectors kept shorter are DELETEd (only rows
the rollup job has already rolled up: their ingest xid is below its watermark). Before a chunk is dropped, the table
is locked against writers for a moment and the drop stops short of the oldest reading not yet rolled up, so raw
data is never dropped before its rollups exist. What was deleted is recorded in `retention_horizons`, which the
rollup job reads (store.rollups). On the Timescale-licensed build the same plan is applied (drop_chunks is in the
Apache build); compression and the continuous aggregates' policies are set by `apply_licensed_policies`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

import psycopg
from psycopg import sql

from core.errors import StorageError
from core.settings import Settings
from store.access import delete_old_login_attempts
from store.analytics import read_watermark
from store.pool import Conn
from store.quarantine import delete_expired
from store.rollups import LIFECYCLE_LOCK_KEY, ROLLUP_JOB, timescaledb_license

_LOGGER = logging.getLogger(__name__)

SECTORS: Final = ("agriculture", "energy", "transport", "health")
# How long the drop waits for in-flight ingest transactions before giving up until the next run.
DROP_LOCK_TIMEOUT: Final = "5s"
# Rollups must outlive raw readings by at least this: late readings older than the raw horizon are added to them.
ROLLUP_MARGIN: Final = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long each kind of data is kept."""

    raw: Mapping[str, timedelta]  # every sector of SECTORS
    rollup_1m: timedelta
    rollup_1h: timedelta
    anomalies: timedelta
    alarm_events: timedelta
    federation_delivered: timedelta
    audit: timedelta
    quarantine: timedelta
    login_attempts: timedelta

    def __post_init__(self) -> None:
        if set(self.raw) != set(SECTORS):
            raise StorageError(f"raw retention must name every sector {SECTORS}, not {sorted(self.raw)}")
        if self.rollup_1m < self.longest_raw + ROLLUP_MARGIN or self.rollup_1h < self.rollup_1m:
            raise StorageError(
                "rollups must be kept longer than raw readings (one-hour >= one-minute >= longest raw + 1 day): "
                f"raw {self.longest_raw.days} d, one-minute {self.rollup_1m.days} d, one-hour {self.rollup_1h.days} d"
            )

    @property
    def longest_raw(self) -> timedelta:
        return max(self.raw.values())


def retention_policy(settings: Settings) -> RetentionPolicy:
    """The policy the settings describe (StorageError when rollups would not outlive raw readings)."""
    days = timedelta(days=1)
    by_sector = {str(sector): kept for sector, kept in settings.raw_retention_days_by_sector.items()}
    return RetentionPolicy(
        raw={s: days * by_sector.get(s, settings.raw_retention_days) for s in SECTORS},
        rollup_1m=days * settings.rollup_minute_retention_days,
        rollup_1h=days * settings.rollup_hour_retention_days,
        anomalies=days * settings.anomaly_retention_days,
        alarm_events=days * settings.alarm_event_retention_days,
        federation_delivered=days * settings.federation_delivered_retention_days,
        audit=days * settings.audit_retention_days,
        quarantine=days * settings.quarantine_retention_days,
        login_attempts=timedelta(seconds=settings.login_failure_window_s),
    )


@dataclass(frozen=True, slots=True)
class RetentionStep:
    """One table's share of a run: what went (or would go), in rows or chunks, and before which time."""

    table: str
    cutoff: datetime
    removed: int
    unit: str  # 'rows' or 'chunks'
    note: str = ""


@dataclass(slots=True)
class RetentionReport:
    dry_run: bool
    steps: list[RetentionStep] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "dry_run": self.dry_run,
            "steps": [
                {"table": s.table, "cutoff": s.cutoff.isoformat(), "removed": s.removed, "unit": s.unit, "note": s.note}
                for s in self.steps
            ],
        }


def apply_retention(conn: Conn, policy: RetentionPolicy, *, dry_run: bool = False) -> RetentionReport:
    """Remove what the policy no longer keeps, one transaction per table (the caller's connection must not be in
    a transaction); with `dry_run`, count what would go and change nothing."""
    report = RetentionReport(dry_run=dry_run)
    now = _now(conn)
    licensed = timescaledb_license(conn) == "timescale"
    report.steps.append(_drop_raw_chunks(conn, cutoff=now - policy.longest_raw, dry_run=dry_run, licensed=licensed))
    for sector in SECTORS:
        if policy.raw[sector] < policy.longest_raw:
            report.steps.append(
                _delete_sector_rows(conn, sector=sector, cutoff=now - policy.raw[sector], dry_run=dry_run)
            )
    report.steps.append(
        _drop_chunks(conn, "readings_1m", cutoff=now - policy.rollup_1m, dry_run=dry_run, horizon="rollup_1m")
    )
    report.steps.append(_drop_chunks(conn, "readings_1h", cutoff=now - policy.rollup_1h, dry_run=dry_run))
    report.steps.append(_drop_chunks(conn, "anomalies", cutoff=now - policy.anomalies, dry_run=dry_run))
    report.steps.append(_delete_rows(conn, "alarm_events", "at", cutoff=now - policy.alarm_events, dry_run=dry_run))
    report.steps.append(
        _delete_rows(
            conn,
            "federation_outbox",
            "delivered_at",
            cutoff=now - policy.federation_delivered,
            dry_run=dry_run,
            note="delivered only; undelivered snapshots stay until sent",
        )
    )
    report.steps.append(
        _delete_rows(conn, "audit_log", "at", cutoff=now - policy.audit, dry_run=dry_run, note="legal record")
    )
    report.steps.append(
        _quarantine(conn, cutoff=now - policy.quarantine, older_than=policy.quarantine, dry_run=dry_run)
    )
    report.steps.append(
        _login_attempts(conn, cutoff=now - policy.login_attempts, older_than=policy.login_attempts, dry_run=dry_run)
    )
    return report


def _now(conn: Conn) -> datetime:
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    conn.rollback()  # no transaction left open: each step below is its own
    return row[0]  # type: ignore[no-any-return]


def _count_chunks(conn: Conn, table: str, cutoff: datetime) -> int:
    row = conn.execute("SELECT count(*) FROM show_chunks(%s::regclass, older_than => %s)", (table, cutoff)).fetchone()
    assert row is not None
    return int(row[0])


def _record_horizon(conn: Conn, scope: str, cutoff: datetime) -> None:
    conn.execute(
        "INSERT INTO retention_horizons (scope, deleted_before) VALUES (%s, %s) ON CONFLICT (scope) DO UPDATE "
        "SET deleted_before = greatest(retention_horizons.deleted_before, excluded.deleted_before), updated_at = now()",
        (scope, cutoff),
    )


def _drop_raw_chunks(conn: Conn, *, cutoff: datetime, dry_run: bool, licensed: bool) -> RetentionStep:
    """Drop raw chunks older than `cutoff`, but none holding a reading the rollups do not have yet."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LIFECYCLE_LOCK_KEY,))
        note = ""
        if not dry_run:
            # Writers wait (a few ms: ingest transactions are short) so that no reading lands in a chunk being
            # dropped after the check below; readers are not blocked.
            conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(DROP_LOCK_TIMEOUT)))
            try:
                with conn.transaction():
                    conn.execute("LOCK TABLE readings IN SHARE MODE")
            except psycopg.errors.LockNotAvailable:
                return RetentionStep("readings", cutoff, 0, "chunks", "writers held the table; next run")
        safe = cutoff
        if not licensed:  # continuous aggregates materialise on their own; the own job's watermark says here
            watermark = read_watermark(conn, ROLLUP_JOB) or 0
            row = conn.execute(
                "SELECT min(ts) FROM readings WHERE ts < %s AND ingest_xid >= %s", (cutoff, watermark)
            ).fetchone()
            if row is not None and row[0] is not None:
                safe = min(cutoff, row[0])
                note = f"kept from {safe.isoformat()}: readings there are not rolled up yet"
        chunks = _count_chunks(conn, "readings", safe)
        if not dry_run:
            try:
                with conn.transaction():
                    conn.execute("SELECT drop_chunks('readings', older_than => %s)", (safe,))
            except psycopg.errors.LockNotAvailable:
                return RetentionStep("readings", cutoff, 0, "chunks", "readers held old chunks; next run")
            _record_horizon(conn, "raw", safe)
    return RetentionStep("readings", cutoff, chunks, "chunks", note)


def _delete_sector_rows(conn: Conn, *, sector: str, cutoff: datetime, dry_run: bool) -> RetentionStep:
    """A sector kept shorter than the longest: its rolled-up rows older than `cutoff` are deleted."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LIFECYCLE_LOCK_KEY,))
        watermark = read_watermark(conn, ROLLUP_JOB) or 0
        if dry_run:
            row = conn.execute(
                "SELECT count(*) FROM readings r JOIN devices d ON d.device_id = r.device_id WHERE d.sector = %s "
                "AND r.ts < %s AND r.ingest_xid < %s",
                (sector, cutoff, watermark),
            ).fetchone()
            removed = int(row[0]) if row else 0
        else:
            cur = conn.execute(
                "DELETE FROM readings r USING devices d WHERE d.device_id = r.device_id AND d.sector = %s "
                "AND r.ts < %s AND r.ingest_xid < %s",
                (sector, cutoff, watermark),
            )
            removed = max(0, cur.rowcount)
            _record_horizon(conn, f"raw/{sector}", cutoff)
    return RetentionStep(f"readings ({sector})", cutoff, removed, "rows")


def _drop_chunks(
    conn: Conn, table: str, *, cutoff: datetime, dry_run: bool, horizon: str | None = None
) -> RetentionStep:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LIFECYCLE_LOCK_KEY,))
        chunks = _count_chunks(conn, table, cutoff)
        if not dry_run:
            conn.execute("SELECT drop_chunks(%s::regclass, older_than => %s)", (table, cutoff))
            if horizon is not None:
                _record_horizon(conn, horizon, cutoff)
    return RetentionStep(table, cutoff, chunks, "chunks")


def _delete_rows(
    conn: Conn, table: str, column: str, *, cutoff: datetime, dry_run: bool, note: str = ""
) -> RetentionStep:
    verb = sql.SQL("SELECT count(*) FROM" if dry_run else "DELETE FROM")
    with conn.transaction():
        cur = conn.execute(
            sql.SQL("{} {} WHERE {} < %s").format(verb, sql.Identifier(table), sql.Identifier(column)), (cutoff,)
        )
        if dry_run:
            row = cur.fetchone()
            removed = int(row[0]) if row else 0
        else:
            removed = max(0, cur.rowcount)
    return RetentionStep(table, cutoff, removed, "rows", note)


def _quarantine(conn: Conn, *, cutoff: datetime, older_than: timedelta, dry_run: bool) -> RetentionStep:
    if dry_run:
        return _delete_rows(conn, "quarantine", "received_at", cutoff=cutoff, dry_run=True)
    with conn.transaction():
        removed = delete_expired(conn, older_than=older_than)
    return RetentionStep("quarantine", cutoff, removed, "rows")


def _login_attempts(conn: Conn, *, cutoff: datetime, older_than: timedelta, dry_run: bool) -> RetentionStep:
    if dry_run:
        return _delete_rows(conn, "login_attempts", "at", cutoff=cutoff, dry_run=True)
    with conn.transaction():
        removed = delete_old_login_attempts(conn, older_than=older_than)
    return RetentionStep("login_attempts", cutoff, max(0, removed), "rows", "older than the failed-login window")


def apply_licensed_policies(conn: Conn, policy: RetentionPolicy) -> bool:
    """On the Timescale-licensed build: refresh policies of the continuous aggregates (their refresh window ends
    before the shortest raw retention, so deleted raw rows never reach a refresh), compression of raw readings
    after a week, and retention policies of the rollups and raw readings at the longest sector retention. False
    (nothing done) on the Apache build. Not run on these machines (they have the Apache build)."""
    if timescaledb_license(conn) != "timescale":
        return False
    shortest = min(policy.raw.values())
    with conn.transaction():
        for view, end_offset, every in (
            ("readings_1m", "1 minute", "1 minute"),
            ("readings_1h", "1 hour", "15 minutes"),
        ):
            conn.execute("SELECT remove_continuous_aggregate_policy(%s::regclass, if_exists => true)", (view,))
            conn.execute(
                "SELECT add_continuous_aggregate_policy(%s::regclass, start_offset => %s, "
                "end_offset => %s::interval, schedule_interval => %s::interval)",
                (view, shortest - timedelta(days=1), end_offset, every),
            )
        conn.execute(
            "ALTER TABLE readings SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id, metric', "
            "timescaledb.compress_orderby = 'ts DESC')"
        )
        conn.execute(
            "SELECT add_compression_policy('readings', compress_after => INTERVAL '7 days', if_not_exists => true)"
        )
        for table, keep in (
            ("readings", policy.longest_raw),
            ("readings_1m", policy.rollup_1m),
            ("readings_1h", policy.rollup_1h),
            ("anomalies", policy.anomalies),
        ):
            conn.execute("SELECT remove_retention_policy(%s::regclass, if_exists => true)", (table,))
            conn.execute("SELECT add_retention_policy(%s::regclass, drop_after => %s)", (table, keep))
    return True
