"""SQL shapes several dashboards share, over the store's tables (readings, devices, device_latest, provinces).

Grafana expands its macros before the database sees the text: `$__timeFilter(col)` becomes
`col BETWEEN '<from>' AND '<to>'`, `$__timeGroupAlias(col, $__interval)` a `time_bucket(…) AS "time"` (the
datasource has TimescaleDB on), `$province` the chosen codes quoted and comma-separated (a multi-value variable).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final, Literal

from dashboards.measures import BUS_SPEED, LATITUDE, LONGITUDE, PASSENGERS, Measure, sql_names

Aggregate = Literal["avg", "min", "max", "sum"]
_PROVINCE_CODE: Final = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")

# Devices of the chosen provinces, registered and not decommissioned.
PROVINCE_FILTER: Final = "d.province IN ($province)"


# Per Grafana's range and interval, through the store's one aggregate function (migration 0009): whole minutes and
# hours of long ranges come from the rollups, the rest from raw readings, with the numbers raw readings give.
_AGGREGATE_EXPRESSIONS: Final[Mapping[Aggregate, str]] = {
    "avg": "a.total / a.readings",
    "min": "a.minimum",
    "max": "a.maximum",
    "sum": "a.total",
}


def reading_aggregates(devices_sql: str, metrics_sql: str) -> str:
    """`reading_aggregates(…) a` over the dashboard's time range, one bucket per `$__interval`: `devices_sql` is an
    array of device ids (`ARRAY(SELECT …)`), `metrics_sql` one of metrics (or NULL: every metric)."""
    return (
        f"reading_aggregates({devices_sql}, {metrics_sql}, $__timeFrom(), $__timeTo(), "
        "make_interval(secs => $__interval_ms / 1000.0)) a"
    )


def devices_of(measure: Measure) -> str:
    """The devices of the measure's types in the chosen provinces, as an array for `reading_aggregates`."""
    return f"ARRAY(SELECT d.device_id FROM devices d WHERE d.type_code IN ({measure.types_sql}) AND {PROVINCE_FILTER})"


def per_device_series(measure: Measure, *, aggregate: Aggregate = "avg") -> str:
    """One series per device: the measure's `aggregate` in each time bucket."""
    return f"""
SELECT a.bucket AS "time", a.device_id AS metric, {_AGGREGATE_EXPRESSIONS[aggregate]} AS value
FROM {reading_aggregates(devices_of(measure), f"ARRAY['{measure.metric}']")}
ORDER BY 1, 2
"""


def fleet_total_series(measure: Measure, *, label: str) -> str:
    """The sum over devices of each device's mean in the bucket (a total that does not depend on how many
    readings each device sent in it)."""
    return f"""
SELECT a.bucket AS "time", sum(a.total / a.readings) AS "{label}"
FROM {reading_aggregates(devices_of(measure), f"ARRAY['{measure.metric}']")}
GROUP BY 1
ORDER BY 1
"""


def latest_extreme(measure: Measure, *, aggregate: Aggregate = "max") -> str:
    """The highest (or lowest) latest value among the devices."""
    return f"""
SELECT {aggregate}(l.value) AS value
FROM device_latest l
JOIN devices d ON d.device_id = l.device_id
WHERE l.metric = '{measure.metric}'
  AND d.type_code IN ({measure.types_sql})
  AND d.status = 'active'
  AND {PROVINCE_FILTER}
"""


def latest_table(measures: tuple[Measure, ...], *, order_by: Measure) -> str:
    """One row per device of the measures' types: its province and the latest value of each measure."""
    types = sorted({code for m in measures for code in m.type_codes})
    columns = ",\n       ".join(f"max(l.value) FILTER (WHERE l.metric = '{m.metric}') AS {m.metric}" for m in measures)
    return f"""
SELECT d.device_id, p.name AS province, d.type_code,
       {columns},
       d.province AS province_code,
       max(l.ts) AS last_reading
FROM devices d
JOIN device_latest l ON l.device_id = d.device_id
LEFT JOIN provinces p ON p.code = d.province
WHERE d.type_code IN ({sql_names(types)})
  AND d.status = 'active'
  AND {PROVINCE_FILTER}
GROUP BY d.device_id, p.name, d.type_code, d.province
ORDER BY {order_by.metric} DESC NULLS LAST, d.device_id
"""


# Vehicles that report a position: their latest fix within the dashboard's time range.
VEHICLE_POSITIONS: Final = f"""
SELECT d.device_id, p.name AS province, d.type_code,
       lat.value AS latitude, lon.value AS longitude,
       spd.value AS speed_kmh, pax.value AS passengers,
       lat.ts AS last_fix, d.province AS province_code
FROM devices d
JOIN device_latest lat ON lat.device_id = d.device_id AND lat.metric = '{LATITUDE.metric}'
JOIN device_latest lon ON lon.device_id = d.device_id AND lon.metric = '{LONGITUDE.metric}'
LEFT JOIN device_latest spd ON spd.device_id = d.device_id AND spd.metric = '{BUS_SPEED.metric}'
LEFT JOIN device_latest pax ON pax.device_id = d.device_id AND pax.metric = '{PASSENGERS.metric}'
LEFT JOIN provinces p ON p.code = d.province
WHERE d.status = 'active'
  AND {PROVINCE_FILTER}
  AND $__timeFilter(lat.ts)
ORDER BY d.device_id
"""


def province_centers_sql(centers: Mapping[str, tuple[float, float]]) -> str:
    """`(VALUES ('ha-noi', 21.028, 105.854), …) AS c(code, lat, lon)`: each province's administrative seat, from
    devices/data/provinces.json (the registry has no device coordinates yet, so fixed devices are drawn there)."""
    if not centers:
        raise ValueError("no province centers")
    rows = []
    for code in sorted(centers):
        lat, lon = centers[code]
        if not _PROVINCE_CODE.fullmatch(code):
            raise ValueError(f"{code!r} is not a province code")
        rows.append(f"('{code}', {float(lat)!r}, {float(lon)!r})")
    return "(VALUES " + ", ".join(rows) + ") AS c(code, lat, lon)"
