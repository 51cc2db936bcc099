"""The province summary the national center receives (`GET /federation/summary`, and the push job's payload).

The document is versioned (`kind` and `schema_version`): fields are added, never renamed or removed, within a major version. Codes
(province, sector, severity) are the catalog's, published at `/catalog/*` as the shared data dictionary.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, Literal

from pydantic import BaseModel, Field

from devices.health import HealthSummary, summarize_health
from devices.provinces import load_provinces
from store.kpi import AlarmCounts, count_open_alarms, reading_rates
from store.pool import Conn
from store.scope import Scope

KIND: Final = "ioc.federation.summary"
SCHEMA_VERSION: Final = "1.0"
READING_RATE_WINDOW_S: Final = 600.0


class DeviceCounts(BaseModel):
    total: int = Field(description="active (not decommissioned) devices")
    online: int
    silent: int = Field(description="no report for 3 report intervals")
    offline: int = Field(description="said offline (Last Will or status)")
    unknown: int = Field(description="never reported")


class OpenAlarms(BaseModel):
    critical: int
    major: int
    minor: int
    warning: int
    unacknowledged: int = Field(description="open alarms nobody has acknowledged yet")


class SectorSummary(BaseModel):
    sector: Literal["agriculture", "energy", "transport", "health"]
    devices: DeviceCounts
    open_alarms: OpenAlarms
    readings_per_minute: float = Field(description=f"readings received over the last {READING_RATE_WINDOW_S:.0f} s")


class ProvinceSummary(BaseModel):
    """One province's snapshot for the national center."""

    kind: Literal["ioc.federation.summary"] = Field(default=KIND, description="what this document is")
    schema_version: Literal["1.0"] = Field(
        default=SCHEMA_VERSION, description="fields are only added within a major version"
    )
    province: str = Field(description="catalog code, e.g. can-tho")
    province_name: str = Field(description="Vietnamese name")
    admin_code: str | None = Field(description="national administrative unit code")
    generated_at: datetime
    sectors: list[SectorSummary]
    devices: DeviceCounts = Field(description="all sectors together")
    open_alarms: OpenAlarms


def device_counts(health: HealthSummary | None) -> DeviceCounts:
    """A health summary row as the published counts (all zero for none)."""
    if health is None:
        return DeviceCounts(total=0, online=0, silent=0, offline=0, unknown=0)
    return DeviceCounts(
        total=health.total,
        online=health.online,
        silent=health.silent,
        offline=health.offline,
        unknown=health.unknown,
    )


def open_alarms(alarms: AlarmCounts | None) -> OpenAlarms:
    """An alarm count row as the published counts (all zero for none)."""
    if alarms is None:
        return OpenAlarms(critical=0, major=0, minor=0, warning=0, unacknowledged=0)
    return OpenAlarms(
        critical=alarms.critical,
        major=alarms.major,
        minor=alarms.minor,
        warning=alarms.warning,
        unacknowledged=alarms.unacknowledged,
    )


def build_summary(conn: Conn, *, province: str, scope: Scope, now: datetime | None = None) -> ProvinceSummary:
    """The snapshot of `province` as seen within `scope` (a caller outside it gets an empty province)."""
    info = load_provinces()[province]
    health = {h.sector: h for h in summarize_health(conn, scope=scope, province=province)}
    alarms = {a.sector: a for a in count_open_alarms(conn, scope=scope, province=province)}
    rates = {
        r.sector: r.per_minute
        for r in reading_rates(conn, scope=scope, window_s=READING_RATE_WINDOW_S, province=province)
    }
    sectors = []
    for sector in ("agriculture", "energy", "transport", "health"):
        h, a = health.get(sector), alarms.get(sector)
        sectors.append(
            SectorSummary(
                sector=sector,
                devices=device_counts(h),
                open_alarms=open_alarms(a),
                readings_per_minute=round(rates.get(sector, 0.0), 2),
            )
        )
    return ProvinceSummary(
        province=province,
        province_name=info.name,
        admin_code=info.admin_code,
        generated_at=now or datetime.now(UTC),
        sectors=sectors,
        devices=DeviceCounts(**{k: sum(getattr(s.devices, k) for s in sectors) for k in DeviceCounts.model_fields}),
        open_alarms=OpenAlarms(**{k: sum(getattr(s.open_alarms, k) for s in sectors) for k in OpenAlarms.model_fields}),
    )
