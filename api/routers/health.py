"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter

from api.state import ConnDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(conn: ConnDep) -> dict[str, str]:
    conn.execute("SELECT 1")
    return {"status": "ok"}
