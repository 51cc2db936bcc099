"""The federation outbox: snapshots waiting for (or done with) delivery to the national center."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from store.pool import Conn


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    id: int
    province: str
    period_start: datetime
    idempotency_key: str
    payload: str
    attempts: int


def enqueue_snapshot(
    conn: Conn, *, province: str, period_start: datetime, idempotency_key: str, payload: dict[str, object]
) -> bool:
    """Keep a snapshot for delivery; False when this province and period already have one."""
    cur = conn.execute(
        "INSERT INTO federation_outbox (province, period_start, idempotency_key, payload) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT DO NOTHING",
        (province, period_start, idempotency_key, json.dumps(payload, default=str)),
    )
    return cur.rowcount > 0


def claim_due_snapshots(conn: Conn, *, lease_s: float, limit: int = 50) -> list[OutboxEntry]:
    """The oldest undelivered snapshots, in order, when the oldest of them is due (so they arrive in order); each
    is leased for `lease_s` seconds so that another sender leaves it alone while this one tries."""
    rows = conn.execute(
        "WITH head AS (SELECT id, next_attempt_at FROM federation_outbox WHERE delivered_at IS NULL "
        "ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED) "
        "UPDATE federation_outbox SET next_attempt_at = now() + make_interval(secs => %s) "
        "WHERE id IN (SELECT id FROM head) AND (SELECT next_attempt_at FROM head ORDER BY id LIMIT 1) <= now() "
        "RETURNING id, province, period_start, idempotency_key, payload::text, attempts",
        (limit, lease_s),
    ).fetchall()
    return sorted((OutboxEntry(*r) for r in rows), key=lambda e: e.id)


def mark_delivered(conn: Conn, entry_id: int) -> None:
    conn.execute(
        "UPDATE federation_outbox SET delivered_at = now(), attempts = attempts + 1, last_error = NULL WHERE id = %s",
        (entry_id,),
    )


def mark_failed(conn: Conn, entry_id: int, *, error: str, retry_in_s: float) -> None:
    conn.execute(
        "UPDATE federation_outbox SET attempts = attempts + 1, last_error = %s, "
        "next_attempt_at = now() + make_interval(secs => %s) WHERE id = %s",
        (error[:500], retry_in_s, entry_id),
    )


def outbox_backlog(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) FROM federation_outbox WHERE delivered_at IS NULL").fetchone()
    return 0 if row is None else int(row[0])
