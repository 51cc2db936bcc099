"""Machine API keys (admins only): list, create (the secret appears once, in the creating response), revoke. An
admin scoped to some provinces or sectors sees and manages only keys whose scope lies within theirs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from api.access.keys import KEY_LIFETIME_MAX, create_api_key, list_keys, revoke_key
from api.auth import AdminDep
from api.errors import error_responses
from api.principal import Role
from api.state import ConnDep
from core.errors import Conflict, Forbidden, InvalidRequest, NotFound, TooManyRequests
from store.access import KeyRecord
from store.scope import Scope

router = APIRouter(prefix="/keys", tags=["keys"])

KeyName = Annotated[str, Path(min_length=1, max_length=64, description="the key's name")]
ScopeCodes = Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=100)]


class KeyPublic(BaseModel):
    name: str
    role: Role
    provinces: list[str] | None = Field(description="null: every province")
    sectors: list[str] | None = Field(description="null: every sector")
    expires_at: datetime
    created_by: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyWithSecret(KeyPublic):
    secret: str = Field(description="shown only in this response; only a hash is kept")


class KeyCreate(BaseModel):
    name: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", examples=["national-center"]
    )
    role: Role = "viewer"
    provinces: ScopeCodes | None = Field(default=None, description="province codes; null or absent: every one")
    sectors: ScopeCodes | None = Field(default=None, description="sectors; null or absent: every one")
    days: float = Field(default=90, gt=0, le=KEY_LIFETIME_MAX.days, description="days until the key expires")


def _public(key: KeyRecord) -> KeyPublic:
    provinces, sectors = key.scope.as_arrays()
    return KeyPublic(
        name=key.name,
        role=key.role,  # type: ignore[arg-type]  # the table's CHECK holds it to ROLES
        provinces=provinces,
        sectors=sectors,
        expires_at=key.expires_at,
        created_by=key.created_by,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
    )


@router.get("", responses=error_responses(TooManyRequests))
def read_keys(admin: AdminDep, conn: ConnDep) -> list[KeyPublic]:
    """Every key within the caller's scope (revoked and expired ones too), by name; never a secret."""
    return [_public(k) for k in list_keys(conn, within=admin.scope)]


@router.post("", status_code=201, responses=error_responses(Conflict, Forbidden, InvalidRequest, TooManyRequests))
def add_key(body: KeyCreate, admin: AdminDep, conn: ConnDep) -> KeyWithSecret:
    """Create a key whose scope lies within the caller's; its secret is in this response only."""
    key = create_api_key(
        conn,
        name=body.name,
        role=body.role,
        scope=Scope.of(provinces=body.provinces, sectors=body.sectors),
        lifetime=timedelta(days=body.days),
        actor=admin.actor,
        within=admin.scope,
        address=admin.address,
    )
    return KeyWithSecret(**_public(key.record).model_dump(), secret=key.secret)


@router.delete("/{name}", responses=error_responses(NotFound, TooManyRequests))
def delete_key(name: KeyName, admin: AdminDep, conn: ConnDep) -> KeyPublic:
    """Revoke a key within the caller's scope at once (it stays listed, with `revoked_at`)."""
    return _public(revoke_key(conn, name=name, actor=admin.actor, within=admin.scope, address=admin.address))
