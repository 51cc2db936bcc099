"""The store-and-forward buffer: messages a device could not deliver, kept on disk (SQLite) until the broker
acknowledges them, bounded per device (the oldest are dropped, and counted, when it overflows)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from core.errors import IocError


class OutboxError(IocError):
    """The on-disk buffer cannot be used."""


@dataclass(frozen=True, slots=True)
class BufferedMessage:
    """One buffered message: readings to backfill in a batch, or (a malformed payload) raw bytes sent as is."""

    rowid: int
    seq: int
    ts_ms: int
    readings: Mapping[str, float]
    raw: bytes | None


@dataclass(frozen=True, slots=True)
class Dropped:
    """A message pushed out of a full buffer; `rowid` tells whether it had been sent already."""

    rowid: int
    readings: int
    raw: bool


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    device_id TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    ts_ms     INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    raw       INTEGER NOT NULL,
    body      BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_device ON outbox (device_id, id);
"""


class DiskBuffer:
    """`push` while offline, `peek` after reconnecting, `remove` once acknowledged; `commit` makes it durable."""

    def __init__(self, path: Path, *, max_messages_per_device: int) -> None:
        if max_messages_per_device < 1:
            raise ValueError("max_messages_per_device must be at least 1")
        self.path = path
        self.max_messages = max_messages_per_device
        self._conn: sqlite3.Connection | None = None
        self._counts: dict[str, int] = {}
        self._dirty = False

    def __enter__(self) -> Self:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level="DEFERRED", check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.executescript(_SCHEMA)
            self._counts = dict(conn.execute("SELECT device_id, count(*) FROM outbox GROUP BY device_id").fetchall())
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot open the buffer {self.path}: {exc}") from exc
        self._conn = conn
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._conn is not None:
            self.commit()
            self._conn.close()
            self._conn = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise OutboxError("buffer is not open")
        return self._conn

    def count(self, device_id: str) -> int:
        return self._counts.get(device_id, 0)

    def counts(self) -> Mapping[str, int]:
        return self._counts

    @property
    def total(self) -> int:
        return sum(self._counts.values())

    def push(
        self, device_id: str, *, seq: int, ts_ms: int, readings: Mapping[str, float], raw: bytes | None
    ) -> tuple[int, Dropped | None]:
        """Store one message; returns its row id and the message dropped to make room, if any."""
        dropped: Dropped | None = None
        conn = self.conn
        if self._counts.get(device_id, 0) >= self.max_messages:
            row = conn.execute(
                "SELECT id, n, raw FROM outbox WHERE device_id = ? ORDER BY id LIMIT 1", (device_id,)
            ).fetchone()
            if row is not None:
                conn.execute("DELETE FROM outbox WHERE id = ?", (row[0],))
                self._counts[device_id] -= 1
                dropped = Dropped(rowid=int(row[0]), readings=int(row[1]), raw=bool(row[2]))
        body = raw if raw is not None else json.dumps(dict(readings), separators=(",", ":")).encode()
        cur = conn.execute(
            "INSERT INTO outbox (device_id, seq, ts_ms, n, raw, body) VALUES (?, ?, ?, ?, ?, ?)",
            (device_id, seq, ts_ms, len(readings), 1 if raw is not None else 0, body),
        )
        self._counts[device_id] = self._counts.get(device_id, 0) + 1
        self._dirty = True
        rowid = cur.lastrowid
        if rowid is None:
            raise OutboxError("insert returned no row id")
        return rowid, dropped

    def peek(self, device_id: str, *, after: int, limit: int) -> list[BufferedMessage]:
        """Up to `limit` messages of a device with row id above `after`, oldest first."""
        rows = self.conn.execute(
            "SELECT id, seq, ts_ms, raw, body FROM outbox WHERE device_id = ? AND id > ? ORDER BY id LIMIT ?",
            (device_id, after, limit),
        ).fetchall()
        out = []
        for rowid, seq, ts_ms, raw, body in rows:
            if raw:
                out.append(BufferedMessage(int(rowid), int(seq), int(ts_ms), {}, bytes(body)))
            else:
                out.append(BufferedMessage(int(rowid), int(seq), int(ts_ms), json.loads(body), None))
        return out

    def remove(self, items: Iterable[tuple[str, Sequence[int]]]) -> int:
        """Delete delivered messages given as (device_id, row ids); returns how many were still there."""
        removed = 0
        conn = self.conn
        for device_id, rowids in items:
            if not rowids:
                continue
            marks = ",".join("?" * len(rowids))
            cur = conn.execute(f"DELETE FROM outbox WHERE id IN ({marks})", tuple(rowids))
            self._counts[device_id] = self._counts.get(device_id, 0) - cur.rowcount
            if self._counts[device_id] <= 0:
                self._counts.pop(device_id, None)
            removed += cur.rowcount
            self._dirty = True
        return removed

    def commit(self) -> None:
        if self._dirty and self._conn is not None:
            self._conn.commit()
            self._dirty = False
