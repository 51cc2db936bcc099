"""The audit log: who did what to which target, when and from where. Written in the same transaction as the change
(or the read of location data), read back within a caller's scope."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from psycopg import sql

from store.pool import Conn
from store.scope import Scope

# Vehicle positions can be personal data (Vietnam's Personal Data Protection Law, in force since 1 January 2026):
# every read of these metrics of a transport device is audited.
LOCATION_SECTOR: Final = "transport"
LOCATION_METRICS: Final = frozenset({"latitude", "longitude"})


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    details: Mapping[str, object]
    address: str | None


def record_audit(
    conn: Conn,
    *,
    actor: str,
    action: str,
    target: str,
    details: Mapping[str, object],
    address: str | None = None,
) -> None:
    """One entry (`address`: where the request came from); never pass a secret in `details`."""
    conn.execute(
        "INSERT INTO audit_log (actor, action, target, details, address) VALUES (%s, %s, %s, %s, %s)",
        (actor, action, target, json.dumps(dict(details), default=str), address),
    )


def record_audit_many(
    conn: Conn, entries: Sequence[tuple[str, str, str, Mapping[str, object]]], *, address: str | None = None
) -> None:
    """Many entries (actor, action, target, details), all from `address`, with one COPY."""
    with (
        conn.cursor() as cur,
        cur.copy("COPY audit_log (actor, action, target, details, address) FROM STDIN") as copy,
    ):
        for actor, action, target, details in entries:
            copy.write_row((actor, action, target, json.dumps(dict(details), default=str), address))


def location_metrics(*, sector: str, metrics: Iterable[str]) -> list[str]:
    """The vehicle-position metrics among `metrics` of a device in `sector` (none for any other sector)."""
    if sector != LOCATION_SECTOR:
        return []
    return sorted(set(metrics) & LOCATION_METRICS)


def record_location_read(
    conn: Conn,
    *,
    actor: str,
    address: str | None,
    device_id: str,
    sector: str,
    metrics: Iterable[str],
    via: str,
    details: Mapping[str, object] | None = None,
) -> bool:
    """Audit a read of vehicle positions: when the `metrics` an answer holds include position metrics of a
    transport device, a `location.read` entry (target the device, `via` the route) is recorded in the caller's
    transaction. True when one was."""
    located = location_metrics(sector=sector, metrics=metrics)
    if not located:
        return False
    record_audit(
        conn,
        actor=actor,
        action="location.read",
        target=device_id,
        details={"via": via, "metrics": located, **(details or {})},
        address=address,
    )
    return True


def list_audit(
    conn: Conn,
    *,
    scope: Scope,
    own_actor: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    target: str | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    """Entries, newest first, filtered by actor, action, target and [start, end).

    Within `scope`: entries about a device in it (the target, or `details.device_id` for an alarm's entries),
    plus, when `own_actor` is given, that actor's own actions. An entry about no device (an API key, a user) is
    seen only by an all-scope caller or by its actor."""
    if scope.is_everything:
        visible: sql.Composable = sql.SQL("TRUE")
        visible_params: list[object] = []
    else:
        in_scope, scope_params = scope.where(table="d")
        visible = sql.SQL(
            "(a.actor = %s OR EXISTS (SELECT 1 FROM devices d "
            "WHERE d.device_id = coalesce(a.details->>'device_id', a.target) AND {}))"
        ).format(in_scope)
        visible_params = [own_actor, *scope_params]
    rows = conn.execute(
        sql.SQL(
            "SELECT a.id, a.at, a.actor, a.action, a.target, a.details, a.address FROM audit_log a "
            "WHERE (%s::text IS NULL OR a.actor = %s) AND (%s::text IS NULL OR a.action = %s) "
            "AND (%s::text IS NULL OR a.target = %s) AND (%s::timestamptz IS NULL OR a.at >= %s) "
            "AND (%s::timestamptz IS NULL OR a.at < %s) AND {} ORDER BY a.id DESC LIMIT %s"
        ).format(visible),
        [actor, actor, action, action, target, target, start, start, end, end, *visible_params, limit],
    ).fetchall()
    return [
        AuditEntry(id=r[0], at=r[1], actor=r[2], action=r[3], target=r[4], details=r[5], address=r[6]) for r in rows
    ]
