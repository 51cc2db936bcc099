"""What `/readyz` reads from the database: that it answers, the ingest workers' heartbeats, the analytics job's lag."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from store.pool import Conn


@dataclass(frozen=True, slots=True)
class IngestHeartbeat:
    client_id: str
    connected: bool
    age_s: float


@dataclass(frozen=True, slots=True)
class AnalyticsLag:
    job: str
    # Age of the oldest reading the job has not read yet (None: it has read everything).
    behind_s: float | None
    updated_at: datetime


def ping(conn: Conn) -> None:
    conn.execute("SELECT 1")


def beat(conn: Conn, *, client_id: str, connected: bool) -> None:
    """Record that ingest worker `client_id` is alive and whether it is connected and subscribed."""
    conn.execute(
        "INSERT INTO ingest_heartbeats (client_id, connected, at) VALUES (%s, %s, now()) "
        "ON CONFLICT (client_id) DO UPDATE SET connected = excluded.connected, at = excluded.at",
        (client_id, connected),
    )


def ingest_heartbeats(conn: Conn) -> list[IngestHeartbeat]:
    rows = conn.execute(
        "SELECT client_id, connected, extract(epoch FROM now() - at)::float8 FROM ingest_heartbeats ORDER BY client_id"
    ).fetchall()
    return [IngestHeartbeat(str(r[0]), bool(r[1]), float(r[2])) for r in rows]


def analytics_lags(conn: Conn) -> list[AnalyticsLag]:
    """Per analytics job: how old the oldest reading beyond its watermark is."""
    rows = conn.execute(
        "SELECT w.job, extract(epoch FROM now() - (SELECT min(r.received_at) FROM readings r "
        "WHERE r.ingest_xid >= w.ingest_xid))::float8, w.updated_at FROM job_watermarks w ORDER BY w.job"
    ).fetchall()
    return [AnalyticsLag(str(r[0]), None if r[1] is None else float(r[1]), r[2]) for r in rows]
