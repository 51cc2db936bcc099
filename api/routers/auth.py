"""Logging in and out: POST /auth/login (JSON) or /auth/token (the OAuth2 password form, for Swagger's Authorize)
give an access token and a refresh token; /auth/refresh renews both; /auth/logout ends the session; /auth/me says
who the caller is; /auth/password changes the caller's own password."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field, SecretStr

from api.access.passwords import PASSWORD_MAX_CHARS
from api.access.sessions import (
    IssuedTokens,
    SessionPolicy,
    UnknownToken,
    change_own_password,
    log_in,
    log_out,
    refresh_session,
)
from api.auth import PrincipalDep, check_unknown_token_limit, client_address, count_unknown_token
from api.errors import error_responses
from api.principal import Role
from api.state import ConnDep, StateDep
from core.errors import Busy, InvalidRequest, TooManyRequests, Unauthenticated
from store.access import find_user_by_id

router = APIRouter(prefix="/auth", tags=["auth"])

_LOGIN_ERRORS = error_responses(Unauthenticated, InvalidRequest, TooManyRequests, Busy)


class LoginRequest(BaseModel):
    username: str = Field(min_length=1, max_length=64, examples=["alice"])
    password: SecretStr = Field(min_length=1, max_length=PASSWORD_MAX_CHARS)


class RefreshRequest(BaseModel):
    refresh_token: SecretStr = Field(min_length=1, max_length=200, description="from the last login or refresh")


class PasswordChange(BaseModel):
    current_password: SecretStr = Field(min_length=1, max_length=PASSWORD_MAX_CHARS)
    new_password: SecretStr = Field(
        min_length=1, max_length=PASSWORD_MAX_CHARS, description="at least 12 characters, not the username"
    )


class TokenPair(BaseModel):
    """Both tokens, shown only in this response (the center keeps their SHA-256 digests). Send the access token
    as `Authorization: Bearer …`; before it expires, exchange the refresh token at /auth/refresh."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105  # the OAuth2 token type, not a secret
    expires_in: int = Field(description="seconds the access token lives")
    access_expires_at: datetime
    refresh_token: str = Field(description="works once; the session ends at refresh_expires_at")
    refresh_expires_at: datetime


class MePublic(BaseModel):
    kind: Literal["user", "key"]
    name: str
    display_name: str | None = Field(description="a user's; null for a key")
    role: Role
    provinces: list[str] | None = Field(description="null: every province")
    sectors: list[str] | None = Field(description="null: every sector")
    expires_at: datetime | None = Field(description="when the access token (a user) or the key expires")


def _pair(tokens: IssuedTokens) -> TokenPair:
    return TokenPair(
        access_token=tokens.access_token,
        expires_in=max(0, int((tokens.access_expires_at - datetime.now(UTC)).total_seconds())),
        access_expires_at=tokens.access_expires_at,
        refresh_token=tokens.refresh_token,
        refresh_expires_at=tokens.refresh_expires_at,
    )


@router.post("/login", responses=_LOGIN_ERRORS)
def login(body: LoginRequest, request: Request, state: StateDep, conn: ConnDep) -> TokenPair:
    """Log in with a username and password. Too many failures for one username or from one address answer 429
    for a while (`Retry-After`)."""
    tokens = log_in(
        conn,
        username=body.username,
        password=body.password.get_secret_value(),
        address=client_address(request),
        policy=SessionPolicy.from_settings(state.settings),
    )
    return _pair(tokens)


@router.post("/token", responses=_LOGIN_ERRORS)
def login_with_form(
    form: Annotated[OAuth2PasswordRequestForm, Depends()], request: Request, state: StateDep, conn: ConnDep
) -> TokenPair:
    """The same login as the OAuth2 password form (`application/x-www-form-urlencoded`), as Swagger UI's
    Authorize button sends it."""
    if len(form.password) > PASSWORD_MAX_CHARS:
        raise InvalidRequest(f"a password has at most {PASSWORD_MAX_CHARS} characters")
    tokens = log_in(
        conn,
        username=form.username,
        password=form.password,
        address=client_address(request),
        policy=SessionPolicy.from_settings(state.settings),
    )
    return _pair(tokens)


@router.post("/refresh", responses=error_responses(Unauthenticated, InvalidRequest, TooManyRequests))
def refresh(body: RefreshRequest, request: Request, state: StateDep, conn: ConnDep) -> TokenPair:
    """New tokens for the current refresh token; the old ones stop working. A refresh token presented twice
    revokes its session."""
    address = client_address(request)
    check_unknown_token_limit(state, address)
    try:
        tokens = refresh_session(
            conn,
            refresh_token=body.refresh_token.get_secret_value().strip(),
            address=address,
            policy=SessionPolicy.from_settings(state.settings),
        )
    except UnknownToken:
        count_unknown_token(state, address)
        raise
    return _pair(tokens)


@router.post("/logout", status_code=204, responses=error_responses(InvalidRequest, TooManyRequests))
def logout(principal: PrincipalDep, conn: ConnDep) -> None:
    """End the caller's session at once: its access and refresh tokens stop working."""
    log_out(conn, principal=principal)


@router.get("/me", responses=error_responses(TooManyRequests))
def me(principal: PrincipalDep, conn: ConnDep) -> MePublic:
    """Who the caller is: user or key, role and scope."""
    display_name = None
    if principal.kind == "user":
        user = find_user_by_id(conn, principal.id)
        display_name = user.display_name if user is not None else None
    provinces, sectors = principal.scope.as_arrays()
    return MePublic(
        kind=principal.kind,
        name=principal.name,
        display_name=display_name,
        role=principal.role,
        provinces=provinces,
        sectors=sectors,
        expires_at=principal.expires_at,
    )


@router.post("/password", status_code=204, responses=_LOGIN_ERRORS)
def change_password(body: PasswordChange, principal: PrincipalDep, state: StateDep, conn: ConnDep) -> None:
    """Change the caller's own password; every session of theirs, this one too, ends (log in again)."""
    change_own_password(
        conn,
        principal=principal,
        current_password=body.current_password.get_secret_value(),
        new_password=body.new_password.get_secret_value(),
        policy=SessionPolicy.from_settings(state.settings),
    )
