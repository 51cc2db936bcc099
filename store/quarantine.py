"""The quarantine table: every message that could not be stored (or was stored only in part), with its reason, the
readings it refused and (capped) raw bytes; the counts of messages suppressed beyond a device's rate limit; the
admin's list, inspect and purge; retention."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from store.pool import Conn
from store.scope import Scope

PAYLOAD_KEEP_BYTES = 16 * 1024
DETAIL_KEEP_CHARS = 1000
# Refused readings kept one by one per entry (a backfill may refuse thousands alike); `readings_refused` counts all.
REFUSED_READINGS_KEEP = 100
READING_DETAIL_KEEP_CHARS = 300


@dataclass(frozen=True, slots=True)
class QuarantinedReading:
    """One reading refused on its own while the rest of its message was judged: `value` is None for a text value."""

    metric: str
    ts: datetime
    value: float | None
    reason: str
    detail: str

    def as_json(self) -> dict[str, object]:
        return {
            "metric": self.metric,
            "ts": self.ts.isoformat(),
            "value": self.value,
            "reason": self.reason,
            "detail": self.detail[:READING_DETAIL_KEEP_CHARS],
        }

    @classmethod
    def from_json(cls, doc: dict[str, object]) -> QuarantinedReading:
        value = doc.get("value")
        return cls(
            metric=str(doc["metric"]),
            ts=datetime.fromisoformat(str(doc["ts"])),
            value=float(value) if isinstance(value, int | float) else None,
            reason=str(doc["reason"]),
            detail=str(doc.get("detail", "")),
        )


@dataclass(frozen=True, slots=True)
class QuarantinedMessage:
    """A message to quarantine. Refused whole: `readings_stored` 0 and, when its envelope was already bad, no
    `refused_readings`. Stored in part: `readings_stored` > 0 and the readings it refused, each with its reason."""

    topic: str
    device_id: str | None
    reason: str
    detail: str
    payload: bytes
    province: str | None = None
    sector: str | None = None
    readings_stored: int = 0
    refused_readings: tuple[QuarantinedReading, ...] = ()


@dataclass(frozen=True, slots=True)
class SuppressedCount:
    """Messages of one device in one minute that were counted but not stored (beyond its rate limit)."""

    device_key: str
    window_start: datetime
    province: str | None
    sector: str | None
    messages: int
    bytes: int
    last_reason: str


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    id: int
    received_at: datetime
    topic: str
    device_id: str | None
    province: str | None
    sector: str | None
    reason: str
    detail: str
    payload_size: int
    readings_stored: int = 0
    readings_refused: int = 0
    refused_readings: tuple[QuarantinedReading, ...] = ()  # the first REFUSED_READINGS_KEEP of them
    payload: bytes | None = None  # only when one entry is read

    @property
    def partial(self) -> bool:
        """Some of the message's readings were stored: only `refused_readings` were refused."""
        return self.readings_stored > 0


@dataclass(frozen=True, slots=True)
class QuarantineFilter:
    """Which entries an admin means: all of them within `scope`, narrowed by the fields that are set."""

    scope: Scope
    device_id: str | None = None
    # The entry's reason, or the reason of any reading it refused.
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    # True: only messages stored in part; False: only messages refused whole.
    partial: bool | None = None


def insert_quarantined(
    conn: Conn, messages: Sequence[QuarantinedMessage], *, payload_max_bytes: int = PAYLOAD_KEEP_BYTES
) -> int:
    """Store `messages` inside the caller's transaction; the raw payload is kept up to `payload_max_bytes`, the
    refused readings up to REFUSED_READINGS_KEEP (all of them counted)."""
    if not messages:
        return 0
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO quarantine (topic, device_id, reason, detail, payload, payload_size, province, sector, "
            "readings_stored, readings_refused, refused_readings) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    m.topic,
                    m.device_id,
                    m.reason,
                    m.detail[:DETAIL_KEEP_CHARS],
                    m.payload[:payload_max_bytes],
                    len(m.payload),
                    m.province,
                    m.sector,
                    m.readings_stored,
                    len(m.refused_readings),
                    Jsonb([r.as_json() for r in m.refused_readings[:REFUSED_READINGS_KEEP]]),
                )
                for m in messages
            ],
        )
    return len(messages)


def add_suppressed(conn: Conn, counts: Sequence[SuppressedCount]) -> None:
    """Add to the per-device, per-minute counts of suppressed messages (inside the caller's transaction)."""
    if not counts:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO quarantine_suppressed "
            "(device_key, window_start, province, sector, messages, bytes, last_reason) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (device_key, window_start) DO UPDATE SET "
            "messages = quarantine_suppressed.messages + excluded.messages, "
            "bytes = quarantine_suppressed.bytes + excluded.bytes, last_reason = excluded.last_reason",
            [
                (c.device_key, c.window_start, c.province, c.sector, c.messages, c.bytes, c.last_reason)
                for c in sorted(counts, key=lambda c: (c.device_key, c.window_start))  # fixed lock order
            ],
        )


