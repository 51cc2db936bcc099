"""Alarms (list, one, acknowledge, clear) and a device's anomalies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from analytics.alarms import (
    Alarm,
    AlarmNotFound,
    AlarmStateError,
    AlarmStatus,
    acknowledge_alarm,
    clear_alarm,
    get_alarm,
    list_alarms,
)
from api.state import ConnDep
from core.errors import UnknownDevice
from devices.catalog import Severity
from devices.registry import get_device

router = APIRouter(prefix="/alarms", tags=["alarms"])
device_router = APIRouter(prefix="/devices", tags=["alarms"])

MAX_ALARMS = 5000
MAX_ANOMALIES = 100_000


class AlarmPublic(BaseModel):
    id: int
    device_id: str
    metric: str | None
    source: str
    kind: str
    cause: str
    province: str
    sector: str
    severity: Severity
    initial_severity: Severity
    status: AlarmStatus
    message: str
    occurrences: int
    first_reading_ts: datetime
    last_reading_ts: datetime
    last_value: float | None
    last_score: float | None
    trigger_reading_ts: datetime | None
    trigger_received_at: datetime | None
    raised_at: datetime
    updated_at: datetime
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    ack_note: str | None
    escalation_level: int
    escalated_at: datetime | None
    cleared_by: str | None
    cleared_at: datetime | None
    clear_reason: str | None
    clear_note: str | None
    details: dict[str, object]
    readings: str = Field(description="the readings that raised the alarm, in the readings API")


class AlarmAction(BaseModel):
    by: Annotated[str, Field(min_length=1, max_length=200, description="who acts (operator name or id)")]
    note: Annotated[str | None, Field(max_length=2000)] = None


class AnomalyPublic(BaseModel):
    ts: datetime
    metric: str
    value: float
    score: float
    detector: str
    details: dict[str, object]


def readings_link(alarm: Alarm) -> str:
    """`/devices/{id}/readings?metric=&from=&to=` covering the readings that raised the alarm ([from, to))."""
    params = {
        "from": alarm.first_reading_ts.isoformat(),
        # The readings API's range is half-open; include the last reading.
        "to": (alarm.last_reading_ts + timedelta(seconds=1)).isoformat(),
    }
    if alarm.metric is not None:
        params = {"metric": alarm.metric, **params}
    return f"/devices/{alarm.device_id}/readings?{urlencode(params)}"


def _public(alarm: Alarm) -> AlarmPublic:
    return AlarmPublic.model_validate({**alarm.as_json(), "readings": readings_link(alarm)})


@router.get("")
def read_alarms(
    conn: ConnDep,
    *,
    status: AlarmStatus | None = None,
    province: str | None = None,
    severity: Severity | None = None,
    device_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ALARMS)] = 500,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[AlarmPublic]:
    """Alarms, newest first, filtered by status, province, severity, device."""
    alarms = list_alarms(
        conn, status=status, province=province, severity=severity, device_id=device_id, limit=limit, offset=offset
    )
    return [_public(a) for a in alarms]


@router.get("/{alarm_id}")
def read_alarm(conn: ConnDep, alarm_id: int) -> AlarmPublic:
    try:
        return _public(get_alarm(conn, alarm_id))
    except AlarmNotFound as exc:
        raise HTTPException(status_code=404, detail=f"no alarm {alarm_id}") from exc


def _change(conn: ConnDep, alarm_id: int, body: AlarmAction, change: Callable[..., Alarm]) -> AlarmPublic:
    """Apply an operator's lifecycle change: 404 for an unknown alarm, 409 when its state does not allow it."""
    try:
        alarm = change(conn, alarm_id, by=body.by, note=body.note, now=datetime.now(UTC))
    except AlarmNotFound as exc:
        conn.rollback()
        raise HTTPException(status_code=404, detail=f"no alarm {alarm_id}") from exc
    except AlarmStateError as exc:
        conn.rollback()
        raise HTTPException(status_code=409, detail=str(exc)) from exc
    conn.commit()
    return _public(alarm)


@router.post("/{alarm_id}/ack")
def acknowledge(conn: ConnDep, alarm_id: int, body: AlarmAction) -> AlarmPublic:
    """Take the alarm: records who and when; it stops escalating. 409 unless the alarm is active."""
    return _change(conn, alarm_id, body, acknowledge_alarm)


@router.post("/{alarm_id}/clear")
def clear(conn: ConnDep, alarm_id: int, body: AlarmAction) -> AlarmPublic:
    """Clear the alarm by hand: records who and when. 409 when it is already cleared."""
    return _change(conn, alarm_id, body, clear_alarm)


@device_router.get("/{device_id}/anomalies")
def read_anomalies(
    conn: ConnDep,
    device_id: str,
    *,
    metric: str | None = None,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ANOMALIES)] = 1000,
) -> list[AnomalyPublic]:
    """Anomalous readings of one device in [from, to), oldest first (default: the last 24 hours)."""
    for value, name in ((start, "from"), (end, "to")):
        if value is not None and value.tzinfo is None:
            raise HTTPException(status_code=422, detail=f"'{name}' needs a timezone, e.g. 2026-11-22T08:00:00Z")
    end = end or datetime.now(UTC)
    start = start or end - timedelta(days=1)
    if start >= end:
        raise HTTPException(status_code=422, detail="'from' must be before 'to'")
    try:
        get_device(conn, device_id)
    except UnknownDevice as exc:
        raise HTTPException(status_code=404, detail=f"unknown device {device_id!r}") from exc
    rows = conn.execute(
        "SELECT ts, metric, value, score, detector, details FROM anomalies WHERE device_id = %s "
        "AND (%s::text IS NULL OR metric = %s) AND ts >= %s AND ts < %s ORDER BY ts, metric LIMIT %s",
        (device_id, metric, metric, start, end, limit),
    ).fetchall()
    return [AnomalyPublic(ts=r[0], metric=r[1], value=r[2], score=r[3], detector=r[4], details=r[5]) for r in rows]
