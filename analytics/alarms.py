"""Alarms and their lifecycle in the database: active → acknowledged → cleared, one open alarm per cause.

Functions take a connection and run inside the caller's transaction. `now` is passed in by the caller (the
job's clock, or the API's), so the lifecycle is testable without sleeping.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal, get_args

from psycopg import sql

from core.errors import Conflict, InvalidRequest, NotFound
from devices import audit as devices_audit
from devices.catalog import SEVERITIES, Severity
from store.access import find_user
from store.pool import Conn
from store.scope import EVERYTHING, Scope

_LOGGER = logging.getLogger(__name__)

AlarmStatus = Literal["active", "acknowledged", "cleared"]
AlarmSource = Literal["rule", "detector"]
ALARM_STATUSES: Final[tuple[AlarmStatus, ...]] = get_args(AlarmStatus)

# Lowest to highest; escalation moves one step up and stops at the top.
SEVERITY_ORDER: Final[tuple[Severity, ...]] = ("warning", "minor", "major", "critical")
assert set(SEVERITY_ORDER) == set(SEVERITIES)

SYSTEM_ACTOR: Final = "ioc-analytics"


class AlarmNotFound(NotFound):
    """No alarm has this id."""


class AlarmStateError(Conflict):
    """The alarm's status does not allow the requested change (e.g. acknowledging a cleared alarm)."""


@dataclass(frozen=True, slots=True)
class Alarm:
    id: int
    device_id: str
    metric: str | None
    source: AlarmSource
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
    # Flood control (migration 0006): the incident's first alarm when this one joined it, silence reminders sent,
    # and whether it is flapping.
    incident_id: int | None = None
    reminders: int = 0
    reminded_at: datetime | None = None
    flapping: bool = False
    # Who works on it (migration 0010): a username, and since when.
    assigned_to: str | None = None
    assigned_at: datetime | None = None

    def as_json(self) -> dict[str, object]:
        """The alarm as plain JSON values (timestamps in ISO 8601), for events and webhooks."""
        out: dict[str, object] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out


_COLUMNS: Final = (
    "id, device_id, metric, source, kind, cause, province, sector, severity, initial_severity, status, message, "
    "occurrences, first_reading_ts, last_reading_ts, last_value, last_score, trigger_reading_ts, trigger_received_at, "
    "raised_at, "
    "updated_at, acknowledged_by, acknowledged_at, ack_note, escalation_level, escalated_at, cleared_by, "
    "cleared_at, clear_reason, clear_note, details, incident_id, reminders, reminded_at, flapping, assigned_to, assigned_at"
)


def _alarm(row: tuple[object, ...]) -> Alarm:
    return Alarm(*row)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class AlarmSignal:
    """What the job saw of one cause in one batch: occurrences and the reading-time range they span."""

    device_id: str
    metric: str | None
    source: AlarmSource
    kind: str
    cause: str
    province: str
    sector: str
    severity: Severity
    message: str
    first_ts: datetime
    last_ts: datetime
    occurrences: int
    value: float | None
    score: float | None
    received_at: datetime | None
    trigger_ts: datetime | None = None
    details: dict[str, object] = field(default_factory=dict)


def raise_alarm(conn: Conn, signal: AlarmSignal, *, now: datetime) -> tuple[Alarm, bool]:
    """Open an alarm for the signal's cause, or count the repeat on the open one; returns (alarm, created)."""
    row = conn.execute(
        f"INSERT INTO alarms AS a (device_id, metric, source, kind, cause, province, sector, severity, "
        "initial_severity, message, occurrences, first_reading_ts, last_reading_ts, last_value, last_score, "
        "trigger_reading_ts, trigger_received_at, raised_at, updated_at, details) "
        "VALUES (%(device_id)s, %(metric)s, %(source)s, %(kind)s, %(cause)s, %(province)s, %(sector)s, "
        "%(severity)s, %(severity)s, %(message)s, %(occurrences)s, %(first_ts)s, %(last_ts)s, %(value)s, "
        "%(score)s, %(trigger_ts)s, %(received_at)s, %(now)s, %(now)s, %(details)s) "
        "ON CONFLICT (device_id, metric, cause) WHERE status <> 'cleared' DO UPDATE SET "
        "occurrences = a.occurrences + excluded.occurrences, "
        "last_reading_ts = greatest(a.last_reading_ts, excluded.last_reading_ts), "
        "last_value = excluded.last_value, last_score = excluded.last_score, updated_at = excluded.updated_at "
        f"RETURNING {_COLUMNS}, (xmax = 0) AS created",
        {
            "device_id": signal.device_id,
            "metric": signal.metric,
            "source": signal.source,
            "kind": signal.kind,
            "cause": signal.cause,
            "province": signal.province,
            "sector": signal.sector,
            "severity": signal.severity,
            "message": signal.message,
            "occurrences": signal.occurrences,
            "first_ts": signal.first_ts,
            "last_ts": signal.last_ts,
            "value": signal.value,
            "score": signal.score,
            "received_at": signal.received_at,
            "trigger_ts": signal.trigger_ts,
            "now": now,
            "details": json.dumps(signal.details),
        },
    ).fetchone()
    assert row is not None
    return _alarm(row[:-1]), bool(row[-1])


