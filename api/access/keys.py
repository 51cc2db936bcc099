"""Machine API keys (the national center, integrations): scoped like users, shown once, stored hashed, expiring."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from api.access.tokens import KEY_PREFIX, digest, new_secret
from api.principal import ROLES, Principal, Role
from core.errors import Conflict, InvalidRequest, NotFound
from devices.audit import record_audit
from store.access import KeyRecord, find_live_api_key, insert_api_key, list_api_keys, revoke_api_key
from store.pool import Conn
from store.scope import Scope

KEY_LIFETIME_MAX: Final = timedelta(days=730)


class DuplicateKey(Conflict):
    """An API key name that is already taken."""


@dataclass(frozen=True, slots=True)
class NewKey:
    """A created key and its secret: the only time the secret exists outside the caller."""

    record: KeyRecord
    secret: str

    def __repr__(self) -> str:  # never print a secret
        return f"NewKey(record={self.record!r})"


def create_api_key(
    conn: Conn, *, name: str, role: str, scope: Scope, lifetime: timedelta, actor: str, address: str | None = None
) -> NewKey:
    """A new key; InvalidRequest for an unknown role or a lifetime outside (0, 2 years]."""
    if role not in ROLES:
        raise InvalidRequest(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if not timedelta(0) < lifetime <= KEY_LIFETIME_MAX:
        raise InvalidRequest(f"a key lives more than 0 and at most {KEY_LIFETIME_MAX.days} days")
    secret = new_secret(KEY_PREFIX)
    record = insert_api_key(
        conn,
        name=name,
        key_hash=digest(secret),
        role=role,
        scope=scope,
        expires_at=datetime.now(UTC) + lifetime,
        created_by=actor,
    )
    if record is None:
        raise DuplicateKey(f"an API key named {name!r} exists already")
    record_audit(
        conn,
        actor=actor,
        action="key.create",
        target=f"key:{name}",
        details={"role": role, "provinces": record.scope.as_arrays()[0], "sectors": record.scope.as_arrays()[1]},
        address=address,
    )
    return NewKey(record=record, secret=secret)


def revoke_key(conn: Conn, *, name: str, actor: str, address: str | None = None) -> KeyRecord:
    """Revoke a key at once: its next request is refused."""
    record = revoke_api_key(conn, name)
    if record is None:
        raise NotFound(f"no live API key named {name!r}")
    record_audit(conn, actor=actor, action="key.revoke", target=f"key:{name}", details={}, address=address)
    return record


def list_keys(conn: Conn) -> list[KeyRecord]:
    return list_api_keys(conn)


def principal_for_key(conn: Conn, secret: str, *, address: str | None) -> Principal | None:
    """The principal of a live key, or None for an unknown, revoked or expired one."""
    record = find_live_api_key(conn, digest(secret))
    if record is None:
        return None
    role: Role = record.role  # type: ignore[assignment]  # the table's CHECK holds it to ROLES
    return Principal(kind="key", id=record.key_id, name=record.name, role=role, scope=record.scope, address=address)
