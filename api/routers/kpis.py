"""Cross-device views for an operations screen: KPIs per province and sector, every device's latest values, and
totals of one metric across devices. All within the caller's scope."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from api.auth import PrincipalDep
from api.errors import error_responses
from api.federation.summary import READING_RATE_WINDOW_S, DeviceCounts, OpenAlarms, device_counts, open_alarms
from api.json_rows import json_rows
from api.state import ConnDep, StateDep
from core.errors import InvalidRequest
from devices.health import summarize_health
from store.kpi import LATEST_FIELDS, count_open_alarms, latest_totals, latest_values, reading_rates

router = APIRouter(tags=["kpis"])


class SectorKpi(BaseModel):
    province: str
    sector: str
    devices: DeviceCounts
    open_alarms: OpenAlarms
    readings_per_minute: float = Field(description=f"readings received over the last {READING_RATE_WINDOW_S:.0f} s")


class LatestPublic(BaseModel):
    device_id: str
    province: str
    sector: str
    type_code: str
    metric: str
    ts: datetime
    value: float
    quality: int


class TotalPublic(BaseModel):
    province: str
    sector: str
    type_code: str
    metric: str
    devices: int = Field(description="devices with a value of the metric")
    total: float = Field(description="sum of each device's newest value")
    mean: float
    minimum: float
    maximum: float
    newest: datetime = Field(description="time of the newest value counted")


def _check_metric(state: StateDep, metric: str | None) -> None:
    if metric is not None and all(t.metric(metric) is None for t in state.catalog):
        raise InvalidRequest(f"no device type measures {metric!r}; see /catalog/device-types")


@router.get("/kpis", responses=error_responses(InvalidRequest))
def read_kpis(
    principal: PrincipalDep, conn: ConnDep, province: Annotated[str | None, Query(max_length=64)] = None
) -> list[SectorKpi]:
    """Per province and sector: devices by health, open alarms by severity, readings per minute."""
    health = {(h.province, h.sector): h for h in summarize_health(conn, scope=principal.scope, province=province)}
    alarms = {(a.province, a.sector): a for a in count_open_alarms(conn, scope=principal.scope, province=province)}
    rates = {
        (r.province, r.sector): r.per_minute
        for r in reading_rates(conn, scope=principal.scope, window_s=READING_RATE_WINDOW_S, province=province)
    }
    rows = []
    for key in sorted(set(health) | set(alarms) | set(rates)):
        rows.append(
            SectorKpi(
                province=key[0],
                sector=key[1],
                devices=device_counts(health.get(key)),
                open_alarms=open_alarms(alarms.get(key)),
                readings_per_minute=round(rates.get(key, 0.0), 2),
            )
        )
    return rows


@router.get("/latest", response_model=list[LatestPublic], responses=error_responses(InvalidRequest))
def read_latest(
    *,
    principal: PrincipalDep,
    conn: ConnDep,
    state: StateDep,
    province: Annotated[str | None, Query(max_length=64)] = None,
    sector: Annotated[str | None, Query(max_length=32)] = None,
    type_code: Annotated[str | None, Query(alias="type", max_length=64)] = None,
    metric: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=50_000)] = 10_000,
) -> Response:
    """The newest value of each metric of each active device (by device id, then metric)."""
    _check_metric(state, metric)
    rows = latest_values(
        conn,
        scope=principal.scope,
        province=province,
        sector=sector,
        type_code=type_code,
        metric=metric,
        limit=limit,
    )
    return json_rows(LATEST_FIELDS, rows)


@router.get("/totals", responses=error_responses(InvalidRequest))
def read_totals(
    *,
    principal: PrincipalDep,
    conn: ConnDep,
    state: StateDep,
    metric: Annotated[str, Query(max_length=64)],
    province: Annotated[str | None, Query(max_length=64)] = None,
    sector: Annotated[str | None, Query(max_length=32)] = None,
    type_code: Annotated[str | None, Query(alias="type", max_length=64)] = None,
) -> list[TotalPublic]:
    """One metric across devices, from each device's newest value: sum, mean, min, max per province, sector and type
    (e.g. `?metric=active_power&province=can-tho`, `?metric=water_level&type=water_level_gauge`)."""
    _check_metric(state, metric)
    return [
        TotalPublic(
            province=t.province,
            sector=t.sector,
            type_code=t.type_code,
            metric=t.metric,
            devices=t.devices,
            total=t.total,
            mean=t.mean,
            minimum=t.minimum,
            maximum=t.maximum,
            newest=t.newest,
        )
        for t in latest_totals(
            conn, scope=principal.scope, metric=metric, province=province, sector=sector, type_code=type_code
        )
    ]