def _where(flt: QuarantineFilter, *, suppressed: bool = False) -> tuple[sql.Composed, list[object]]:
    """The filter as a condition on `quarantine` (or, `suppressed`, on `quarantine_suppressed`) and its values."""
    clause, scope_params = flt.scope.where()
    parts: list[sql.Composable] = [clause]
    params: list[object] = list(scope_params)
    device, time = ("device_key", "window_start") if suppressed else ("device_id", "received_at")
    for column, op, value in (
        (device, "=", flt.device_id),
        (time, ">=", flt.since),
        (time, "<", flt.until),
    ):
        if value is not None:
            parts.append(sql.SQL("{} {} %s").format(sql.Identifier(column), sql.SQL(op)))
            params.append(value)
    if not suppressed:  # suppressed counts keep neither reasons per message nor what was stored
        if flt.reason is not None:
            parts.append(sql.SQL("(reason = %s OR refused_readings @> %s)"))
            params += [flt.reason, Jsonb([{"reason": flt.reason}])]
        if flt.partial is not None:
            parts.append(sql.SQL("readings_stored > 0" if flt.partial else "readings_stored = 0"))
    return sql.SQL(" AND ").join(parts), params


_COLUMNS = sql.SQL(
    "id, received_at, topic, device_id, province, sector, reason, detail, payload_size, "
    "readings_stored, readings_refused, refused_readings"
)


def _entry(row: Sequence[Any], payload: bytes | None = None) -> QuarantineEntry:
    """An entry from a row of `_COLUMNS` (its last column the refused readings as JSON)."""
    entry_id, received_at, topic, device_id, province, sector, reason, detail, size, stored, refused, kept = row
    return QuarantineEntry(
        id=entry_id,
        received_at=received_at,
        topic=topic,
        device_id=device_id,
        province=province,
        sector=sector,
        reason=reason,
        detail=detail,
        payload_size=size,
        readings_stored=stored,
        readings_refused=refused,
        refused_readings=tuple(QuarantinedReading.from_json(doc) for doc in kept),
        payload=payload,
    )


def list_quarantined(conn: Conn, flt: QuarantineFilter, *, limit: int = 100, offset: int = 0) -> list[QuarantineEntry]:
    """Entries newest first, without their payloads."""
    where, params = _where(flt)
    rows = conn.execute(
        sql.SQL("SELECT {} FROM quarantine WHERE {} ORDER BY received_at DESC, id DESC LIMIT %s OFFSET %s").format(
            _COLUMNS, where
        ),
        [*params, limit, offset],
    ).fetchall()
    return [_entry(r) for r in rows]


def get_quarantined(conn: Conn, entry_id: int, *, scope: Scope) -> QuarantineEntry | None:
    """One entry with its payload, or None when it does not exist or lies outside `scope`."""
    where, params = _where(QuarantineFilter(scope=scope))
    row = conn.execute(
        sql.SQL("SELECT {}, payload FROM quarantine WHERE id = %s AND {}").format(_COLUMNS, where),
        [entry_id, *params],
    ).fetchone()
    if row is None:
        return None
    *fields, payload = row
    return _entry(fields, payload=bytes(payload))


def list_suppressed(conn: Conn, flt: QuarantineFilter, *, limit: int = 100) -> list[SuppressedCount]:
    """Suppressed counts, newest minute first (device and time filters apply; reasons are not kept per message)."""
    where, values = _where(flt, suppressed=True)
    rows = conn.execute(
        sql.SQL(
            "SELECT device_key, window_start, province, sector, messages, bytes, last_reason "
            "FROM quarantine_suppressed WHERE {} ORDER BY window_start DESC, device_key LIMIT %s"
        ).format(where),
        [*values, limit],
    ).fetchall()
    return [SuppressedCount(*r) for r in rows]


def purge_quarantined(conn: Conn, flt: QuarantineFilter) -> int:
    """Delete the entries the filter selects (and the suppressed counts of the same devices and time); returns
    how many entries went."""
    where, params = _where(flt)
    deleted = conn.execute(sql.SQL("DELETE FROM quarantine WHERE {}").format(where), params).rowcount
    if flt.reason is None and flt.partial is None:  # suppressed counts keep neither: purged with neither filter
        where, params = _where(flt, suppressed=True)
        conn.execute(sql.SQL("DELETE FROM quarantine_suppressed WHERE {}").format(where), params)
    return max(0, deleted)


def delete_expired(conn: Conn, *, older_than: timedelta) -> int:
    """Retention: drop entries and suppressed counts older than `older_than`; returns the entries dropped."""
    deleted = conn.execute("DELETE FROM quarantine WHERE received_at < now() - %s", (older_than,)).rowcount
    conn.execute("DELETE FROM quarantine_suppressed WHERE window_start < now() - %s", (older_than,))
    return max(0, deleted)
