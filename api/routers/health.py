"""Liveness and readiness, the two routes that need no login.

`/healthz` is liveness: the API process answers (nothing else is touched, so a database outage never makes an
orchestrator restart a healthy API). `/readyz` is readiness: database, broker, ingest and analytics each reported,
503 while any of them is down."""

from __future__ import annotations

from typing import Literal

import psycopg
from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from api.state import StateDep
from store.readiness import AnalyticsLag, IngestHeartbeat, analytics_lags, ingest_heartbeats, ping

router = APIRouter(tags=["health"])

DB_PROBE_TIMEOUT_S = 2
# An ingest worker heard from within this long counts as alive (it beats every 2 s).
INGEST_STALE_S = 10.0
# The analytics job counts as behind when a reading has waited this long for it.
ANALYTICS_BEHIND_S = 120.0

State = Literal["ok", "down", "behind", "unknown"]


class Check(BaseModel):
    state: State
    detail: str = ""


class Readiness(BaseModel):
    ready: bool = Field(description="every part is ok (or not part of this deployment: unknown)")
    database: Check
    broker: Check
    ingest: Check
    analytics: Check


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the API process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"model": Readiness, "description": "a part is down or behind"}})
def readyz(state: StateDep, response: Response) -> Readiness:
    """Readiness of each part of the center; 503 while any is down or behind."""
    unknown = Check(state="unknown", detail="the database does not answer")
    ingest, analytics = unknown, unknown
    try:
        # A connection of its own, not a pooled one: the answer is about the database now, not about a pool that
        # may still hold (or wait for) connections from before an outage.
        conninfo = state.pool.conninfo
        with psycopg.connect(
            conninfo() if callable(conninfo) else conninfo, connect_timeout=DB_PROBE_TIMEOUT_S
        ) as conn:
            ping(conn)
            beats = ingest_heartbeats(conn)
            lags = analytics_lags(conn)
    except psycopg.OperationalError:
        database = Check(state="down", detail="the database does not answer")
    else:
        database = Check(state="ok")
        ingest = _ingest(beats)
        analytics = _analytics(lags)
    if state.commands is None:
        broker = Check(state="unknown", detail="this API runs without a broker")
    elif state.commands.connected:
        broker = Check(state="ok")
    else:
        broker = Check(state="down", detail="the API's broker connection is down")
    checks = (database, broker, ingest, analytics)
    ready = all(c.state in ("ok", "unknown") for c in checks)
    if not ready:
        response.status_code = 503
    return Readiness(ready=ready, database=database, broker=broker, ingest=ingest, analytics=analytics)


def _ingest(beats: list[IngestHeartbeat]) -> Check:
    alive = [b for b in beats if b.age_s < INGEST_STALE_S]
    if not beats:
        return Check(state="unknown", detail="no ingest worker has reported")
    connected = [b for b in alive if b.connected]
    if connected:
        return Check(state="ok", detail=f"{len(connected)} worker(s) connected")
    if alive:
        return Check(state="down", detail="ingest workers run but are not connected to the broker")
    return Check(state="down", detail="no ingest worker reported lately")


def _analytics(jobs: list[AnalyticsLag]) -> Check:
    if not jobs:
        return Check(state="unknown", detail="no analytics job has run")
    worst = max((lag.behind_s or 0.0) for lag in jobs)
    if worst > ANALYTICS_BEHIND_S:
        return Check(state="behind", detail=f"a reading has waited {worst:.0f} s for analytics")
    return Check(state="ok", detail=f"{len(jobs)} job(s), {worst:.0f} s behind at most")
