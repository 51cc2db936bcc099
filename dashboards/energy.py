"""Energy: distribution transformer load and the metered load of the grid."""

from __future__ import annotations

from typing import Final

from dashboards.definitions import ENERGY, DashboardDefinition, define, new_dashboard, province_variable
from dashboards.measures import (
    ACTIVE_POWER,
    METER_OVERVOLTAGE,
    METER_UNDERVOLTAGE,
    METER_VOLTAGE,
    OIL_TEMPERATURE,
    TRANSFORMER_LOAD,
    TRANSFORMER_OVERLOAD,
)
from dashboards.panels import Step, stat, table, time_series
from dashboards.queries import PROVINCE_FILTER, fleet_total_series, latest_extreme, latest_table, per_device_series
from dashboards.sql import Sql

UID: Final = "ioc-energy-load"

# Meters whose latest voltage is outside the band the alarm rules allow.
METERS_OUT_OF_BAND: Final = f"""
SELECT count(*) FILTER (
           WHERE l.value < {METER_UNDERVOLTAGE.step.value} OR l.value > {METER_OVERVOLTAGE.step.value}
       ) AS meters
FROM device_latest l
JOIN devices d ON d.device_id = l.device_id
WHERE l.metric = '{METER_VOLTAGE.metric}'
  AND d.type_code IN ({METER_VOLTAGE.types_sql})
  AND d.status = 'active'
  AND {PROVINCE_FILTER}
"""


def build() -> DashboardDefinition:
    load_steps = (Step(80.0, "orange"), TRANSFORMER_OVERLOAD.step)
    builder = (
        new_dashboard(
            uid=UID,
            title="Năng lượng: phụ tải / Energy: load",
            description="Transformer load and the total load measured by smart meters",
            tags=["energy"],
        )
        .with_variable(province_variable(multi=True))
        .with_panel(
            stat(
                title="Tải MBA cao nhất / Highest transformer load",
                target=Sql(latest_extreme(TRANSFORMER_LOAD)),
                unit=TRANSFORMER_LOAD.unit,
                steps=load_steps,
                decimals=1,
                description="Latest load of each transformer, the highest of them (overload alarm above 110 %)",
                width=6,
            )
        )
        .with_panel(
            stat(
                title="Công tơ lệch điện áp / Meters out of voltage band",
                target=Sql(METERS_OUT_OF_BAND),
                unit="short",
                steps=(Step(1, "orange"),),
                description=(
                    f"Latest voltage below {METER_UNDERVOLTAGE.step.value:g} V or above "
                    f"{METER_OVERVOLTAGE.step.value:g} V"
                ),
                width=6,
            )
        )
        .with_panel(
            table(
                title="Máy biến áp / Transformers",
                target=Sql(latest_table((TRANSFORMER_LOAD, OIL_TEMPERATURE), order_by=TRANSFORMER_LOAD)),
                description="Per transformer: latest load and oil temperature, most loaded first",
                device_links=True,
                width=12,
                height=4,
            )
        )
        .with_panel(
            time_series(
                title="Tải máy biến áp / Transformer load",
                targets=[Sql(per_device_series(TRANSFORMER_LOAD))],
                unit=TRANSFORMER_LOAD.unit,
                steps=load_steps,
                description="Mean load per transformer and time bucket",
            )
        )
        .with_panel(
            time_series(
                title="Tổng công suất đo đếm / Total metered load",
                targets=[Sql(fleet_total_series(ACTIVE_POWER, label="total"))],
                unit=ACTIVE_POWER.unit,
                description="Sum over smart meters of each meter's mean active power in the bucket",
            )
        )
    )
    return define(builder, folder=ENERGY)
