"""Ingest health, all from SQL: readings received per minute, quarantined messages by reason, the lag between a
reading's time and its receipt, and devices gone silent."""

from __future__ import annotations

from typing import Final

from dashboards.definitions import OPERATIONS, DashboardDefinition, define, new_dashboard
from dashboards.measures import SILENT_AFTER_INTERVALS
from dashboards.panels import Step, stat, table, time_series
from dashboards.sql import Sql

UID: Final = "ioc-ingest-health"

# Readings are partitioned by reading time; a bound on it lets TimescaleDB skip old chunks when counting by
# receipt. Store-and-forward backfills older than this (the simulator's buffer holds about 28 h) are not counted.
BACKFILL_HORIZON: Final = "2 days"
_RECEIVED_IN_RANGE: Final = (
    f"$__timeFilter(received_at) AND ts >= $__timeFrom()::timestamptz - interval '{BACKFILL_HORIZON}'"
)

READINGS_PER_MINUTE: Final = f"""
SELECT $__timeGroupAlias(received_at, $__interval), count(*) * 60000.0 / $__interval_ms AS readings_per_min
FROM readings
WHERE {_RECEIVED_IN_RANGE}
GROUP BY 1
ORDER BY 1
"""

LAG_SECONDS: Final = f"""
SELECT $__timeGroupAlias(received_at, $__interval),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - ts)::float8) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - ts)::float8) AS p95,
       max(extract(epoch FROM received_at - ts)::float8) AS max
FROM readings
WHERE {_RECEIVED_IN_RANGE}
GROUP BY 1
ORDER BY 1
"""

QUARANTINE_BY_REASON_SERIES: Final = """
SELECT $__timeGroupAlias(received_at, $__interval), reason AS metric, count(*) AS messages
FROM quarantine
WHERE $__timeFilter(received_at)
GROUP BY 1, 2
ORDER BY 1, 2
"""

QUARANTINE_BY_REASON: Final = """
SELECT reason, count(*) AS messages, count(DISTINCT device_id) AS devices, max(received_at) AS last_seen,
       (array_agg(detail ORDER BY received_at DESC))[1] AS last_detail
FROM quarantine
WHERE $__timeFilter(received_at)
GROUP BY reason
ORDER BY messages DESC
"""

RECEIVED_LAST_5_MIN: Final = """
SELECT count(*) AS readings
FROM readings
WHERE received_at >= now() - interval '5 minutes' AND ts >= now() - interval '2 days'
"""

QUARANTINED_IN_RANGE: Final = """
SELECT count(*) AS quarantined FROM quarantine WHERE $__timeFilter(received_at)
"""

# Beyond a device's rate limit, bad messages are counted per minute instead of stored (migration 0005).
SUPPRESSED_IN_RANGE: Final = """
SELECT coalesce(sum(messages), 0) AS suppressed FROM quarantine_suppressed WHERE $__timeFilter(window_start)
"""

P95_LAG_IN_RANGE: Final = f"""
SELECT coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM received_at - ts)::float8), 0) AS p95
FROM readings
WHERE {_RECEIVED_IN_RANGE}
"""

SILENT_DEVICES: Final = f"""
SELECT count(*) AS silent
FROM devices d
JOIN device_types t ON t.code = d.type_code
LEFT JOIN (SELECT device_id, max(received_at) AS last_seen FROM device_latest GROUP BY device_id) seen
       ON seen.device_id = d.device_id
WHERE d.status = 'active'
  AND (seen.last_seen IS NULL
       OR seen.last_seen < now() - make_interval(secs => {SILENT_AFTER_INTERVALS} * coalesce(d.report_interval_s, t.report_interval_s)))
"""


def build() -> DashboardDefinition:
    builder = (
        new_dashboard(
            uid=UID,
            title="Sức khỏe thu nhận / Ingest health",
            description="Readings received, quarantine by reason, reading-to-receipt lag, silent devices",
            tags=["ingest"],
        )
        .with_panel(
            stat(
                title="Nhận 5 phút qua / Received, last 5 min",
                target=Sql(RECEIVED_LAST_5_MIN),
                unit="short",
                base_color="red",
                steps=(Step(1, "green"),),
                description="Readings committed in the last five minutes (red: none)",
            )
        )
        .with_panel(
            stat(
                title="Cách ly / Quarantined",
                target=Sql(QUARANTINED_IN_RANGE),
                unit="short",
                steps=(Step(1, "orange"),),
                description="Messages quarantined in the time range",
            )
        )
        .with_panel(
            stat(
                title="Vượt hạn mức / Rate-limited",
                target=Sql(SUPPRESSED_IN_RANGE),
                unit="short",
                steps=(Step(1, "orange"),),
                description="Bad messages beyond a device's quarantine rate limit, counted but not stored",
            )
        )
        .with_panel(
            stat(
                title="Độ trễ p95 / Lag p95",
                target=Sql(P95_LAG_IN_RANGE),
                unit="s",
                steps=(Step(60, "orange"), Step(600, "red")),
                decimals=1,
                description="95th percentile of receipt time minus reading time, readings received in the range",
            )
        )
        .with_panel(
            stat(
                title="Thiết bị im lặng / Silent devices",
                target=Sql(SILENT_DEVICES),
                unit="short",
                steps=(Step(1, "orange"),),
                description=f"Active devices with no reading received in {SILENT_AFTER_INTERVALS} report intervals",
                width=8,
            )
        )
        .with_panel(
            time_series(
                title="Số đo mỗi phút / Readings per minute",
                targets=[Sql(READINGS_PER_MINUTE)],
                unit="short",
                description="Readings committed per minute, by time of receipt",
            )
        )
        .with_panel(
            time_series(
                title="Độ trễ đo → nhận / Lag, reading to receipt",
                targets=[Sql(LAG_SECONDS)],
                unit="s",
                description=(
                    "Receipt time minus reading time per bucket of receipt: p50, p95, max "
                    "(backfills and clock skew show up here)"
                ),
            )
        )
        .with_panel(
            time_series(
                title="Cách ly theo lý do / Quarantine by reason",
                targets=[Sql(QUARANTINE_BY_REASON_SERIES)],
                unit="short",
                bars=True,
                stacked=True,
                description="Quarantined messages per time bucket, by reason code",
            )
        )
        .with_panel(
            table(
                title="Lý do cách ly / Quarantine reasons",
                target=Sql(QUARANTINE_BY_REASON),
                description="Per reason in the time range: messages, devices, last seen and the last detail",
            )
        )
    )
    return define(builder, folder=OPERATIONS)
