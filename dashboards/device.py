"""Device drill-down: choose a province, one of its devices, then any of the metrics it reports; its series, latest
values, registry entry and health, alarms and the messages of it that were quarantined."""

from __future__ import annotations

from typing import Final

from dashboards.definitions import (
    OPERATIONS,
    DashboardDefinition,
    define,
    new_dashboard,
    province_variable,
    query_variable,
)
from dashboards.measures import SILENT_AFTER_INTERVALS
from dashboards.panels import DRILLDOWN_UID, Step, stat, table, time_series
from dashboards.queries import reading_aggregates
from dashboards.sql import Sql

UID: Final = DRILLDOWN_UID

# Single-value variables are substituted bare (quotes doubled), so the SQL quotes them itself: '$device'.
DEVICES_OF_PROVINCE: Final = """
SELECT device_id AS __value, device_id || ' · ' || type_code AS __text
FROM devices
WHERE province = '$province' AND status = 'active'
ORDER BY device_id
"""

METRICS_OF_DEVICE: Final = """
SELECT metric FROM device_latest WHERE device_id = '$device' ORDER BY metric
"""

SERIES: Final = f"""
SELECT a.bucket AS "time", a.metric, a.total / a.readings AS value
FROM {reading_aggregates("ARRAY['$device']", "ARRAY[$metric]")}
ORDER BY 1, 2
"""

READINGS_IN_RANGE: Final = """
SELECT count(*) AS readings
FROM readings
WHERE device_id = '$device' AND $__timeFilter(ts)
"""

OUT_OF_RANGE_IN_RANGE: Final = """
SELECT count(*) AS flagged
FROM readings
WHERE device_id = '$device' AND $__timeFilter(ts) AND quality <> 0
"""

QUARANTINED_IN_RANGE: Final = """
SELECT count(*) AS quarantined
FROM quarantine
WHERE device_id = '$device' AND $__timeFilter(received_at)
"""

LATEST: Final = """
SELECT metric, value, ts AS reading_time, received_at,
       CASE quality WHEN 0 THEN 'ok' ELSE 'outside the sensor range' END AS quality
FROM device_latest
WHERE device_id = '$device' AND metric IN ($metric)
ORDER BY metric
"""

# The registry entry and health as devices.health computes it (offline / silent / online / unknown).
DEVICE: Final = f"""
SELECT d.device_id, d.name, t.name AS device_type, d.sector, p.name AS province, d.status, d.credential_status,
       coalesce(d.report_interval_s, t.report_interval_s) AS report_interval_s,
       s.online AS said_online, s.changed_at AS status_changed_at, seen.last_seen,
       CASE WHEN s.online IS FALSE THEN 'offline'
            WHEN greatest(seen.last_seen, CASE WHEN s.online THEN s.changed_at END) IS NULL THEN 'unknown'
            WHEN greatest(seen.last_seen, CASE WHEN s.online THEN s.changed_at END)
                 >= now() - make_interval(secs => {SILENT_AFTER_INTERVALS} * coalesce(d.report_interval_s, t.report_interval_s))
                 THEN 'online'
            ELSE 'silent' END AS health
FROM devices d
JOIN device_types t ON t.code = d.type_code
LEFT JOIN provinces p ON p.code = d.province
LEFT JOIN device_status s ON s.device_id = d.device_id
LEFT JOIN (SELECT device_id, max(received_at) AS last_seen FROM device_latest GROUP BY device_id) seen
       ON seen.device_id = d.device_id
WHERE d.device_id = '$device'
"""

ALARMS: Final = """
SELECT raised_at AS "time", severity, status, metric, kind, message, occurrences,
       acknowledged_by, cleared_at, clear_reason
FROM alarms
WHERE device_id = '$device' AND (status <> 'cleared' OR $__timeFilter(raised_at))
ORDER BY raised_at DESC
LIMIT 200
"""

QUARANTINE: Final = """
SELECT received_at AS "time", reason, detail, topic, payload_size
FROM quarantine
WHERE device_id = '$device' AND $__timeFilter(received_at)
ORDER BY received_at DESC
LIMIT 200
"""


def build() -> DashboardDefinition:
    builder = (
        new_dashboard(
            uid=UID,
            title="Chi tiết thiết bị / Device drill-down",
            description="One device: its metrics, latest values, health, alarms and quarantined messages",
            tags=["device"],
        )
        .with_variable(province_variable(multi=False))
        .with_variable(
            query_variable(
                name="device",
                label="Thiết bị / Device",
                sql=DEVICES_OF_PROVINCE,
                multi=False,
                description="Active devices of the province",
            )
        )
        .with_variable(
            query_variable(
                name="metric",
                label="Chỉ số / Metric",
                sql=METRICS_OF_DEVICE,
                multi=True,
                description="Metrics the device has reported",
            )
        )
        .with_panel(
            table(
                title="Thiết bị / Device",
                target=Sql(DEVICE),
                description="Registry entry, last status and health",
                width=24,
                height=4,
            )
        )
        .with_panel(
            stat(
                title="Số đo / Readings",
                target=Sql(READINGS_IN_RANGE),
                unit="short",
                base_color="blue",
                description="Readings taken in the time range",
                width=8,
            )
        )
        .with_panel(
            stat(
                title="Ngoài dải đo / Outside sensor range",
                target=Sql(OUT_OF_RANGE_IN_RANGE),
                unit="short",
                steps=(Step(1, "orange"),),
                description="Readings stored but flagged: outside the sensor's physical range",
                width=8,
            )
        )
        .with_panel(
            stat(
                title="Cách ly / Quarantined",
                target=Sql(QUARANTINED_IN_RANGE),
                unit="short",
                steps=(Step(1, "orange"),),
                description="Messages of the device refused in the time range",
                width=8,
            )
        )
        .with_panel(
            time_series(
                title="Chỉ số / Metrics",
                targets=[Sql(SERIES)],
                unit="short",
                description="Mean per metric and time bucket",
                width=16,
                height=10,
            )
        )
        .with_panel(
            table(
                title="Giá trị mới nhất / Latest values",
                target=Sql(LATEST),
                description="The latest reading of each chosen metric",
                width=8,
                height=10,
            )
        )
        .with_panel(
            table(
                title="Cảnh báo / Alarms",
                target=Sql(ALARMS),
                description="Open alarms, and those raised in the time range",
                width=12,
            )
        )
        .with_panel(
            table(
                title="Tin nhắn bị cách ly / Quarantined messages",
                target=Sql(QUARANTINE),
                description="Why the device's messages were refused, newest first",
                width=12,
            )
        )
    )
    return define(builder, folder=OPERATIONS)
