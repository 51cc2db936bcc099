"""Machine API keys (the national center, integrations): scoped like users, shown once, stored hashed, expiring.
Admins reach only keys whose scope lies within their own (`within`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from api.access.scopes import check_scope_codes, check_within
from api.access.tokens import KEY_PREFIX, digest, new_secret
from api.principal import ROLES, Principal, Role
from core.errors import Conflict, InvalidRequest, NotFound
from devices.audit import record_audit
from store.access import (
    KeyRecord,
    find_live_api_key,
    insert_api_key,
    list_api_keys,
    province_codes,
    revoke_api_key,
)
from store.pool import Conn
from store.scope import EVERYTHING, Scope

KEY_LIFETIME_MAX: Final = timedelta(days=730)
# Letters, digits and `._-`, starting with a letter or digit: safe in logs, URLs and the audit log.
KEY_NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


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
    conn: Conn,
    *,
    name: str,
    role: str,
    scope: Scope,
    lifetime: timedelta,
    actor: str,
    within: Scope = EVERYTHING,
    address: str | None = None,
) -> NewKey:
    """A new key. InvalidRequest for a bad name, an unknown role, province or sector, or a lifetime outside
    (0, 2 years]; Forbidden for a scope outside `within` (the acting admin's); DuplicateKey for a taken name."""
    if not KEY_NAME_PATTERN.fullmatch(name):
        raise InvalidRequest(
            "a key name has 1 to 64 characters: letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if role not in ROLES:
        raise InvalidRequest(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if not timedelta(0) < lifetime <= KEY_LIFETIME_MAX:
        raise InvalidRequest(f"a key lives more than 0 and at most {KEY_LIFETIME_MAX.days} days")
    check_scope_codes(scope, known_provinces=province_codes(conn))
    check_within(scope, actor_scope=within, actor=actor)
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
    provinces, sectors = record.scope.as_arrays()
    record_audit(
        conn,
        actor=actor,
        action="key.create",
        target=f"key:{name}",
        details={"role": role, "provinces": provinces, "sectors": sectors, "expires_at": record.expires_at},
        address=address,
    )
    return NewKey(record=record, secret=secret)


def revoke_key(
    conn: Conn, *, name: str, actor: str, within: Scope = EVERYTHING, address: str | None = None
) -> KeyRecord:
    """Revoke a key at once: its next request is refused. NotFound for no live key of that name within `within`."""
    record = revoke_api_key(conn, name, within=within)
    if record is None:
        raise NotFound(f"no live API key named {name!r}")
    record_audit(conn, actor=actor, action="key.revoke", target=f"key:{name}", details={}, address=address)
    return record


def list_keys(conn: Conn, *, within: Scope = EVERYTHING) -> list[KeyRecord]:
    return list_api_keys(conn, within=within)


def principal_for_key(conn: Conn, secret: str, *, address: str | None) -> Principal | None:
    """The principal of a live key, or None for an unknown, revoked or expired one."""
    record = find_live_api_key(conn, digest(secret))
    if record is None:
        return None
    role: Role = record.role  # type: ignore[assignment]  # the table's CHECK holds it to ROLES
    return Principal(
        kind="key",
        id=record.key_id,
        name=record.name,
        role=role,
        scope=record.scope,
        address=address,
        expires_at=record.expires_at,
    )
