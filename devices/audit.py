"""The audit log: who changed what in the registry, when. Written in the same transaction as the change."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from store.pool import Conn


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    actor: str
    action: str
    target: str
    details: Mapping[str, object]


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


def record_audit_many(conn: Conn, entries: Sequence[tuple[str, str, str, Mapping[str, object]]]) -> None:
    """Many entries (actor, action, target, details) with one COPY."""
    with conn.cursor() as cur, cur.copy("COPY audit_log (actor, action, target, details) FROM STDIN") as copy:
        for actor, action, target, details in entries:
            copy.write_row((actor, action, target, json.dumps(dict(details), default=str)))


def list_audit(conn: Conn, *, target: str | None = None, limit: int = 100) -> list[AuditEntry]:
    rows = conn.execute(
        "SELECT at, actor, action, target, details FROM audit_log WHERE (%s::text IS NULL OR target = %s) "
        "ORDER BY id DESC LIMIT %s",
        (target, target, limit),
    ).fetchall()
    return [AuditEntry(at=r[0], actor=r[1], action=r[2], target=r[3], details=r[4]) for r in rows]
