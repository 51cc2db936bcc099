"""Who is calling, for every route but the health probes: `Authorization: Bearer <token>`, a user's access token
(`ioc_a_…`, from `/auth/login`) or a machine's API key (`ioc_k_…`). Roles viewer < operator < admin; the
principal's scope is applied inside each route's queries. An address that sends too many unknown tokens is
refused (429) for a while (api.access.token_limiter)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer, OAuth2PasswordBearer

from api.access.keys import principal_for_key
from api.access.sessions import UnknownToken, principal_for_access_token
from api.access.tokens import ACCESS_PREFIX, digest
from api.principal import Principal, Role
from api.state import AppState, ConnDep, StateDep
from core.errors import Forbidden, TooManyRequests, Unauthenticated
from store.access import token_is_known

_BEARER = HTTPBearer(auto_error=False, description="a user's access token (POST /auth/login) or an API key")
# The same header, declared a second way so that Swagger UI's Authorize button can log in with a username and a
# password (it posts the OAuth2 password form to /auth/token and sends the access token it gets back).
_OAUTH2 = OAuth2PasswordBearer(
    tokenUrl="/auth/token", auto_error=False, description="log in with a username and password"
)


def client_address(request: Request) -> str | None:
    """Where the request came from (the peer's IP address), for the audit log and the rate limits."""
    return request.client.host if request.client else None


def check_unknown_token_limit(state: AppState, address: str | None) -> None:
    """TooManyRequests while `address` has sent too many unknown tokens lately."""
    settings = state.settings
    wait_s = state.token_failures.retry_after_s(
        address or "unknown",
        now=time.monotonic(),
        limit=settings.token_failures_per_address,
        window_s=settings.token_failure_window_s,
    )
    if wait_s is not None:
        raise TooManyRequests(
            f"too many unknown tokens from this address: try again in {max(1.0, wait_s):.0f} s", retry_after_s=wait_s
        )


def count_unknown_token(state: AppState, address: str | None) -> None:
    state.token_failures.record_unknown(address or "unknown", now=time.monotonic())


def authenticate(
    request: Request,
    state: StateDep,
    conn: ConnDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    _password_login: Annotated[str | None, Depends(_OAUTH2)],
) -> Principal:
    """The caller; Unauthenticated (401) without a live token, TooManyRequests (429) for an address that sent too
    many unknown ones."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials.strip():
        raise Unauthenticated("log in first: Authorization: Bearer <token> (POST /auth/login gives one)")
    address = client_address(request)
    check_unknown_token_limit(state, address)
    token = credentials.credentials.strip()
    if token.startswith(ACCESS_PREFIX):
        principal = principal_for_access_token(conn, token, address=address)
    else:  # a key, also one made before keys had a prefix (migration 0004)
        principal = principal_for_key(conn, token, address=address)
    if principal is None:
        known = token_is_known(conn, digest(token))
        conn.commit()
        if not known:
            count_unknown_token(state, address)
            raise UnknownToken("unknown token")
        if token.startswith(ACCESS_PREFIX):
            raise Unauthenticated("access token expired or revoked: renew it with POST /auth/refresh or log in again")
        raise Unauthenticated("API key expired or revoked")
    conn.commit()
    return principal


def require_role(role: Role) -> Callable[..., Principal]:
    def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.may(role):
            raise Forbidden(f"needs role {role}; {principal.actor} is {principal.role}")
        return principal

    return dependency


PrincipalDep = Annotated[Principal, Depends(authenticate)]
OperatorDep = Annotated[Principal, Depends(require_role("operator"))]
AdminDep = Annotated[Principal, Depends(require_role("admin"))]
