"""Alarms (list, one, acknowledge, clear) and a device's anomalies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from analytics.alarms import (
    Alarm,
    AlarmStatus,
    acknowledge_alarm,
    clear_alarm,
    get_alarm,
    list_alarms,
)
from api.errors import error_responses
from api.state import ConnDep
from api.time_range import TimeRange, time_range
from core.errors import Conflict, InvalidRequest, NotFound
from devices.catalog import Severity
from devices.registry import get_device

router = APIRouter(prefix="/alarms", tags=["alarms"])
device_router = APIRouter(prefix="/devices", tags=["alarms"])

MAX_ALARMS = 5000
MAX_ANOMALIES = 100_000

AnomaliesRange = Annotated[TimeRange, Depends(time_range(timedelta(days=1)))]


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


@router.get("/{alarm_id}", responses=error_responses(NotFound))
def read_alarm(conn: ConnDep, alarm_id: int) -> AlarmPublic:
    return _public(get_alarm(conn, alarm_id))


def _change(conn: ConnDep, alarm_id: int, body: AlarmAction, change: Callable[..., Alarm]) -> AlarmPublic:
    """Apply an operator's lifecycle change; AlarmNotFound or AlarmStateError leaves through the connection's
    `with` block, which rolls the transaction back."""
    alarm = change(conn, alarm_id, by=body.by, note=body.note, now=datetime.now(UTC))
    conn.commit()
    return _public(alarm)


_CHANGE_ERRORS = error_responses(NotFound, Conflict)


@router.post("/{alarm_id}/ack", responses=_CHANGE_ERRORS)
def acknowledge(conn: ConnDep, alarm_id: int, body: AlarmAction) -> AlarmPublic:
    """Take the alarm: records who and when; it stops escalating. 409 unless the alarm is active."""
    return _change(conn, alarm_id, body, acknowledge_alarm)


@router.post("/{alarm_id}/clear", responses=_CHANGE_ERRORS)
def clear(conn: ConnDep, alarm_id: int, body: AlarmAction) -> AlarmPublic:
    """Clear the alarm by hand: records who and when. 409 when it is already cleared."""
    return _change(conn, alarm_id, body, clear_alarm)


@device_router.get("/{device_id}/anomalies", responses=error_responses(NotFound, InvalidRequest))
def read_anomalies(
    conn: ConnDep,
    device_id: str,
    *,
    span: AnomaliesRange,
    metric: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ANOMALIES)] = 1000,
) -> list[AnomalyPublic]:
    """Anomalous readings of one device in [from, to), oldest first (default: the last 24 hours)."""
    get_device(conn, device_id)  # UnknownDevice when it is not registered
    rows = conn.execute(
        "SELECT ts, metric, value, score, detector, details FROM anomalies WHERE device_id = %s "
        "AND (%s::text IS NULL OR metric = %s) AND ts >= %s AND ts < %s ORDER BY ts, metric LIMIT %s",
        (device_id, metric, metric, span.start, span.end, limit),
    ).fetchall()
    return [AnomalyPublic(ts=r[0], metric=r[1], value=r[2], score=r[3], detector=r[4], details=r[5]) for r in rows]
