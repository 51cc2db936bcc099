"""Alarms (list, one, acknowledge, clear, comment, assign) and a device's anomalies, within the caller's scope: an alarm or
a device outside it is unknown. Operators act; the actor is the caller's principal, never a name in the body."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from analytics.alarms import (
    Alarm,
    AlarmStatus,
    acknowledge_alarm,
    assign_alarm,
    clear_alarm,
    comment_alarm,
    get_alarm,
    list_alarm_comments,
    list_alarms,
)
from api.auth import OperatorDep, PrincipalDep
from api.errors import error_responses
from api.params import AlarmId, Offset
from api.principal import Principal
from api.state import ConnDep
from api.time_range import TimeRange, time_range
from core.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthenticated
from devices.audit import record_location_read
from devices.catalog import Severity
from devices.registry import get_device
from store.pool import Conn
from store.readings import query_anomalies

router = APIRouter(prefix="/alarms", tags=["alarms"])
device_router = APIRouter(prefix="/devices", tags=["alarms"])

MAX_ALARMS = 5000
MAX_ANOMALIES = 100_000
NOTE_MAX_CHARS = 2000

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
    incident_id: int | None = Field(default=None, description="the first alarm of the incident this one joined")
    reminders: int = Field(default=0, description="notifications sent again while it stayed unacknowledged")
    flapping: bool = Field(default=False, description="raised again and again: held open until quiet")
    assigned_to: str | None = Field(default=None, description="the username of the person working on it")
    assigned_at: datetime | None = None
    readings: str = Field(description="the readings that raised the alarm, in the readings API")


class AlarmCommentPublic(BaseModel):
    at: datetime
    actor: str
    note: str


class AlarmDetail(AlarmPublic):
    comments: list[AlarmCommentPublic] = Field(description="operators' comments, oldest first")


class AlarmAction(BaseModel):
    """An acknowledgement or a clear; who acts is the caller's principal."""

    model_config = ConfigDict(extra="forbid")

    note: Annotated[str | None, Field(max_length=NOTE_MAX_CHARS)] = None


class AlarmAssignment(BaseModel):
    """Who takes the alarm: a username, or null to take it back from whoever had it."""

    model_config = ConfigDict(extra="forbid")

    assignee: Annotated[str | None, Field(min_length=1, max_length=64)]
    note: Annotated[str | None, Field(max_length=NOTE_MAX_CHARS)] = None


class AlarmCommentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note: Annotated[str, Field(min_length=1, max_length=NOTE_MAX_CHARS)]


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


def _detail(conn: Conn, principal: Principal, alarm: Alarm) -> AlarmDetail:
    comments = list_alarm_comments(conn, alarm.id, scope=principal.scope)
    return AlarmDetail.model_validate(
        {
            **alarm.as_json(),
            "readings": readings_link(alarm),
            "comments": [AlarmCommentPublic.model_validate(c, from_attributes=True) for c in comments],
        }
    )


def _audit_positions(conn: Conn, principal: Principal, alarms: Iterable[Alarm], *, via: str) -> None:
    """An alarm on a bus tracker's latitude or longitude carries a position (`last_value`): a location read."""
    metrics: dict[tuple[str, str], set[str]] = defaultdict(set)
    for alarm in alarms:
        if alarm.metric is not None and alarm.last_value is not None:
            metrics[(alarm.device_id, alarm.sector)].add(alarm.metric)
    recorded = [
        record_location_read(
            conn,
            actor=principal.actor,
            address=principal.address,
            device_id=device_id,
            sector=sector,
            metrics=names,
            via=via,
        )
        for (device_id, sector), names in sorted(metrics.items())
    ]
    if any(recorded):
        conn.commit()


@router.get("", responses=error_responses(Unauthenticated, InvalidRequest))
def read_alarms(
    conn: ConnDep,
    principal: PrincipalDep,
    *,
    status: AlarmStatus | None = None,
    open_only: Annotated[bool, Query(alias="open", description="only alarms not cleared")] = False,
    province: Annotated[str | None, Query(max_length=64)] = None,
    sector: Annotated[str | None, Query(max_length=32)] = None,
    severity: Severity | None = None,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    assigned_to: Annotated[
        str | None, Query(max_length=64, description="a username, or `me` for the calling user's own")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ALARMS)] = 500,
    offset: Offset = 0,
) -> list[AlarmPublic]:
    """Alarms in the caller's scope, newest first, filtered by status (or `open`), province, sector, severity,
    device, kind and assignee."""
    if assigned_to == "me":
        if principal.kind != "user":
            raise InvalidRequest("assigned_to=me names a logged-in person; an API key is given no alarms")
        assigned_to = principal.name
    alarms = list_alarms(
        conn,
        scope=principal.scope,
        status=status,
        open_only=open_only,
        province=province,
        sector=sector,
        severity=severity,
        device_id=device_id,
        kind=kind,
        assigned_to=None if assigned_to is None else assigned_to.lower(),
        limit=limit,
        offset=offset,
    )
    _audit_positions(conn, principal, alarms, via="alarms")
    return [_public(a) for a in alarms]


