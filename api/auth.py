"""Who is calling: operator API tokens (`Authorization: Bearer …`) with roles viewer < operator < admin.

Registry changes need `admin`, commands need `operator`. Health and metrics endpoints stay open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from api.state import ConnDep
from devices.tokens import Operator, find_operator


def require_role(role: str) -> Callable[..., Operator]:
    def dependency(request: Request, conn: ConnDep) -> Operator:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(
                status_code=401,
                detail="needs an operator token: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )
        operator = find_operator(conn, token.strip())
        conn.commit()
        if operator is None:
            raise HTTPException(
                status_code=401, detail="unknown or revoked token", headers={"WWW-Authenticate": "Bearer"}
            )
        if not operator.may(role):
            raise HTTPException(
                status_code=403, detail=f"needs role {role}, token {operator.name!r} is {operator.role}"
            )
        return operator

    return dependency


AdminDep = Annotated[Operator, Depends(require_role("admin"))]
OperatorDep = Annotated[Operator, Depends(require_role("operator"))]