def repeat_alarm(conn: Conn, signal: AlarmSignal, *, now: datetime) -> Alarm | None:
    """Count a continuing condition on its open alarm, if one is open (a condition that goes on after an
    operator cleared its alarm does not re-raise it; the next onset does)."""
    row = conn.execute(
        f"UPDATE alarms SET occurrences = occurrences + %s, last_reading_ts = greatest(last_reading_ts, %s), "
        f"last_value = %s, last_score = %s, updated_at = %s "
        f"WHERE device_id = %s AND metric IS NOT DISTINCT FROM %s AND cause = %s AND status <> 'cleared' "
        f"RETURNING {_COLUMNS}",
        (
            signal.occurrences,
            signal.last_ts,
            signal.value,
            signal.score,
            now,
            signal.device_id,
            signal.metric,
            signal.cause,
        ),
    ).fetchone()
    return None if row is None else _alarm(row)


def clear_cause(
    conn: Conn, *, device_id: str, metric: str | None, cause: str, reason: str, now: datetime
) -> Alarm | None:
    """Auto-clear the open alarm of a cause whose condition ended; None when none is open."""
    row = conn.execute(
        f"UPDATE alarms SET status = 'cleared', cleared_by = %s, cleared_at = %s, clear_reason = %s, updated_at = %s "
        f"WHERE device_id = %s AND metric IS NOT DISTINCT FROM %s AND cause = %s AND status <> 'cleared' "
        f"RETURNING {_COLUMNS}",
        (SYSTEM_ACTOR, now, reason, now, device_id, metric, cause),
    ).fetchone()
    if row is None:
        return None
    alarm = _alarm(row)
    record_audit(conn, actor=SYSTEM_ACTOR, action="alarm.clear", alarm=alarm, detail={"reason": reason})
    return alarm


def link_incident(conn: Conn, alarm_id: int, *, leader: tuple[str, str | None, str]) -> int | None:
    """Link a new alarm to the incident of the latest alarm of `leader` (device, metric, cause): to that alarm's
    own incident when it joined one. Returns the incident's first alarm id (None: no such alarm)."""
    row = conn.execute(
        "UPDATE alarms AS a SET incident_id = l.incident FROM ("
        "SELECT coalesce(incident_id, id) AS incident FROM alarms WHERE device_id = %s "
        "AND metric IS NOT DISTINCT FROM %s AND cause = %s AND id <> %s ORDER BY raised_at DESC, id DESC LIMIT 1"
        ") AS l WHERE a.id = %s RETURNING a.incident_id",
        (leader[0], leader[1], leader[2], alarm_id, alarm_id),
    ).fetchone()
    return None if row is None else int(row[0])


def mark_flapping(conn: Conn, *, device_id: str, metric: str | None, cause: str) -> None:
    """The open alarm of this cause keeps being raised again: it is flapping (and held open until quiet)."""
    conn.execute(
        "UPDATE alarms SET flapping = true WHERE device_id = %s AND metric IS NOT DISTINCT FROM %s AND cause = %s "
        "AND status <> 'cleared' AND NOT flapping",
        (device_id, metric, cause),
    )


def remind_due(conn: Conn, *, kinds: tuple[str, ...], every_s: float, now: datetime) -> list[Alarm]:
    """Active (unacknowledged) alarms of `kinds` last notified at least `every_s` ago: counted as reminded now and
    returned, to be notified again."""
    rows = conn.execute(
        f"UPDATE alarms SET reminders = reminders + 1, reminded_at = %s WHERE status = 'active' "
        f"AND kind = ANY(%s) AND coalesce(reminded_at, raised_at) <= %s RETURNING {_COLUMNS}",
        (now, list(kinds), now - timedelta(seconds=every_s)),
    ).fetchall()
    return [_alarm(r) for r in rows]


def get_alarm(conn: Conn, alarm_id: int, *, scope: Scope) -> Alarm:
    """The alarm, or AlarmNotFound when there is none or it is outside `scope` (the same answer)."""
    in_scope, scope_params = scope.where()
    row = conn.execute(
        sql.SQL("SELECT {} FROM alarms WHERE id = %s AND {}").format(sql.SQL(_COLUMNS), in_scope),
        [alarm_id, *scope_params],
    ).fetchone()
    if row is None:
        raise AlarmNotFound(f"no alarm {alarm_id}")
    return _alarm(row)


