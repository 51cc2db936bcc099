"""The API's principals in the database: API keys (and, beside them, users and sessions); hashes only."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from store.pool import Conn
from store.scope import Scope


@dataclass(frozen=True, slots=True)
class KeyRecord:
    key_id: int
    name: str
    role: str
    scope: Scope
    expires_at: datetime
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


_KEY_COLUMNS = "key_id, name, role, provinces, sectors, expires_at, created_by, created_at, last_used_at, revoked_at"


def _key(row: tuple[object, ...]) -> KeyRecord:
    key_id, name, role, provinces, sectors, expires_at, created_by, created_at, last_used_at, revoked_at = row
    return KeyRecord(
        key_id=int(key_id),  # type: ignore[call-overload]
        name=str(name),
        role=str(role),
        scope=Scope.of(provinces=provinces, sectors=sectors),  # type: ignore[arg-type]
        expires_at=expires_at,  # type: ignore[arg-type]
        created_by=str(created_by),
        created_at=created_at,  # type: ignore[arg-type]
        last_used_at=last_used_at,  # type: ignore[arg-type]
        revoked_at=revoked_at,  # type: ignore[arg-type]
    )


def insert_api_key(
    conn: Conn, *, name: str, key_hash: str, role: str, scope: Scope, expires_at: datetime, created_by: str
) -> KeyRecord | None:
    """The new key, or None when the name is taken."""
    provinces, sectors = scope.as_arrays()
    row = conn.execute(
        "INSERT INTO api_keys (name, key_hash, role, provinces, sectors, expires_at, created_by) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (name) DO NOTHING RETURNING " + _KEY_COLUMNS,
        (name, key_hash, role, provinces, sectors, expires_at, created_by),
    ).fetchone()
    return None if row is None else _key(row)


def find_live_api_key(conn: Conn, key_hash: str) -> KeyRecord | None:
    """The key with this hash if it is neither revoked nor expired; marks it used."""
    row = conn.execute(
        "UPDATE api_keys SET last_used_at = now() WHERE key_hash = %s AND revoked_at IS NULL AND expires_at > now() "
        "RETURNING " + _KEY_COLUMNS,
        (key_hash,),
    ).fetchone()
    return None if row is None else _key(row)


def list_api_keys(conn: Conn) -> list[KeyRecord]:
    return [_key(r) for r in conn.execute("SELECT " + _KEY_COLUMNS + " FROM api_keys ORDER BY name").fetchall()]


def revoke_api_key(conn: Conn, name: str) -> KeyRecord | None:
    """The revoked key, or None when there is no live key of that name."""
    row = conn.execute(
        "UPDATE api_keys SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL RETURNING " + _KEY_COLUMNS,
        (name,),
    ).fetchone()
    return None if row is None else _key(row)
