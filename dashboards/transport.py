"""Transport: traffic flow at counting stations, their average speed, and where the buses are."""

from __future__ import annotations

from typing import Final

from dashboards.definitions import TRANSPORT, DashboardDefinition, define, new_dashboard, province_variable
from dashboards.measures import AVERAGE_SPEED, LATITUDE, MOTORBIKES, PASSENGERS, VEHICLES
from dashboards.panels import MapLayer, geomap, stat, table, time_series
from dashboards.queries import PROVINCE_FILTER, VEHICLE_POSITIONS, devices_of, per_device_series, reading_aggregates
from dashboards.sql import Sql

UID: Final = "ioc-transport-flow"

# Vehicles counted per time bucket over the chosen provinces' stations, cars/trucks and motorbikes apart.
TRAFFIC_FLOW: Final = f"""
SELECT a.bucket AS "time",
       CASE a.metric WHEN '{MOTORBIKES.metric}' THEN 'xe máy / motorbikes' ELSE 'ô tô / cars and trucks' END AS metric,
       sum(a.total) AS vehicles
FROM {reading_aggregates(devices_of(VEHICLES), f"ARRAY['{VEHICLES.metric}', '{MOTORBIKES.metric}']")}
GROUP BY 1, 2
ORDER BY 1, 2
"""

VEHICLES_IN_RANGE: Final = f"""
SELECT coalesce(sum(r.value), 0) AS vehicles
FROM readings r
JOIN devices d ON d.device_id = r.device_id
WHERE $__timeFilter(r.ts)
  AND r.metric IN ('{VEHICLES.metric}', '{MOTORBIKES.metric}')
  AND d.type_code IN ({VEHICLES.types_sql})
  AND {PROVINCE_FILTER}
"""

VEHICLES_WITH_FIX: Final = f"""
SELECT count(*) AS vehicles
FROM device_latest l
JOIN devices d ON d.device_id = l.device_id
WHERE l.metric = '{LATITUDE.metric}' AND d.status = 'active' AND {PROVINCE_FILTER} AND $__timeFilter(l.ts)
"""

PASSENGERS_ON_BOARD: Final = f"""
SELECT coalesce(sum(l.value), 0) AS passengers
FROM device_latest l
JOIN devices d ON d.device_id = l.device_id
WHERE l.metric = '{PASSENGERS.metric}'
  AND d.type_code IN ({PASSENGERS.types_sql})
  AND d.status = 'active'
  AND {PROVINCE_FILTER}
  AND $__timeFilter(l.ts)
"""


def build() -> DashboardDefinition:
    builder = (
        new_dashboard(
            uid=UID,
            title="Giao thông: lưu lượng và xe buýt / Transport: flow and buses",
            description="Traffic counters and bus trackers",
            tags=["transport"],
        )
        .with_variable(province_variable(multi=True))
        .with_panel(
            stat(
                title="Lượt xe / Vehicles counted",
                target=Sql(VEHICLES_IN_RANGE),
                unit="short",
                base_color="blue",
                description="Vehicles and motorbikes counted in the time range",
                width=8,
            )
        )
        .with_panel(
            stat(
                title="Xe có vị trí / Vehicles with a fix",
                target=Sql(VEHICLES_WITH_FIX),
                unit="short",
                base_color="blue",
                description="Vehicles whose latest position falls in the time range",
                width=8,
            )
        )
        .with_panel(
            stat(
                title="Hành khách / Passengers on board",
                target=Sql(PASSENGERS_ON_BOARD),
                unit="short",
                base_color="blue",
                description="Sum of the buses' latest passenger counts",
                width=8,
            )
        )
        .with_panel(
            time_series(
                title="Lưu lượng / Traffic flow",
                targets=[Sql(TRAFFIC_FLOW)],
                unit="short",
                bars=True,
                stacked=True,
                description="Vehicles counted per time bucket at the chosen provinces' stations",
            )
        )
        .with_panel(
            time_series(
                title="Tốc độ trung bình / Average speed",
                targets=[Sql(per_device_series(AVERAGE_SPEED))],
                unit=AVERAGE_SPEED.unit,
                description="Mean per counting station and time bucket",
            )
        )
        .with_panel(
            geomap(
                title="Vị trí xe buýt / Bus positions",
                targets=[Sql(VEHICLE_POSITIONS)],
                layers=[MapLayer("Xe / Vehicles", "A", "orange")],
                description="Latest position in the time range",
                width=12,
            )
        )
        .with_panel(
            table(
                title="Xe buýt / Buses",
                target=Sql(VEHICLE_POSITIONS),
                description="Latest fix, speed and passengers per vehicle",
                device_links=True,
                width=12,
                height=12,
            )
        )
    )
    return define(builder, folder=TRANSPORT)
