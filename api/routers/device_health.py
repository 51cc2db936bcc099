"""Device health within the caller's scope: per device (online / silent / offline / unknown, last seen) and summed
per province and sector."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.auth import PrincipalDep
from api.errors import error_responses
from api.params import Offset
from api.state import ConnDep
from core.errors import InvalidRequest, NotFound, Unauthenticated
from devices.health import HEALTH_STATES, SummaryGroup, list_health, summarize_health

router = APIRouter(prefix="/device-health", tags=["device health"])


class DeviceHealthPublic(BaseModel):
    device_id: str
    province: str
    sector: str
    type_code: str
    report_interval_s: float
    state: str
    online: bool | None
    status_changed_at: datetime | None
    last_seen: datetime | None


class HealthSummaryPublic(BaseModel):
    province: str
    sector: str
    total: int
    online: int
    silent: int
    offline: int
    unknown: int
    type_code: str = "*"


@router.get("", responses=error_responses(Unauthenticated, InvalidRequest))
def read_health(
    conn: ConnDep,
    principal: PrincipalDep,
    *,
    province: str | None = None,
    sector: str | None = None,
    state: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    offset: Offset = 0,
) -> list[DeviceHealthPublic]:
    """Health of the active devices in the caller's scope, by device id."""
    if state is not None and state not in HEALTH_STATES:
        raise InvalidRequest(f"state must be one of {', '.join(HEALTH_STATES)}")
    rows = list_health(
        conn, scope=principal.scope, province=province, sector=sector, state=state, limit=limit, offset=offset
    )
    return [DeviceHealthPublic.model_validate(h, from_attributes=True) for h in rows]


@router.get("/summary", responses=error_responses(Unauthenticated))
def read_summary(
    conn: ConnDep,
    principal: PrincipalDep,
    *,
    province: Annotated[str | None, Query(max_length=64)] = None,
    sector: Annotated[str | None, Query(max_length=32)] = None,
    by: Annotated[
        list[SummaryGroup] | None, Query(description="group by province, sector and/or type_code (default both)")
    ] = None,
) -> list[HealthSummaryPublic]:
    """Counts of the active devices in the caller's scope in each health state, grouped as asked; a field not grouped
    on is "*"."""
    summary = summarize_health(
        conn, scope=principal.scope, province=province, sector=sector, by=tuple(by or ("province", "sector"))
    )
    return [HealthSummaryPublic.model_validate(s, from_attributes=True) for s in summary]


@router.get("/{device_id}", responses=error_responses(Unauthenticated, NotFound))
def read_device_health(conn: ConnDep, principal: PrincipalDep, device_id: str) -> DeviceHealthPublic:
    rows = list_health(conn, scope=principal.scope, device_id=device_id)
    if not rows:
        raise NotFound(f"unknown or decommissioned device {device_id!r}")
    return DeviceHealthPublic.model_validate(rows[0], from_attributes=True)
