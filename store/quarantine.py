"""The quarantine table: every message that could not be stored, with its reason and (capped) raw bytes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from store.pool import Conn

PAYLOAD_KEEP_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class QuarantinedMessage:
    topic: str
    device_id: str | None
    reason: str
    detail: str
    payload: bytes


def insert_quarantined(conn: Conn, messages: Sequence[QuarantinedMessage]) -> int:
    """Store `messages` inside the caller's transaction; the raw payload is kept up to PAYLOAD_KEEP_BYTES."""
    if not messages:
        return 0
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO quarantine (topic, device_id, reason, detail, payload, payload_size) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [
                (
                    m.topic,
                    m.device_id,
                    m.reason,
                    m.detail[:1000],
                    m.payload[:PAYLOAD_KEEP_BYTES],
                    len(m.payload),
                )
                for m in messages
            ],
        )
    return len(messages)
