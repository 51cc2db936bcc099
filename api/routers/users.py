"""People (admins only): list, create, read, change (display name, role, scope, disabled) and reset passwords. An
admin scoped to some provinces or sectors sees and manages only users whose scope lies within theirs. No response
carries a password hash; a generated password appears once, in the response that made it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field, SecretStr

from api.access.passwords import PASSWORD_MAX_CHARS, generate_password
from api.access.users import (
    DISPLAY_NAME_MAX_CHARS,
    UserChanges,
    create_user,
    get_user,
    list_users,
    set_password,
    update_user,
)
from api.auth import AdminDep
from api.errors import error_responses
from api.principal import Role
from api.state import ConnDep
from core.errors import Conflict, Forbidden, InvalidRequest, NotFound, TooManyRequests
from store.access import UserRecord
from store.scope import Scope

router = APIRouter(prefix="/users", tags=["users"])

Username = Annotated[str, Path(min_length=1, max_length=64, description="the user's name")]
ScopeCodes = Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=100)]


class UserPublic(BaseModel):
    username: str
    display_name: str
    role: Role
    provinces: list[str] | None = Field(description="null: every province")
    sectors: list[str] | None = Field(description="null: every sector")
    disabled: bool
    disabled_at: datetime | None
    password_changed_at: datetime
    created_at: datetime
    updated_at: datetime


class UserWithPassword(UserPublic):
    password: str | None = Field(
        description="the generated password, shown only in this response; null when the caller chose it"
    )


class UserCreate(BaseModel):
    username: str = Field(min_length=1, max_length=64, examples=["alice"])
    display_name: str = Field(default="", max_length=DISPLAY_NAME_MAX_CHARS)
    role: Role = "viewer"
    provinces: ScopeCodes | None = Field(default=None, description="province codes; null or absent: every one")
    sectors: ScopeCodes | None = Field(default=None, description="sectors; null or absent: every one")
    password: SecretStr | None = Field(
        default=None,
        min_length=1,
        max_length=PASSWORD_MAX_CHARS,
        description="at least 12 characters, not the username; absent: one is generated and returned once",
    )


class UserUpdate(BaseModel):
    """Fields to change; an absent field stays as it is, `provinces: null` means every province. A change of role
    or scope, or disabling, ends the user's sessions at once."""

    display_name: str | None = Field(default=None, max_length=DISPLAY_NAME_MAX_CHARS)
    role: Role | None = None
    provinces: ScopeCodes | None = None
    sectors: ScopeCodes | None = None
    disabled: bool | None = None


class PasswordReset(BaseModel):
    password: SecretStr | None = Field(
        default=None,
        min_length=1,
        max_length=PASSWORD_MAX_CHARS,
        description="at least 12 characters, not the username; absent: one is generated and returned once",
    )


def _public(user: UserRecord) -> UserPublic:
    provinces, sectors = user.scope.as_arrays()
    return UserPublic(
        username=user.username,
        display_name=user.display_name,
        role=user.role,  # type: ignore[arg-type]  # the table's CHECK holds it to ROLES
        provinces=provinces,
        sectors=sectors,
        disabled=user.disabled_at is not None,
        disabled_at=user.disabled_at,
        password_changed_at=user.password_changed_at,
        created_at=user.created_at,
        updated_at=user.updated_at,
    )


def _with_password(user: UserRecord, generated: str | None) -> UserWithPassword:
    return UserWithPassword(**_public(user).model_dump(), password=generated)


@router.get("", responses=error_responses(TooManyRequests))
def read_users(admin: AdminDep, conn: ConnDep) -> list[UserPublic]:
    """Every user within the caller's scope (disabled ones too), by username."""
    return [_public(u) for u in list_users(conn, within=admin.scope)]


@router.post("", status_code=201, responses=error_responses(Conflict, Forbidden, InvalidRequest, TooManyRequests))
def add_user(body: UserCreate, admin: AdminDep, conn: ConnDep) -> UserWithPassword:
    """Create a user whose scope lies within the caller's."""
    generated = None if body.password is not None else generate_password()
    password = body.password.get_secret_value() if body.password is not None else generated
    assert password is not None  # chosen or generated
    user = create_user(
        conn,
        username=body.username,
        password=password,
        role=body.role,
        scope=Scope.of(provinces=body.provinces, sectors=body.sectors),
        display_name=body.display_name,
        actor=admin.actor,
        within=admin.scope,
        address=admin.address,
    )
    return _with_password(user, generated)


@router.get("/{username}", responses=error_responses(NotFound, TooManyRequests))
def read_user(username: Username, admin: AdminDep, conn: ConnDep) -> UserPublic:
    return _public(get_user(conn, username=username, within=admin.scope))


@router.patch("/{username}", responses=error_responses(NotFound, Forbidden, InvalidRequest, TooManyRequests))
def change_user(username: Username, body: UserUpdate, admin: AdminDep, conn: ConnDep) -> UserPublic:
    """Change a user within the caller's scope; the new scope must lie within it too."""
    given = body.model_fields_set
    scope = None
    if "provinces" in given or "sectors" in given:
        current = get_user(conn, username=username, within=admin.scope).scope
        scope = Scope.of(
            provinces=body.provinces if "provinces" in given else current.provinces,
            sectors=body.sectors if "sectors" in given else current.sectors,
        )
    changes = UserChanges(display_name=body.display_name, role=body.role, scope=scope, disabled=body.disabled)
    user = update_user(
        conn, username=username, changes=changes, actor=admin.actor, within=admin.scope, address=admin.address
    )
    return _public(user)


@router.post("/{username}/password", responses=error_responses(NotFound, InvalidRequest, TooManyRequests))
def reset_password(username: Username, body: PasswordReset, admin: AdminDep, conn: ConnDep) -> UserWithPassword:
    """Set a user's password (given, or generated and returned once); their sessions end at once."""
    generated = None if body.password is not None else generate_password()
    password = body.password.get_secret_value() if body.password is not None else generated
    assert password is not None  # chosen or generated
    user = set_password(
        conn, username=username, password=password, actor=admin.actor, within=admin.scope, address=admin.address
    )
    return _with_password(user, generated)