def acknowledge_alarm(
    conn: Conn, alarm_id: int, *, by: str, note: str | None, now: datetime, scope: Scope, address: str | None = None
) -> Alarm:
    """An operator takes the alarm: it stops escalating. Only an active alarm can be acknowledged; one outside
    `scope` is not found."""
    current = _locked(conn, alarm_id, scope=scope)
    if current.status != "active":
        raise AlarmStateError(f"alarm {alarm_id} is {current.status}; only an active alarm can be acknowledged")
    row = conn.execute(
        f"UPDATE alarms SET status = 'acknowledged', acknowledged_by = %s, acknowledged_at = %s, ack_note = %s, "
        f"updated_at = %s WHERE id = %s RETURNING {_COLUMNS}",
        (by, now, note, now, alarm_id),
    ).fetchone()
    assert row is not None
    alarm = _alarm(row)
    record_audit(conn, actor=by, action="alarm.acknowledge", alarm=alarm, detail={"note": note}, address=address)
    return alarm


def clear_alarm(
    conn: Conn, alarm_id: int, *, by: str, note: str | None, now: datetime, scope: Scope, address: str | None = None
) -> Alarm:
    """An operator clears the alarm (active or acknowledged); one outside `scope` is not found."""
    current = _locked(conn, alarm_id, scope=scope)
    if current.status == "cleared":
        raise AlarmStateError(f"alarm {alarm_id} is already cleared (by {current.cleared_by})")
    row = conn.execute(
        f"UPDATE alarms SET status = 'cleared', cleared_by = %s, cleared_at = %s, clear_reason = 'operator', "
        f"clear_note = %s, updated_at = %s WHERE id = %s RETURNING {_COLUMNS}",
        (by, now, note, now, alarm_id),
    ).fetchone()
    assert row is not None
    alarm = _alarm(row)
    record_audit(conn, actor=by, action="alarm.clear", alarm=alarm, detail={"note": note}, address=address)
    return alarm


class AlarmAssigneeInvalid(InvalidRequest):
    """The named person cannot take the alarm: unknown, disabled, a viewer, or unable to see it."""


def assign_alarm(
    conn: Conn,
    alarm_id: int,
    *,
    assignee: str | None,
    by: str,
    note: str | None,
    now: datetime,
    scope: Scope,
    address: str | None = None,
) -> Alarm:
    """Give an open alarm to a person (None: nobody) who can act on it: an enabled operator or admin whose own scope
    includes the alarm's province and sector, so the assignee can see what they are given. An alarm outside `scope`
    (the caller's) is not found; a cleared one cannot be assigned."""
    current = _locked(conn, alarm_id, scope=scope)
    if current.status == "cleared":
        raise AlarmStateError(f"alarm {alarm_id} is cleared; only an open alarm can be assigned")
    if assignee is not None:
        _check_assignee(conn, assignee, current)
    if assignee == current.assigned_to:
        return current
    row = conn.execute(
        f"UPDATE alarms SET assigned_to = %s, assigned_at = CASE WHEN %s::text IS NULL THEN NULL ELSE %s END, "
        f"updated_at = %s WHERE id = %s RETURNING {_COLUMNS}",
        (assignee, assignee, now, now, alarm_id),
    ).fetchone()
    assert row is not None
    alarm = _alarm(row)
    detail: dict[str, object] = {"from": current.assigned_to, "to": assignee, "note": note}
    record_audit(conn, actor=by, action="alarm.assign", alarm=alarm, detail=detail, address=address)
    return alarm


def _check_assignee(conn: Conn, username: str, alarm: Alarm) -> None:
    user = find_user(conn, username, within=EVERYTHING)
    if user is None or user.disabled_at is not None:
        raise AlarmAssigneeInvalid(f"no enabled user {username!r} to assign alarm {alarm.id} to")
    if user.role not in ("operator", "admin"):
        raise AlarmAssigneeInvalid(f"user {username!r} is a {user.role}; an alarm goes to an operator or an admin")
    if not user.scope.allows(province=alarm.province, sector=alarm.sector):
        raise AlarmAssigneeInvalid(
            f"user {username!r} cannot see alarms of {alarm.province}/{alarm.sector}: their scope does not include it"
        )


@dataclass(frozen=True, slots=True)
class AlarmComment:
    at: datetime
    actor: str
    note: str


def comment_alarm(conn: Conn, alarm_id: int, *, by: str, note: str, scope: Scope, address: str | None = None) -> Alarm:
    """An operator's note on the alarm, whatever its status; kept as the alarm's `alarm.comment` audit entries
    (who, when, from where: see `list_alarm_comments`). An alarm outside `scope` is not found."""
    alarm = get_alarm(conn, alarm_id, scope=scope)
    record_audit(conn, actor=by, action="alarm.comment", alarm=alarm, detail={"note": note}, address=address)
    return alarm


