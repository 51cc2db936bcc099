"""The province overview: KPIs, a map of the devices (fixed ones at their province's administrative seat, vehicles
at their latest fix) and the open alarms, for the provinces chosen."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from dashboards.definitions import OPERATIONS, DashboardDefinition, define, new_dashboard, province_variable
from dashboards.measures import LATITUDE, SILENT_AFTER_INTERVALS
from dashboards.panels import MapLayer, Step, geomap, stat, table, time_series
from dashboards.queries import PROVINCE_FILTER, VEHICLE_POSITIONS, province_centers_sql, reading_aggregates
from dashboards.sql import Sql

UID: Final = "ioc-province-overview"

ACTIVE_DEVICES: Final = f"""
SELECT count(*) AS devices
FROM devices d
WHERE d.status = 'active' AND {PROVINCE_FILTER}
"""

# Reporting: a reading received within the last SILENT_AFTER_INTERVALS report intervals (as devices.health).
REPORTING_DEVICES: Final = f"""
SELECT count(*) AS reporting
FROM devices d
JOIN device_types t ON t.code = d.type_code
WHERE d.status = 'active' AND {PROVINCE_FILTER}
  AND EXISTS (
      SELECT 1 FROM device_latest l
      WHERE l.device_id = d.device_id
        AND l.received_at >= now() - make_interval(secs => {SILENT_AFTER_INTERVALS} * coalesce(d.report_interval_s, t.report_interval_s))
  )
"""

# Offline as the devices last said it (retained status or Last Will).
OFFLINE_DEVICES: Final = f"""
SELECT count(*) AS offline
FROM devices d
JOIN device_status s ON s.device_id = d.device_id
WHERE d.status = 'active' AND {PROVINCE_FILTER} AND NOT s.online
"""

OPEN_ALARMS_COUNT: Final = """
SELECT count(*) AS open_alarms
FROM alarms a
WHERE a.status <> 'cleared' AND a.province IN ($province)
"""

READINGS_IN_RANGE: Final = f"""
SELECT count(*) AS readings
FROM readings r
JOIN devices d ON d.device_id = r.device_id
WHERE $__timeFilter(r.ts) AND {PROVINCE_FILTER}
"""

QUARANTINED_IN_RANGE: Final = """
SELECT count(*) AS quarantined
FROM quarantine q
WHERE $__timeFilter(q.received_at) AND q.province IN ($province)
"""

READINGS_BY_SECTOR: Final = f"""
SELECT a.bucket AS "time", s.sector AS metric, sum(a.readings) AS readings
FROM {reading_aggregates(f"ARRAY(SELECT d.device_id FROM devices d WHERE {PROVINCE_FILTER})", "NULL")}
JOIN devices s ON s.device_id = a.device_id
GROUP BY 1, 2
ORDER BY 1, 2
"""

# Most severe first, then oldest first: what an operator should look at next.
OPEN_ALARMS: Final = """
SELECT a.raised_at AS "time", a.severity, a.status, p.name AS province, a.sector, a.device_id,
       a.metric, a.kind, a.message, a.occurrences, a.acknowledged_by, a.province AS province_code
FROM alarms a
LEFT JOIN provinces p ON p.code = a.province
WHERE a.status <> 'cleared' AND a.province IN ($province)
ORDER BY CASE a.severity WHEN 'critical' THEN 0 WHEN 'major' THEN 1 WHEN 'minor' THEN 2 ELSE 3 END, a.raised_at
LIMIT 500
"""


def fixed_devices_by_province(centers: Mapping[str, tuple[float, float]]) -> str:
    """Devices without a position of their own, counted per province and drawn at its administrative seat."""
    return f"""
SELECT p.name AS province, c.lat AS latitude, c.lon AS longitude,
       count(*) AS devices,
       count(*) FILTER (WHERE d.sector = 'agriculture') AS agriculture,
       count(*) FILTER (WHERE d.sector = 'energy') AS energy,
       count(*) FILTER (WHERE d.sector = 'transport') AS transport,
       count(*) FILTER (WHERE d.sector = 'health') AS health,
       count(*) FILTER (WHERE s.online IS FALSE) AS offline,
       (SELECT count(*) FROM alarms a WHERE a.province = d.province AND a.status <> 'cleared') AS open_alarms
