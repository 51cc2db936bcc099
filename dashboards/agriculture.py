"""Agriculture: river and canal water levels, and salinity intrusion in the Mekong delta's fields and ponds."""

from __future__ import annotations

from typing import Final

from dashboards.definitions import AGRICULTURE, DashboardDefinition, define, new_dashboard, province_variable
from dashboards.measures import (
    SALINITY,
    SALINITY_ALARM,
    SALINITY_WARNING,
    WATER_LEVEL,
    WATER_LEVEL_ALARM,
    WATER_LEVEL_WARNING,
)
from dashboards.panels import stat, table, time_series
from dashboards.queries import latest_extreme, latest_table, per_device_series
from dashboards.sql import Sql

UID: Final = "ioc-agriculture-water"


def build() -> DashboardDefinition:
    level_steps = (WATER_LEVEL_WARNING.step, WATER_LEVEL_ALARM.step)
    salinity_steps = (SALINITY_WARNING.step, SALINITY_ALARM.step)
    builder = (
        new_dashboard(
            uid=UID,
            title="Nông nghiệp: mực nước và độ mặn / Agriculture: water level and salinity",
            description="Water level gauges and salinity sensors; lines at the alarm rules' thresholds",
            tags=["agriculture"],
        )
        .with_variable(province_variable(multi=True))
        .with_panel(
            stat(
                title="Mực nước cao nhất / Highest water level",
                target=Sql(latest_extreme(WATER_LEVEL)),
                unit=WATER_LEVEL.unit,
                steps=level_steps,
                decimals=2,
                description="Latest reading of each gauge, the highest of them",
                width=6,
            )
        )
        .with_panel(
            stat(
                title="Độ mặn cao nhất / Highest salinity",
                target=Sql(latest_extreme(SALINITY)),
                unit=SALINITY.unit,
                steps=salinity_steps,
                decimals=2,
                description="Latest reading of each salinity sensor and pond, the highest of them",
                width=6,
            )
        )
        .with_panel(
            table(
                title="Giá trị mới nhất / Latest values",
                target=Sql(latest_table((WATER_LEVEL, SALINITY), order_by=SALINITY)),
                description="Per device: the latest water level and salinity",
                device_links=True,
                width=12,
                height=4,
            )
        )
        .with_panel(
            time_series(
                title="Mực nước / Water level",
                targets=[Sql(per_device_series(WATER_LEVEL))],
                unit=WATER_LEVEL.unit,
                steps=level_steps,
                description="Mean per gauge and time bucket",
            )
        )
        .with_panel(
            time_series(
                title="Độ mặn / Salinity",
                targets=[Sql(per_device_series(SALINITY))],
                unit=SALINITY.unit,
                steps=salinity_steps,
                description="Mean per sensor and time bucket; rice suffers above 1 g/L, most crops above 4 g/L",
            )
        )
    )
    return define(builder, folder=AGRICULTURE)