@router.get("/{alarm_id}", responses=error_responses(Unauthenticated, NotFound, InvalidRequest))
def read_alarm(conn: ConnDep, principal: PrincipalDep, alarm_id: AlarmId) -> AlarmDetail:
    """One alarm with its comments."""
    alarm = get_alarm(conn, alarm_id, scope=principal.scope)
    _audit_positions(conn, principal, [alarm], via="alarm")
    return _detail(conn, principal, alarm)


def _change(
    conn: Conn, principal: Principal, alarm_id: int, body: AlarmAction | None, change: Callable[..., Alarm]
) -> AlarmDetail:
    """Apply an operator's lifecycle change; AlarmNotFound or AlarmStateError leaves through the connection's
    `with` block, which rolls the transaction back."""
    alarm = change(
        conn,
        alarm_id,
        by=principal.actor,
        note=None if body is None else body.note,
        now=datetime.now(UTC),
        scope=principal.scope,
        address=principal.address,
    )
    conn.commit()
    return _detail(conn, principal, alarm)


_CHANGE_ERRORS = error_responses(Unauthenticated, Forbidden, NotFound, Conflict, InvalidRequest)


@router.post("/{alarm_id}/ack", responses=_CHANGE_ERRORS)
def acknowledge(
    conn: ConnDep, principal: OperatorDep, alarm_id: AlarmId, body: AlarmAction | None = None
) -> AlarmDetail:
    """Take the alarm (operator): records who and when; it stops escalating. 409 unless the alarm is active."""
    return _change(conn, principal, alarm_id, body, acknowledge_alarm)


@router.post("/{alarm_id}/clear", responses=_CHANGE_ERRORS)
def clear(conn: ConnDep, principal: OperatorDep, alarm_id: AlarmId, body: AlarmAction | None = None) -> AlarmDetail:
    """Clear the alarm by hand (operator): records who and when. 409 when it is already cleared."""
    return _change(conn, principal, alarm_id, body, clear_alarm)


@router.post("/{alarm_id}/comment", responses=error_responses(Unauthenticated, Forbidden, NotFound, InvalidRequest))
def comment(conn: ConnDep, principal: OperatorDep, alarm_id: AlarmId, body: AlarmCommentCreate) -> AlarmDetail:
    """Add an operator's note to the alarm, whatever its status (recorded with the alarm and in the audit log)."""
    alarm = comment_alarm(
        conn, alarm_id, by=principal.actor, note=body.note, scope=principal.scope, address=principal.address
    )
    conn.commit()
    return _detail(conn, principal, alarm)


@router.post("/{alarm_id}/assign", responses=_CHANGE_ERRORS)
def assign(conn: ConnDep, principal: OperatorDep, alarm_id: AlarmId, body: AlarmAssignment) -> AlarmDetail:
    """Give an open alarm to a person (operator): an enabled operator or admin who can see it, often the caller;
    `null` takes it back. 422 for someone who cannot take it, 409 for a cleared alarm."""
    alarm = assign_alarm(
        conn,
        alarm_id,
        assignee=None if body.assignee is None else body.assignee.strip().lower(),
        by=principal.actor,
        note=body.note,
        now=datetime.now(UTC),
        scope=principal.scope,
        address=principal.address,
    )
    conn.commit()
    return _detail(conn, principal, alarm)


@device_router.get("/{device_id}/anomalies", responses=error_responses(Unauthenticated, NotFound, InvalidRequest))
def read_anomalies(
    conn: ConnDep,
    principal: PrincipalDep,
    device_id: str,
    *,
    span: AnomaliesRange,
    metric: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_ANOMALIES)] = 1000,
) -> list[AnomalyPublic]:
    """Anomalous readings of one device in [from, to), oldest first (default: the last 24 hours)."""
    device = get_device(conn, device_id, scope=principal.scope)  # UnknownDevice when unknown or not in scope
    rows = query_anomalies(
        conn, scope=principal.scope, device_id=device_id, metric=metric, start=span.start, end=span.end, limit=limit
    )
    if record_location_read(
        conn,
        actor=principal.actor,
        address=principal.address,
        device_id=device_id,
        sector=device.sector,
        metrics={r.metric for r in rows},
        via="anomalies",
        details={"from": span.start, "to": span.end, "points": len(rows)},
    ):
        conn.commit()
    return [AnomalyPublic.model_validate(r, from_attributes=True) for r in rows]
