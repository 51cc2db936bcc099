"""Who is calling: a person (logged in) or a machine (API key), with a role and a province/sector scope."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from store.scope import Scope

Role = Literal["viewer", "operator", "admin"]
ROLES: Final[tuple[Role, ...]] = ("viewer", "operator", "admin")


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of one request."""

    kind: Literal["user", "key"]
    id: int
    name: str
    role: Role
    scope: Scope
    # Where the request came from (the client address), for the audit log.
    address: str | None = None
    # A user's session (ended by POST /auth/logout); None for a key.
    session_id: int | None = None
    # When the access token (a user) or the key expires.
    expires_at: datetime | None = None

    @property
    def actor(self) -> str:
        """The audit log's actor: `user:alice` or `key:national-center`."""
        return f"{self.kind}:{self.name}"

    def may(self, role: Role) -> bool:
        """True when this principal's role is `role` or above it."""
        return ROLES.index(self.role) >= ROLES.index(role)
