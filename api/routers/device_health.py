"""Device health: per device (online / silent / offline / unknown, last seen) and summed per province and sector."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.errors import error_responses
from api.state import ConnDep
from core.errors import InvalidRequest, NotFound
from devices.health import HEALTH_STATES, list_health, summarize_health

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


@router.get("", responses=error_responses(InvalidRequest))
def read_health(
    conn: ConnDep,
    *,
    province: str | None = None,
    sector: str | None = None,
    state: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[DeviceHealthPublic]:
    if state is not None and state not in HEALTH_STATES:
        raise InvalidRequest(f"state must be one of {', '.join(HEALTH_STATES)}")
    rows = list_health(conn, province=province, sector=sector, state=state, limit=limit, offset=offset)
    return [DeviceHealthPublic.model_validate(h, from_attributes=True) for h in rows]


@router.get("/summary")
def read_summary(conn: ConnDep, province: str | None = None) -> list[HealthSummaryPublic]:
    return [
        HealthSummaryPublic.model_validate(s, from_attributes=True) for s in summarize_health(conn, province=province)
    ]


@router.get("/{device_id}", responses=error_responses(NotFound))
def read_device_health(conn: ConnDep, device_id: str) -> DeviceHealthPublic:
    rows = list_health(conn, device_id=device_id)
    if not rows:
        raise NotFound(f"unknown or decommissioned device {device_id!r}")
    return DeviceHealthPublic.model_validate(rows[0], from_attributes=True)
