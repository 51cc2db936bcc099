"""For the national center: a province's KPI snapshot in a versioned schema, and that schema."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.auth import PrincipalDep
from api.errors import error_responses
from api.federation.summary import ProvinceSummary, build_summary
from api.state import ConnDep
from core.errors import NotFound
from devices.provinces import load_provinces

router = APIRouter(prefix="/federation", tags=["federation"])


@router.get("/summary", responses=error_responses(NotFound))
def read_summary(
    principal: PrincipalDep, conn: ConnDep, province: Annotated[str, Query(max_length=64)]
) -> ProvinceSummary:
    """The province's devices by health, open alarms by severity and reading rates, per sector and in total."""
    if province not in load_provinces() or (
        principal.scope.provinces is not None and province not in principal.scope.provinces
    ):
        raise NotFound(f"no province {province!r} in your scope")
    return build_summary(conn, province=province, scope=principal.scope)


@router.get("/schema")
def read_schema(principal: PrincipalDep) -> dict[str, Any]:
    """The JSON Schema of the summary document (`kind` ioc.federation.summary, `schema_version` 1.0)."""
    return ProvinceSummary.model_json_schema()
