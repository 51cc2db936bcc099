"""Maintenance windows: planned work during which no alarm is raised for a device, a site, a sector or a
province. Within the caller's scope: a window outside it is unknown, and a window may only be created inside it.
Operators create and cancel; every change is audited with the caller's principal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Final

from fastapi import APIRouter, Path, Query, status
from pydantic import BaseModel, Field, model_validator

from api.auth import OperatorDep, PrincipalDep
from api.errors import error_responses
from api.principal import Principal
from api.state import ConnDep
from core.errors import Forbidden, InvalidRequest, NotFound
from devices.audit import record_audit
from devices.catalog import SECTORS, Sector
from store.maintenance import (
    MaintenanceWindow,
    cancel_window,
    create_window,
    device_place,
    get_window,
    list_windows,
)

router = APIRouter(prefix="/maintenance", tags=["maintenance"])

MAX_WINDOW: Final = timedelta(days=31)
MAX_WINDOWS: Final = 5000
WindowId = Annotated[int, Path(ge=1, le=2**63 - 1, description="the window's id")]


class WindowCreate(BaseModel):
    """A window covers one device, the devices of one site (in a province), or a province and/or a sector."""

    device_id: Annotated[str | None, Field(min_length=1, max_length=64)] = None
    site: Annotated[str | None, Field(min_length=1, max_length=200)] = None
    province: Annotated[str | None, Field(min_length=1, max_length=64)] = None
    sector: Sector | None = None
    starts_at: datetime
    ends_at: datetime
    reason: Annotated[str, Field(min_length=1, max_length=2000)]

    @model_validator(mode="after")
    def _check(self) -> WindowCreate:
        if self.starts_at.tzinfo is None or self.ends_at.tzinfo is None:
            raise ValueError("starts_at and ends_at need a time zone (e.g. 2026-12-01T08:00:00+07:00)")
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        if self.ends_at - self.starts_at > MAX_WINDOW:
            raise ValueError(f"a window lasts at most {MAX_WINDOW.days} days")
        if self.device_id is None and self.site is None and self.province is None and self.sector is None:
            raise ValueError("name what the window covers: device_id, site (with province), province or sector")
        if self.device_id is not None and (self.site or self.province or self.sector):
            raise ValueError("a device's window names the device only (its province and sector are the device's)")
        if self.site is not None and self.province is None:
            raise ValueError("a site's window names its province")
        return self


class WindowPublic(BaseModel):
    id: int
    device_id: str | None
    site: str | None
    province: str | None
    sector: str | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime
    cancelled_by: str | None
    cancelled_at: datetime | None
    active: bool = Field(description="covering the present moment (started, not ended, not cancelled)")


def _public(window: MaintenanceWindow, now: datetime) -> WindowPublic:
    active = window.cancelled_at is None and window.starts_at <= now < window.ends_at
    return WindowPublic.model_validate({**window.as_json(), "active": active})


def _inside_scope(principal: Principal, *, province: str | None, sector: str | None) -> None:
    """A window wider than the caller's scope (all provinces from a province-scoped operator) is refused."""
    scope = principal.scope
    if scope.provinces is not None and (province is None or province not in scope.provinces):
        raise Forbidden("the window reaches outside the provinces you may act on")
    if scope.sectors is not None and (sector is None or sector not in scope.sectors):
        raise Forbidden("the window reaches outside the sectors you may act on")


@router.get("")
def read_windows(
    conn: ConnDep,
    principal: PrincipalDep,
    *,
    active: Annotated[bool, Query(description="only those covering the present moment")] = False,
    include_cancelled: bool = False,
    limit: Annotated[int, Query(ge=1, le=MAX_WINDOWS)] = 500,
) -> list[WindowPublic]:
    """Maintenance windows inside the caller's scope, latest start first."""
    now = datetime.now(UTC)
    windows = list_windows(
        conn,
        scope=principal.scope,
        active_at=now if active else None,
        include_cancelled=include_cancelled,
        limit=limit,
    )
    return [_public(w, now) for w in windows]


@router.get("/{window_id}", responses=error_responses(NotFound))
def read_window(conn: ConnDep, principal: PrincipalDep, window_id: WindowId) -> WindowPublic:
    return _public(get_window(conn, window_id, scope=principal.scope), datetime.now(UTC))


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(NotFound, InvalidRequest, Forbidden),
)
def create(conn: ConnDep, principal: OperatorDep, body: WindowCreate) -> WindowPublic:
    """Plan a window: while it lasts no alarm is raised for the devices it covers (readings and anomalies are
    still recorded). A device outside the caller's scope is unknown."""
    if body.device_id is not None:
        place = device_place(conn, body.device_id)
        if place is None or not principal.scope.allows(province=place[0], sector=place[1]):
            raise NotFound(f"no device {body.device_id}")
    else:
        if body.sector is not None and body.sector not in SECTORS:
            raise InvalidRequest(f"unknown sector {body.sector!r}")
        _inside_scope(principal, province=body.province, sector=body.sector)
    window = create_window(
        conn,
        device_id=body.device_id,
        site=body.site,
        province=body.province,
        sector=body.sector,
        starts_at=body.starts_at,
        ends_at=body.ends_at,
        reason=body.reason,
        by=principal.actor,
    )
    record_audit(
        conn,
        actor=principal.actor,
        action="maintenance.create",
        target=f"maintenance:{window.id}",
        details=window.as_json(),
        address=principal.address,
    )
    conn.commit()
    return _public(window, datetime.now(UTC))


@router.post("/{window_id}/cancel", responses=error_responses(NotFound))
def cancel(conn: ConnDep, principal: OperatorDep, window_id: WindowId) -> WindowPublic:
    """End a window now (or call off one that has not begun): alarms are raised again for what it covered."""
    now = datetime.now(UTC)
    window = cancel_window(conn, window_id, by=principal.actor, now=now, scope=principal.scope)
    record_audit(
        conn,
        actor=principal.actor,
        action="maintenance.cancel",
        target=f"maintenance:{window.id}",
        details={"cancelled_at": now.isoformat()},
        address=principal.address,
    )
    conn.commit()
    return _public(window, now)
