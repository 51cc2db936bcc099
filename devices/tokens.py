"""Operator API tokens: random, shown once, kept as SHA-256 (they carry 192 random bits: no stretching needed)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Final

from core.errors import Conflict
from devices.audit import record_audit
from devices.registry import InvalidRegistryValue, RegistryError
from store.pool import Conn

ROLES: Final = ("viewer", "operator", "admin")


class DuplicateToken(RegistryError, Conflict):
    """A token name that is already taken."""


@dataclass(frozen=True, slots=True)
class Operator:
    name: str
    role: str

    def may(self, role: str) -> bool:
        """True when this operator's role is `role` or above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(conn: Conn, *, name: str, role: str, actor: str) -> str:
    if role not in ROLES:
        raise InvalidRegistryValue(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    token = "ioc_" + secrets.token_urlsafe(24)
    row = conn.execute(
        "INSERT INTO api_tokens (name, role, token_hash) VALUES (%s, %s, %s) ON CONFLICT (name) DO NOTHING "
        "RETURNING id",
        (name, role, _digest(token)),
    ).fetchone()
    if row is None:
        raise DuplicateToken(f"a token named {name!r} exists already")
    record_audit(conn, actor=actor, action="token.create", target=name, details={"role": role})
    return token


def revoke_token(conn: Conn, *, name: str, actor: str) -> bool:
    cur = conn.execute("UPDATE api_tokens SET revoked_at = now() WHERE name = %s AND revoked_at IS NULL", (name,))
    if cur.rowcount:
        record_audit(conn, actor=actor, action="token.revoke", target=name, details={})
    return cur.rowcount > 0


def find_operator(conn: Conn, token: str) -> Operator | None:
    row = conn.execute(
        "SELECT name, role FROM api_tokens WHERE token_hash = %s AND revoked_at IS NULL", (_digest(token),)
    ).fetchone()
    return None if row is None else Operator(name=str(row[0]), role=str(row[1]))
