"""The catalog as the shared data dictionary: device types with their metrics, units (UCUM) and physical ranges,
provinces with their Vietnamese names and codes, and the sectors. The same codes appear in topics, payloads, the
registry and the national center's summaries."""

from __future__ import annotations

from typing import Annotated, Final, Literal, get_args

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from api.auth import PrincipalDep
from api.errors import error_responses
from api.state import StateDep
from core.errors import NotFound
from devices.catalog import Sector
from devices.provinces import load_provinces

router = APIRouter(prefix="/catalog", tags=["catalog"])

SECTORS: Final[tuple[str, ...]] = get_args(Sector)


class MetricPublic(BaseModel):
    name: str = Field(description="the key of the reading in a telemetry payload")
    unit: str = Field(description="UCUM unit code")
    description: str
    min: float = Field(description="lowest physically possible value; readings outside the range are flagged")
    max: float
    group: str | None = Field(default=None, description="metrics that belong together (e.g. a position)")


class RulePublic(BaseModel):
    kind: str
    metric: str | None
    value: float | None
    duration_s: float
    severity: str
    message: str


class DeviceTypePublic(BaseModel):
    code: str
    name: str
    name_vi: str | None = Field(description="the Vietnamese name")
    sector: str
    description: str
    report_interval_s: float = Field(description="how often a device of this type reports by default")
    metrics: list[MetricPublic]
    rules: list[RulePublic] = Field(description="the alarm rules every device of this type gets")


class ProvincePublic(BaseModel):
    code: str = Field(description="the code used in topics and the registry, e.g. can-tho")
    name: str = Field(description="Vietnamese name, e.g. Cần Thơ")
    name_ascii: str
    kind: Literal["province", "city"]
    admin_code: str | None = Field(description="code in the national list of administrative units")
    merged_from: list[str] = Field(description="the provinces merged into this one on 1 July 2025")
    center: tuple[float, float] | None = Field(description="latitude, longitude of the administrative seat (WGS 84)")


def _device_type(state: StateDep, code: str) -> DeviceTypePublic:
    dtype = state.catalog.get(code)
    if dtype is None:
        known = ", ".join(t.code for t in state.catalog)
        raise NotFound(f"no device type {code!r}; known: {known}")
    return DeviceTypePublic(
        code=dtype.code,
        name=dtype.name,
        name_vi=dtype.name_vi,
        sector=dtype.sector,
        description=dtype.description,
        report_interval_s=dtype.report_interval_s,
        metrics=[
            MetricPublic(name=m.name, unit=m.unit, description=m.description, min=m.min, max=m.max, group=m.group)
            for m in dtype.metrics
        ],
        rules=[
            RulePublic(
                kind=r.kind,
                metric=r.metric,
                value=r.value,
                duration_s=r.duration_s,
                severity=r.severity,
                message=r.message,
            )
            for r in dtype.rules
        ],
    )


@router.get("/device-types")
def read_device_types(principal: PrincipalDep, state: StateDep) -> list[DeviceTypePublic]:
    """Every device type, in catalog order."""
    return [_device_type(state, t.code) for t in state.catalog]


@router.get("/device-types/{code}", responses=error_responses(NotFound))
def read_device_type(
    principal: PrincipalDep, state: StateDep, code: Annotated[str, Path(max_length=64)]
) -> DeviceTypePublic:
    return _device_type(state, code)


@router.get("/provinces")
def read_provinces(principal: PrincipalDep) -> list[ProvincePublic]:
    """The 34 provinces and centrally governed cities in force since 1 July 2025."""
    return [
        ProvincePublic(
            code=p.code,
            name=p.name,
            name_ascii=p.name_ascii,
            kind=p.kind,
            admin_code=p.admin_code,
            merged_from=list(p.merged_from),
            center=p.center,
        )
        for p in load_provinces().values()
    ]


@router.get("/sectors")
def read_sectors(principal: PrincipalDep) -> list[str]:
    return list(SECTORS)