FROM devices d
JOIN provinces p ON p.code = d.province
JOIN {province_centers_sql(centers)} ON c.code = d.province
LEFT JOIN device_status s ON s.device_id = d.device_id
WHERE d.status = 'active' AND {PROVINCE_FILTER}
  AND NOT EXISTS (
      SELECT 1 FROM device_latest g WHERE g.device_id = d.device_id AND g.metric = '{LATITUDE.metric}'
  )
GROUP BY d.province, p.name, c.lat, c.lon
ORDER BY p.name
"""


def build(*, province_centers: Mapping[str, tuple[float, float]]) -> DashboardDefinition:
    alarm_steps = (Step(1, "red"),)
    builder = (
        new_dashboard(
            uid=UID,
            title="Tổng quan tỉnh / Province overview",
            description="Devices, readings, quarantine and open alarms of the chosen provinces",
            tags=["overview"],
        )
        .with_variable(province_variable(multi=True))
        .with_panel(
            stat(
                title="Thiết bị / Devices",
                target=Sql(ACTIVE_DEVICES),
                unit="short",
                base_color="blue",
                description="Registered, not decommissioned",
            )
        )
        .with_panel(
            stat(
                title="Đang báo cáo / Reporting",
                target=Sql(REPORTING_DEVICES),
                unit="short",
                description=f"A reading received within {SILENT_AFTER_INTERVALS} report intervals",
            )
        )
        .with_panel(
            stat(
                title="Ngoại tuyến / Offline",
                target=Sql(OFFLINE_DEVICES),
                unit="short",
                steps=(Step(1, "orange"),),
                description="Devices whose last status (or Last Will) said offline",
            )
        )
        .with_panel(
            stat(
                title="Cảnh báo mở / Open alarms",
                target=Sql(OPEN_ALARMS_COUNT),
                unit="short",
                steps=alarm_steps,
                description="Active or acknowledged, not cleared",
            )
        )
        .with_panel(
            stat(
                title="Số đo / Readings",
                target=Sql(READINGS_IN_RANGE),
                unit="short",
                base_color="blue",
                description="Readings taken in the time range",
            )
        )
        .with_panel(
            stat(
                title="Cách ly / Quarantined",
                target=Sql(QUARANTINED_IN_RANGE),
                unit="short",
                steps=(Step(1, "orange"),),
                description="Messages refused and quarantined in the time range (topics naming these provinces)",
            )
        )
        .with_panel(
            geomap(
                title="Bản đồ thiết bị / Device map",
                targets=[
                    Sql(fixed_devices_by_province(province_centers), ref_id="A"),
                    Sql(VEHICLE_POSITIONS, ref_id="B"),
                ],
                layers=[
                    MapLayer("Thiết bị cố định / Fixed devices", "A", "blue", size_field="devices"),
                    MapLayer("Xe / Vehicles", "B", "orange"),
                ],
                description=(
                    "Fixed devices at their province's administrative seat (the registry has no device coordinates "
                    "yet); vehicles at their latest position in the time range"
                ),
                width=12,
                height=14,
            )
        )
        .with_panel(
            table(
                title="Cảnh báo đang mở / Open alarms",
                target=Sql(OPEN_ALARMS),
                description="Most severe first, then oldest; a device id opens its drill-down",
                device_links=True,
                width=12,
                height=14,
            )
        )
        .with_panel(
            time_series(
                title="Số đo theo lĩnh vực / Readings by sector",
                targets=[Sql(READINGS_BY_SECTOR)],
                unit="short",
                description="Readings per time bucket, by the device's sector",
                bars=True,
                stacked=True,
                width=24,
            )
        )
    )
    return define(builder, folder=OPERATIONS)