def list_alarm_comments(conn: Conn, alarm_id: int, *, scope: Scope) -> list[AlarmComment]:
    """The alarm's comments, oldest first; none when it is outside `scope`."""
    in_scope, scope_params = scope.where(table="a")
    rows = conn.execute(
        sql.SQL(
            "SELECT l.at, l.actor, l.details->>'note' FROM audit_log l WHERE l.target = %s "
            "AND l.action = 'alarm.comment' AND EXISTS (SELECT 1 FROM alarms a WHERE a.id = %s AND {}) "
            "ORDER BY l.id"
        ).format(in_scope),
        [f"alarm:{alarm_id}", alarm_id, *scope_params],
    ).fetchall()
    return [AlarmComment(at=r[0], actor=r[1], note=r[2]) for r in rows]


def _locked(conn: Conn, alarm_id: int, *, scope: Scope) -> Alarm:
    in_scope, scope_params = scope.where()
    row = conn.execute(
        sql.SQL("SELECT {} FROM alarms WHERE id = %s AND {} FOR UPDATE").format(sql.SQL(_COLUMNS), in_scope),
        [alarm_id, *scope_params],
    ).fetchone()
    if row is None:
        raise AlarmNotFound(f"no alarm {alarm_id}")
    return _alarm(row)


def escalate_due(conn: Conn, *, after_s: float, now: datetime) -> list[Alarm]:
    """Raise by one severity level every alarm left unacknowledged for `after_s` since it was raised (or last
    escalated); critical is the top."""
    rows = conn.execute(
        f"UPDATE alarms SET severity = CASE severity WHEN 'warning' THEN 'minor' WHEN 'minor' THEN 'major' "
        f"ELSE 'critical' END, escalation_level = escalation_level + 1, escalated_at = %s, updated_at = %s "
        f"WHERE status = 'active' AND severity <> 'critical' AND coalesce(escalated_at, raised_at) <= %s "
        f"RETURNING {_COLUMNS}",
        (now, now, now - timedelta(seconds=after_s)),
    ).fetchall()
    alarms = [_alarm(r) for r in rows]
    for alarm in alarms:
        record_audit(
            conn, actor=SYSTEM_ACTOR, action="alarm.escalate", alarm=alarm, detail={"severity": alarm.severity}
        )
    return alarms


def open_alarms(conn: Conn) -> list[Alarm]:
    rows = conn.execute(f"SELECT {_COLUMNS} FROM alarms WHERE status <> 'cleared'").fetchall()
    return [_alarm(r) for r in rows]


def list_alarms(
    conn: Conn,
    *,
    scope: Scope,
    status: AlarmStatus | None = None,
    province: str | None = None,
    sector: str | None = None,
    severity: Severity | None = None,
    device_id: str | None = None,
    kind: str | None = None,
    assigned_to: str | None = None,
    open_only: bool = False,
    limit: int = 500,
    offset: int = 0,
) -> list[Alarm]:
    """The alarms inside `scope`, newest first, filtered by status (or all not cleared), province, sector,
    severity, device, kind and assignee."""
    in_scope, scope_params = scope.where()
    rows = conn.execute(
        sql.SQL(
            "SELECT {} FROM alarms WHERE (%s::text IS NULL OR status = %s) AND (NOT %s OR status <> 'cleared') "
            "AND (%s::text IS NULL OR province = %s) AND (%s::text IS NULL OR sector = %s) "
            "AND (%s::text IS NULL OR severity = %s) AND (%s::text IS NULL OR device_id = %s) "
            "AND (%s::text IS NULL OR kind = %s) AND (%s::text IS NULL OR assigned_to = %s) AND {} "
            "ORDER BY raised_at DESC, id DESC LIMIT %s OFFSET %s"
        ).format(sql.SQL(_COLUMNS), in_scope),
        [
            status,
            status,
            open_only,
            province,
            province,
            sector,
            sector,
            severity,
            severity,
            device_id,
            device_id,
            kind,
            kind,
            assigned_to,
            assigned_to,
            *scope_params,
            limit,
            offset,
        ],
    ).fetchall()
    return [_alarm(r) for r in rows]


def record_audit(
    conn: Conn, *, actor: str, action: str, alarm: Alarm, detail: dict[str, object], address: str | None = None
) -> None:
    """An `audit_log` entry for an alarm change, in the same transaction as the change (target `alarm:{id}`;
    `details.device_id` places it in a scope)."""
    devices_audit.record_audit(
        conn,
        actor=actor,
        action=action,
        target=f"alarm:{alarm.id}",
        details={"device_id": alarm.device_id, "metric": alarm.metric, "cause": alarm.cause, **detail},
        address=address,
    )
