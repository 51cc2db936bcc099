"""Health: the vaccine cold chain (2-8 °C), fridge doors and mains power."""

from __future__ import annotations

from typing import Final

from dashboards.definitions import HEALTH, DashboardDefinition, define, new_dashboard, province_variable
from dashboards.measures import (
    COLD_CHAIN_HIGH,
    COLD_CHAIN_LOW,
    FRIDGE_BATTERY,
    FRIDGE_DOOR,
    FRIDGE_MAINS,
    FRIDGE_TEMPERATURE,
)
from dashboards.panels import Step, stat, table, time_series
from dashboards.queries import PROVINCE_FILTER, latest_table, per_device_series
from dashboards.sql import Sql

UID: Final = "ioc-health-cold-chain"

LOW_C: Final = COLD_CHAIN_LOW.step.value
HIGH_C: Final = COLD_CHAIN_HIGH.step.value

FRIDGES_OUT_OF_RANGE: Final = f"""
SELECT count(*) FILTER (WHERE l.value < {LOW_C} OR l.value > {HIGH_C}) AS fridges
FROM device_latest l
JOIN devices d ON d.device_id = l.device_id
WHERE l.metric = '{FRIDGE_TEMPERATURE.metric}'
  AND d.type_code IN ({FRIDGE_TEMPERATURE.types_sql})
  AND d.status = 'active'
  AND {PROVINCE_FILTER}
"""

# Share of readings in the time range outside 2-8 °C: the cold chain's excursion rate.
EXCURSION_SHARE: Final = f"""
SELECT coalesce(avg(CASE WHEN r.value < {LOW_C} OR r.value > {HIGH_C} THEN 1.0 ELSE 0.0 END), 0) AS excursion
FROM readings r
JOIN devices d ON d.device_id = r.device_id
WHERE $__timeFilter(r.ts)
  AND r.metric = '{FRIDGE_TEMPERATURE.metric}'
  AND d.type_code IN ({FRIDGE_TEMPERATURE.types_sql})
  AND {PROVINCE_FILTER}
"""

DOORS_OPEN: Final = f"""
SELECT count(*) FILTER (WHERE l.value > 0.5) AS doors_open
FROM device_latest l
JOIN devices d ON d.device_id = l.device_id
WHERE l.metric = '{FRIDGE_DOOR.metric}'
  AND d.type_code IN ({FRIDGE_DOOR.types_sql})
  AND d.status = 'active'
  AND {PROVINCE_FILTER}
"""


def build() -> DashboardDefinition:
    band = (Step(LOW_C, "green"), Step(HIGH_C, "red"))
    builder = (
        new_dashboard(
            uid=UID,
            title="Y tế: chuỗi lạnh vắc-xin / Health: vaccine cold chain",
            description=f"Vaccine fridges: temperature against the {LOW_C:g}-{HIGH_C:g} °C band, doors, mains power",
            tags=["health"],
        )
        .with_variable(province_variable(multi=True))
        .with_panel(
            stat(
                title="Tủ ngoài 2-8 °C / Fridges outside 2-8 °C",
                target=Sql(FRIDGES_OUT_OF_RANGE),
                unit="short",
                steps=(Step(1, "red"),),
                description="Fridges whose latest temperature is outside the band",
                width=8,
            )
        )
        .with_panel(
            stat(
                title="Tỷ lệ vượt ngưỡng / Excursion share",
                target=Sql(EXCURSION_SHARE),
                unit="percentunit",
                steps=(Step(0.01, "orange"), Step(0.05, "red")),
                decimals=1,
                description="Share of temperature readings in the time range outside the band",
                width=8,
            )
        )
        .with_panel(
            stat(
                title="Cửa đang mở / Doors open",
                target=Sql(DOORS_OPEN),
                unit="short",
                steps=(Step(1, "orange"),),
                description="Fridges whose latest report says the door is open",
                width=8,
            )
        )
        .with_panel(
            time_series(
                title="Nhiệt độ tủ vắc-xin / Vaccine fridge temperature",
                targets=[Sql(per_device_series(FRIDGE_TEMPERATURE))],
                unit=FRIDGE_TEMPERATURE.unit,
                steps=band,
                base_color="blue",
                description="Mean per fridge and time bucket; blue below 2 °C, red from 8 °C",
                width=24,
            )
        )
        .with_panel(
            table(
                title="Tủ vắc-xin / Vaccine fridges",
                target=Sql(
                    latest_table(
                        (FRIDGE_TEMPERATURE, FRIDGE_DOOR, FRIDGE_MAINS, FRIDGE_BATTERY), order_by=FRIDGE_TEMPERATURE
                    )
                ),
                description="Per fridge: latest temperature, door, mains and battery, warmest first",
                device_links=True,
                width=24,
            )
        )
    )
    return define(builder, folder=HEALTH)
