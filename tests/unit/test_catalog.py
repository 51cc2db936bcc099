"""The device-type catalog: the shipped data and the loader's refusals."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from core.errors import IocError
from devices.catalog import (
    SECTORS,
    UCUM_UNITS,
    Catalog,
    CatalogError,
    DeviceType,
    MetricSpec,
    Sector,
    load_catalog,
    parse_catalog,
)

DATA_FILE = Path(__file__).resolve().parents[2] / "devices" / "data" / "device_types.json"
NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
PERSONAL_WORDS = ("patient", "name", "phone", "email", "address", "birth", "national_id", "cccd", "plate")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _raw() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    return document


def _write(tmp_path: Path, document: object) -> Path:
    path = tmp_path / "device_types.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _type(document: dict[str, Any], code: str) -> dict[str, Any]:
    found: dict[str, Any] = next(t for t in document["device_types"] if t["code"] == code)
    return found


# --- the shipped catalog -------------------------------------------------------------------------


def test_packaged_catalog_equals_file_on_disk(catalog: Catalog) -> None:
    assert load_catalog(DATA_FILE) == catalog


def test_catalog_has_required_types_in_every_sector(catalog: Catalog) -> None:
    required: dict[Sector, set[str]] = {
        "agriculture": {"soil_probe", "weather_station", "water_level_gauge", "salinity_sensor"},
        "energy": {"smart_meter", "transformer_monitor", "solar_inverter", "pump_station"},
        "transport": {"traffic_counter", "bus_tracker", "parking_sensor"},
        "health": {"vaccine_fridge", "oxygen_tank", "air_quality_monitor"},
    }
    assert len(catalog) >= 14
    assert set(SECTORS) == set(required)
    for sector, codes in required.items():
        assert codes <= {t.code for t in catalog.by_sector(sector)}, sector
    assert all(code in catalog for codes in required.values() for code in codes)
    assert catalog.get("no_such_type") is None


def test_every_name_unit_and_range_is_well_formed(catalog: Catalog) -> None:
    for device_type in catalog:
        assert NAME.fullmatch(device_type.code)
        assert device_type.report_interval_s > 0
        for metric in device_type.metrics:
            assert NAME.fullmatch(metric.name), (device_type.code, metric.name)
            assert metric.unit in UCUM_UNITS
            assert metric.min < metric.max
            assert device_type.metric(metric.name) is metric


def test_no_personal_data_fields(catalog: Catalog) -> None:
    for device_type in catalog:
        for metric in device_type.metrics:
            assert not any(word in metric.name for word in PERSONAL_WORDS), (device_type.code, metric.name)


def test_soil_probe_metrics(catalog: Catalog) -> None:
    probe = catalog.types["soil_probe"]
    assert probe.sector == "agriculture"
    assert probe.metric_names == ("soil_moisture", "soil_temperature", "soil_ec", "battery_v")
    assert probe.metric("soil_moisture") == MetricSpec(
        name="soil_moisture",
        unit="%",
        description="Volumetric water content",
        min=0.0,
        max=100.0,
        group="moisture",
        normal_steps="up",  # irrigation
    )
    ec = probe.metric("soil_ec")
    assert ec is not None
    assert (ec.unit, ec.min, ec.max) == ("dS/m", 0.0, 20.0)
    assert probe.metric("salinity") is None


def test_units_are_ucum_codes(catalog: Catalog) -> None:
    def unit(code: str, metric: str) -> str:
        spec = catalog.types[code].metric(metric)
        assert spec is not None, (code, metric)
        return spec.unit

    assert unit("weather_station", "air_temperature") == "Cel"
    assert unit("weather_station", "air_pressure") == "hPa"
    assert unit("smart_meter", "energy_import") == "kW.h"
    assert unit("smart_meter", "power_factor") == "1"
    assert unit("traffic_counter", "vehicle_count") == "{vehicle}"
    assert unit("air_quality_monitor", "pm2_5") == "ug/m3"
    assert unit("air_quality_monitor", "co2") == "[ppm]"
    assert unit("salinity_sensor", "salinity") == "g/L"
    assert unit("aquaculture_pond", "ph") == "[pH]"


def test_vaccine_fridge_rules(catalog: Catalog) -> None:
    fridge = catalog.types["vaccine_fridge"]
    assert fridge.sector == "health"
    assert {"temperature", "door_open", "compressor_on", "battery_v"} <= set(fridge.metric_names)
    door = fridge.metric("door_open")
    assert door is not None
    assert (door.min, door.max) == (0.0, 1.0)
    by_kind = {(r.kind, r.metric): r for r in fridge.rules}
    hot = by_kind["threshold_above", "temperature"]
    assert (hot.value, hot.duration_s, hot.severity) == (8.0, 600.0, "critical")
    cold = by_kind["threshold_below", "temperature"]
    assert (cold.value, cold.duration_s, cold.severity) == (2.0, 600.0, "major")
    battery = by_kind["low_battery", "battery_v"]
    assert battery.value == 3.4
    assert ("silent", None) in by_kind
    assert fridge.rules_for("temperature") == tuple(r for r in fridge.rules if r.metric == "temperature")


def test_agriculture_and_health_alarm_levels(catalog: Catalog) -> None:
    salinity = {(r.kind, r.value): r for r in catalog.types["salinity_sensor"].rules}
    assert salinity["threshold_above", 4.0].severity == "critical"
    assert salinity["threshold_above", 4.0].metric == "salinity"
    oxygen = [r for r in catalog.types["oxygen_tank"].rules if r.kind == "threshold_below" and r.metric == "pressure"]
    assert [(r.value, r.severity) for r in oxygen] == [(3.5, "critical")]
    gauge = [r for r in catalog.types["water_level_gauge"].rules if r.kind == "threshold_above"]
    assert {r.metric for r in gauge} == {"water_level"}
    oil = [r for r in catalog.types["transformer_monitor"].rules if r.metric == "oil_temperature"]
    assert {(r.kind, r.value) for r in oil} >= {("threshold_above", 95.0), ("threshold_above", 105.0)}


def test_pump_metrics_form_one_correlated_group(catalog: Catalog) -> None:
    pump = catalog.types["pump_station"]
    grouped = {m.name for m in pump.metrics if m.group == "pump"}
    assert grouped == {"motor_current", "discharge_pressure", "flow_rate", "vibration_velocity"}


def test_rule_metrics_exist_and_levels_lie_in_range(catalog: Catalog) -> None:
    for device_type in catalog:
        assert device_type.rules, device_type.code
        for rule in device_type.rules:
            if rule.kind == "silent":
                assert rule.metric is None
                assert rule.duration_s > device_type.report_interval_s
                continue
            assert rule.metric is not None
            spec = device_type.metric(rule.metric)
            assert spec is not None, (device_type.code, rule.metric)
            if rule.kind in {"threshold_above", "threshold_below", "low_battery"}:
                assert rule.value is not None
                assert spec.min <= rule.value <= spec.max


def test_battery_devices_have_a_low_battery_rule(catalog: Catalog) -> None:
    for device_type in catalog:
        if device_type.metric("battery_v") is not None:
            assert any(r.kind == "low_battery" for r in device_type.rules), device_type.code


def test_device_type_is_frozen(catalog: Catalog) -> None:
    fridge: DeviceType = catalog.types["vaccine_fridge"]
    with pytest.raises(AttributeError):
        fridge.code = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        catalog.types["x"] = fridge  # type: ignore[index]


# --- refusals ----------------------------------------------------------------------------------


def _break(mutate: Any) -> dict[str, Any]:
    document = copy.deepcopy(_raw())
    mutate(document)
    return document


BROKEN: list[tuple[str, Any, str]] = [
    (
        "unknown type field",
        lambda d: _type(d, "soil_probe").update(colour="red"),
        r"device type 'soil_probe': unknown field\(s\) 'colour'",
    ),
    (
        "unknown metric field",
        lambda d: _type(d, "soil_probe")["metrics"][0].update(scale=2),
        r"device type 'soil_probe': metrics\[0\] 'soil_moisture': unknown field\(s\) 'scale'",
    ),
    (
        "bad sector",
        lambda d: _type(d, "bus_tracker").update(sector="logistics"),
        r"device type 'bus_tracker': field 'sector' must be one of .*'logistics'",
    ),
    (
        "min not below max",
        lambda d: _type(d, "vaccine_fridge")["metrics"][0].update(min=60),
        r"device type 'vaccine_fridge': metrics\[0\] 'temperature': field 'min' \(60.0\) must be below",
    ),
    (
        "duplicate metric",
        lambda d: _type(d, "oxygen_tank")["metrics"].append(dict(_type(d, "oxygen_tank")["metrics"][0])),
        r"device type 'oxygen_tank': metric 'pressure' is defined twice",
    ),
    (
        "duplicate type code",
        lambda d: d["device_types"].append(copy.deepcopy(_type(d, "smart_meter"))),
        r"device type 'smart_meter': code is defined twice",
    ),
    (
        "rule on a missing metric",
        lambda d: _type(d, "vaccine_fridge")["rules"][0].update(metric="humidity"),
        r"device type 'vaccine_fridge': rules\[0\] \(threshold_above\): field 'metric' names 'humidity'",
    ),
    (
        "zero report interval",
        lambda d: _type(d, "traffic_counter").update(report_interval_s=0),
        r"device type 'traffic_counter': field 'report_interval_s' must be > 0",
    ),
    (
        "bad metric name",
        lambda d: _type(d, "soil_probe")["metrics"][0].update(name="Soil-Moisture"),
        r"device type 'soil_probe': metrics\[0\] 'Soil-Moisture': field 'name' must match",
    ),
    (
        "non-UCUM unit",
        lambda d: _type(d, "air_quality_monitor")["metrics"][2].update(unit="ppm"),
        r"device type 'air_quality_monitor': metrics\[2\] 'co2': field 'unit' 'ppm' is not a known UCUM code",
    ),
    (
        "unknown severity",
        lambda d: _type(d, "oxygen_tank")["rules"][0].update(severity="urgent"),
        r"device type 'oxygen_tank': rules\[0\] \(threshold_below\): field 'severity' must be one of",
    ),
    (
        "threshold outside the physical range",
        lambda d: _type(d, "vaccine_fridge")["rules"][0].update(value=80),
        r"device type 'vaccine_fridge': rules\[0\] \(threshold_above\): field 'value' 80.0 is outside",
    ),
    (
        "threshold without a value",
        lambda d: _type(d, "vaccine_fridge")["rules"][0].pop("value"),
        r"device type 'vaccine_fridge': rules\[0\] \(threshold_above\): field 'value' is required",
    ),
    (
        "boolean where a number belongs",
        lambda d: _type(d, "soil_probe")["metrics"][0].update(max=True),
        r"device type 'soil_probe': metrics\[0\] 'soil_moisture': field 'max' must be a finite number",
    ),
    (
        "group with one member",
        lambda d: _type(d, "soil_probe")["metrics"][1].update(group="alone"),  # soil_temperature, in no group
        r"device type 'soil_probe': group\(s\) 'alone' have a single metric",
    ),
    (
        "unknown direction of normal steps",
        lambda d: _type(d, "soil_probe")["metrics"][0].update(normal_steps="sideways"),
        r"device type 'soil_probe': metrics\[0\] 'soil_moisture': field 'normal_steps' must be one of up, down, both",
    ),
    (
        "missing field",
        lambda d: _type(d, "parking_sensor").pop("description"),
        r"device type 'parking_sensor': missing field\(s\) 'description'",
    ),
]


@pytest.mark.parametrize(("mutate", "message"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_catalog_file_names_the_problem(tmp_path: Path, mutate: Any, message: str) -> None:
    path = _write(tmp_path, _break(mutate))
    with pytest.raises(CatalogError, match=message) as caught:
        load_catalog(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, IocError)


def test_unreadable_and_invalid_json_files(tmp_path: Path) -> None:
    missing = tmp_path / "absent.json"
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(missing)
    garbled = tmp_path / "garbled.json"
    garbled.write_text('{"schema_version": 1, "device_types": [', encoding="utf-8")
    with pytest.raises(CatalogError, match="not valid JSON"):
        load_catalog(garbled)


def test_wrong_schema_version_and_shape() -> None:
    with pytest.raises(CatalogError, match="schema_version 2 is not supported"):
        parse_catalog({"schema_version": 2, "device_types": []})
    with pytest.raises(CatalogError, match="expected a JSON object, got list"):
        parse_catalog([])
    with pytest.raises(CatalogError, match="device_types must be a non-empty list"):
        parse_catalog({"schema_version": 1, "device_types": []})


def test_minimal_valid_document_parses() -> None:
    catalog = parse_catalog(
        {
            "schema_version": 1,
            "device_types": [
                {
                    "code": "tiny",
                    "name": "Tiny",
                    "sector": "energy",
                    "description": "A minimal type",
                    "report_interval_s": 10,
                    "metrics": [{"name": "v", "unit": "V", "description": "volts", "min": 0, "max": 5}],
                    "rules": [{"kind": "silent", "duration_s": 60, "severity": "minor", "message": "quiet"}],
                }
            ],
        }
    )
    tiny = catalog.get("tiny")
    assert tiny is not None
    assert tiny.report_interval_s == 10.0
    assert tiny.rules[0].metric is None
    assert tiny.rules[0].value is None
    metric = tiny.metric("v")
    assert metric is not None
    assert metric.in_range(5.0)
    assert not metric.in_range(5.1)
