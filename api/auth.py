"""Who is calling, for every route but the health probes: `Authorization: Bearer <token>`, a user's access token
(`ioc_a_…`, from `/auth/login`) or a machine's API key (`ioc_k_…`). Roles viewer < operator < admin; the
principal's scope is applied inside each route's queries."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.access.keys import principal_for_key
from api.principal import Principal, Role
from api.state import ConnDep

_BEARER = HTTPBearer(auto_error=False, description="a user's access token (POST /auth/login) or an API key")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _address(request: Request) -> str | None:
    return request.client.host if request.client else None


def authenticate(
    request: Request,
    conn: ConnDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
) -> Principal:
    """The caller, or 401."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise HTTPException(status_code=401, detail="log in first: Authorization: Bearer <token>", headers=_CHALLENGE)
    principal = principal_for_key(conn, credentials.credentials.strip(), address=_address(request))
    conn.commit()
    if principal is None:
        raise HTTPException(status_code=401, detail="unknown, expired or revoked token", headers=_CHALLENGE)
    return principal


def require_role(role: Role) -> Callable[..., Principal]:
    def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if not principal.may(role):
            raise HTTPException(status_code=403, detail=f"needs role {role}; {principal.actor} is {principal.role}")
        return principal

    return dependency


PrincipalDep = Annotated[Principal, Depends(authenticate)]
OperatorDep = Annotated[Principal, Depends(require_role("operator"))]
AdminDep = Annotated[Principal, Depends(require_role("admin"))]
