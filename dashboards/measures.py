"""The metrics the dashboards draw, named as `devices/data/device_types.json` names them (the unit tests hold the
two together: type, metric, unit and the alarm rules' thresholds), and the SQL fragments built from them."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from dashboards.panels import Step

# Names that go into SQL as literals: our own constants, checked so that no quote can ever slip in.
_NAME: Final = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Measure:
    """A metric of one or more device types, with the Grafana unit it is shown in (`catalog_unit` is the
    catalog's UCUM unit, for the tests)."""

    metric: str
    type_codes: tuple[str, ...]
    unit: str
    catalog_unit: str

    def __post_init__(self) -> None:
        for name in (self.metric, *self.type_codes):
            if not _NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a metric or device type name")

    @property
    def types_sql(self) -> str:
        """`'a', 'b'`: the device types, for `type_code IN (…)`."""
        return sql_names(self.type_codes)


def sql_names(names: Iterable[str]) -> str:
    """Checked names as a list of SQL string literals."""
    checked = []
    for name in names:
        if not _NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a metric or device type name")
        checked.append(f"'{name}'")
    return ", ".join(checked)


WATER_LEVEL: Final = Measure("water_level", ("water_level_gauge",), "lengthm", "m")
SALINITY: Final = Measure("salinity", ("salinity_sensor", "aquaculture_pond"), "suffix: g/L", "g/L")
TRANSFORMER_LOAD: Final = Measure("load_pct", ("transformer_monitor",), "percent", "%")
OIL_TEMPERATURE: Final = Measure("oil_temperature", ("transformer_monitor",), "celsius", "Cel")
ACTIVE_POWER: Final = Measure("active_power", ("smart_meter",), "kwatt", "kW")
METER_VOLTAGE: Final = Measure("voltage", ("smart_meter",), "volt", "V")
VEHICLES: Final = Measure("vehicle_count", ("traffic_counter",), "short", "{vehicle}")
MOTORBIKES: Final = Measure("motorbike_count", ("traffic_counter",), "short", "{vehicle}")
AVERAGE_SPEED: Final = Measure("average_speed", ("traffic_counter",), "velocitykmh", "km/h")
LATITUDE: Final = Measure("latitude", ("bus_tracker",), "none", "deg")
LONGITUDE: Final = Measure("longitude", ("bus_tracker",), "none", "deg")
BUS_SPEED: Final = Measure("speed", ("bus_tracker",), "velocitykmh", "km/h")
PASSENGERS: Final = Measure("passenger_count", ("bus_tracker",), "short", "{passenger}")
FRIDGE_TEMPERATURE: Final = Measure("temperature", ("vaccine_fridge",), "celsius", "Cel")
FRIDGE_DOOR: Final = Measure("door_open", ("vaccine_fridge",), "short", "1")
FRIDGE_MAINS: Final = Measure("mains_on", ("vaccine_fridge",), "short", "1")
FRIDGE_BATTERY: Final = Measure("battery_v", ("vaccine_fridge",), "volt", "V")

MEASURES: Final = (
    WATER_LEVEL,
    SALINITY,
    TRANSFORMER_LOAD,
    OIL_TEMPERATURE,
    ACTIVE_POWER,
    METER_VOLTAGE,
    VEHICLES,
    MOTORBIKES,
    AVERAGE_SPEED,
    LATITUDE,
    LONGITUDE,
    BUS_SPEED,
    PASSENGERS,
    FRIDGE_TEMPERATURE,
    FRIDGE_DOOR,
    FRIDGE_MAINS,
    FRIDGE_BATTERY,
)


@dataclass(frozen=True, slots=True)
class RuleLine:
    """A threshold drawn on a panel that is the value of an alarm rule in the catalog (`kind` above/below)."""

    measure: Measure
    kind: str
    step: Step


# The catalog's alarm thresholds, drawn where operators look (checked against the rules by the unit tests).
WATER_LEVEL_WARNING: Final = RuleLine(WATER_LEVEL, "threshold_above", Step(3.0, "orange"))
WATER_LEVEL_ALARM: Final = RuleLine(WATER_LEVEL, "threshold_above", Step(4.0, "red"))
SALINITY_WARNING: Final = RuleLine(SALINITY, "threshold_above", Step(1.0, "orange"))
SALINITY_ALARM: Final = RuleLine(SALINITY, "threshold_above", Step(4.0, "red"))
TRANSFORMER_OVERLOAD: Final = RuleLine(TRANSFORMER_LOAD, "threshold_above", Step(110.0, "red"))
COLD_CHAIN_LOW: Final = RuleLine(FRIDGE_TEMPERATURE, "threshold_below", Step(2.0, "green"))
COLD_CHAIN_HIGH: Final = RuleLine(FRIDGE_TEMPERATURE, "threshold_above", Step(8.0, "red"))
METER_UNDERVOLTAGE: Final = RuleLine(METER_VOLTAGE, "threshold_below", Step(198.0, "green"))
METER_OVERVOLTAGE: Final = RuleLine(METER_VOLTAGE, "threshold_above", Step(242.0, "red"))

RULE_LINES: Final = (
    WATER_LEVEL_WARNING,
    WATER_LEVEL_ALARM,
    SALINITY_WARNING,
    SALINITY_ALARM,
    TRANSFORMER_OVERLOAD,
    COLD_CHAIN_LOW,
    COLD_CHAIN_HIGH,
    METER_UNDERVOLTAGE,
    METER_OVERVOLTAGE,
)

# A device is "silent" after this many report intervals without a reading (devices.health says the same).
SILENT_AFTER_INTERVALS: Final = 3
