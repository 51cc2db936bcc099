"""The device-type catalog: what each kind of field device reports (metrics, units, physical ranges,
report interval) and the default alarm rules for it, loaded from `devices/data/device_types.json`.

The catalog is data so that adding a device type is a reviewed data change, not code; this module only
parses it into frozen values and refuses anything malformed, naming the type and the field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, TypeVar, cast, get_args

from core.errors import IocError

Sector = Literal["agriculture", "energy", "transport", "health"]
RuleKind = Literal["threshold_above", "threshold_below", "rate_of_change", "stuck", "silent", "low_battery"]
Severity = Literal["critical", "major", "minor", "warning"]
StepDirection = Literal["up", "down", "both"]

SECTORS: Final[tuple[Sector, ...]] = get_args(Sector)
RULE_KINDS: Final[tuple[RuleKind, ...]] = get_args(RuleKind)
SEVERITIES: Final[tuple[Severity, ...]] = get_args(Severity)
STEP_DIRECTIONS: Final[tuple[StepDirection, ...]] = get_args(StepDirection)

CATALOG_RESOURCE: Final = "device_types.json"
CATALOG_SCHEMA_VERSION: Final = 1

# Device type codes and metric names travel in topics, payloads and SQL identifiers' values.
NAME_PATTERN: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")

# UCUM (case-sensitive) codes the catalog may use. A closed list catches the common slips
# ("ppm" instead of "[ppm]", "C" for coulomb instead of "Cel"); extend it when a new type needs a unit.
UCUM_UNITS: Final = frozenset(
    {
        "1", "%", "Cel", "K", "deg",
        "m", "mm", "cm", "km", "m/s", "km/h", "mm/s", "mm/h",
        "m3/s", "m3/h", "L/min", "L/s",
        "Pa", "hPa", "kPa", "bar", "[psi]",
        "V", "mV", "A", "mA", "W", "kW", "MW", "W/m2", "kW.h", "W.h", "kV.A", "Hz",
        "dS/m", "mS/cm", "uS/cm", "g/L", "mg/L", "[pH]", "ug/m3", "mg/m3", "[ppm]", "[ppb]",
        "uT", "dB", "s", "min", "h",
        "{vehicle}", "{passenger}", "{count}",
    }
)  # fmt: skip

# Rule kinds whose `value` is a level in the metric's unit, so it must lie within the metric's range.
_LEVEL_KINDS: Final = frozenset({"threshold_above", "threshold_below", "low_battery"})
# Rule kinds that need a value; `stuck` may carry a tolerance, `silent` has none.
_VALUE_KINDS: Final = _LEVEL_KINDS | {"rate_of_change"}

_WINDOW_KINDS: Final = frozenset({"rate_of_change", "stuck", "silent"})

_TOP_KEYS: Final = frozenset({"schema_version", "device_types"})
_TYPE_KEYS: Final = frozenset({"code", "name", "sector", "description", "report_interval_s", "metrics", "rules"})
# The Vietnamese name, shown first by the console; aliases: other names people type ("fridge").
_TYPE_OPTIONAL_KEYS: Final = frozenset({"name_vi", "aliases"})
_METRIC_KEYS: Final = frozenset({"name", "unit", "description", "min", "max"})
_METRIC_OPTIONAL_KEYS: Final = frozenset({"group", "normal_steps"})
_RULE_KEYS: Final = frozenset({"kind", "duration_s", "severity", "message"})
_RULE_OPTIONAL_KEYS: Final = frozenset({"metric", "value"})

_L = TypeVar("_L", bound=str)


class CatalogError(IocError):
    """The device-type catalog file is missing, not JSON, or breaks a catalog rule; the message names where."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One measured quantity. Readings outside [min, max] are physically impossible for the sensor:
    they are stored but flagged."""

    name: str
    unit: str
    description: str
    min: float
    max: float
    group: str | None = None
    # Sudden steps in this direction are part of normal operation ("up": a field's irrigation, a tank's refill;
    # "both": rain beginning and ending), not a fault, however rare: the learned detectors need not have seen one.
    normal_steps: StepDirection | None = None

    def in_range(self, value: float) -> bool:
        return self.min <= value <= self.max


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """Data for one default alarm rule; `analytics` gives it behaviour.

    `threshold_above`/`threshold_below`: metric beyond `value` for `duration_s`;
    `rate_of_change`: metric moves by more than `value` within `duration_s`;
    `stuck`: metric unchanged (within optional tolerance `value`) for `duration_s`;
    `silent`: no report from the device for `duration_s` (`metric` is None);
    `low_battery`: metric (a battery voltage) below `value` for `duration_s`.
    """

    kind: RuleKind
    metric: str | None
    value: float | None
    duration_s: float
    severity: Severity
    message: str


@dataclass(frozen=True, slots=True)
class DeviceType:
    code: str
    name: str
    sector: Sector
    description: str
    report_interval_s: float
    metrics: tuple[MetricSpec, ...]
    rules: tuple[RuleSpec, ...]
    name_vi: str | None = None
    # Other names it answers to on the command line and in the API ("fridge" for the vaccine refrigerator).
    aliases: tuple[str, ...] = ()
    _by_name: Mapping[str, MetricSpec] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Frozen: set the precomputed lookup through object.__setattr__, once.
        object.__setattr__(self, "_by_name", MappingProxyType({m.name: m for m in self.metrics}))

    def metric(self, name: str) -> MetricSpec | None:
        return self._by_name.get(name)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    def rules_for(self, metric: str) -> tuple[RuleSpec, ...]:
        return tuple(rule for rule in self.rules if rule.metric == metric)

    @property
    def names(self) -> tuple[str, ...]:
        """Every name it answers to: code, English and Vietnamese names, aliases."""
        return tuple(n for n in (self.code, self.name, self.name_vi or "", *self.aliases) if n)


@dataclass(frozen=True, slots=True)
class Catalog:
    """All device types by code, in file order."""

    types: Mapping[str, DeviceType]

    def get(self, code: str) -> DeviceType | None:
        return self.types.get(code)

    def by_sector(self, sector: Sector) -> tuple[DeviceType, ...]:
        return tuple(t for t in self.types.values() if t.sector == sector)

    def __contains__(self, code: object) -> bool:
        return code in self.types

    def __iter__(self) -> Iterator[DeviceType]:
        return iter(self.types.values())

    def __len__(self) -> int:
        return len(self.types)


def load_catalog(path: Path | None = None) -> Catalog:
    """Read and validate the catalog; `path` defaults to the packaged `devices/data/device_types.json`."""
    where = str(path) if path is not None else f"devices/data/{CATALOG_RESOURCE}"
    try:
        if path is None:
            text = (resources.files("devices") / "data" / CATALOG_RESOURCE).read_text(encoding="utf-8")
        else:
            text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogError(f"{where}: cannot read: {exc}") from exc
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"{where}: not valid JSON: {exc}") from exc
    return parse_catalog(document, source=where)


def parse_catalog(document: object, *, source: str = "catalog") -> Catalog:
    """Validate an already-decoded catalog document (the JSON object) and build the `Catalog`."""
    top = _as_object(document, source)
    _check_keys(top, required=_TOP_KEYS, optional=frozenset(), where=source)
    version = top["schema_version"]
    if version != CATALOG_SCHEMA_VERSION or isinstance(version, bool):
        raise CatalogError(f"{source}: schema_version {version!r} is not supported (expected {CATALOG_SCHEMA_VERSION})")
    raw_types = top["device_types"]
    if not isinstance(raw_types, list) or not raw_types:
        raise CatalogError(f"{source}: device_types must be a non-empty list")
    types: dict[str, DeviceType] = {}
    alias_owner: dict[str, str] = {}
    for index, raw in enumerate(raw_types):
        device_type = _parse_type(raw, source=source, index=index)
        if device_type.code in types:
            raise CatalogError(f"{source}: device type {device_type.code!r}: code is defined twice")
        for alias in device_type.aliases:
            # One alias, one type: "fridge" must never mean two things.
            key = alias.casefold()
            if alias_owner.setdefault(key, device_type.code) != device_type.code:
                raise CatalogError(
                    f"{source}: device type {device_type.code!r}: alias {alias!r} already names {alias_owner[key]!r}"
                )
        types[device_type.code] = device_type
    return Catalog(types=MappingProxyType(types))


def _parse_type(raw: object, *, source: str, index: int) -> DeviceType:
    where = f"{source}: device_types[{index}]"
    obj = _as_object(raw, where)
    code = obj.get("code")
    if isinstance(code, str):
        # Name the type as soon as it has a name: that is what a reader searches the file for.
        where = f"{source}: device type {code!r}"
    _check_keys(obj, required=_TYPE_KEYS, optional=_TYPE_OPTIONAL_KEYS, where=where)
    code = _name(obj, "code", where)
    interval = _number(obj, "report_interval_s", where)
    if interval <= 0:
        raise CatalogError(f"{where}: field 'report_interval_s' must be > 0, got {interval}")

    raw_metrics = obj["metrics"]
    if not isinstance(raw_metrics, list) or not raw_metrics:
        raise CatalogError(f"{where}: field 'metrics' must be a non-empty list")
    metrics: list[MetricSpec] = []
    seen: set[str] = set()
    for position, raw_metric in enumerate(raw_metrics):
        metric = _parse_metric(raw_metric, where=f"{where}: metrics[{position}]")
        if metric.name in seen:
            raise CatalogError(f"{where}: metric {metric.name!r} is defined twice")
        seen.add(metric.name)
        metrics.append(metric)
    by_name = {m.name: m for m in metrics}
    groups: dict[str, int] = {}
    for metric in metrics:
        if metric.group is not None:
            groups[metric.group] = groups.get(metric.group, 0) + 1
    lonely = sorted(group for group, members in groups.items() if members < 2)
    if lonely:
        # A group names correlated sensors; one member correlates with nothing (usually a typo).
        raise CatalogError(f"{where}: group(s) {', '.join(map(repr, lonely))} have a single metric")

    raw_rules = obj["rules"]
    if not isinstance(raw_rules, list):
        raise CatalogError(f"{where}: field 'rules' must be a list")
    rules = tuple(
        _parse_rule(raw_rule, metrics=by_name, where=f"{where}: rules[{position}]")
        for position, raw_rule in enumerate(raw_rules)
    )
    return DeviceType(
        code=code,
        name=_text(obj, "name", where),
        sector=_literal(obj, "sector", SECTORS, where),
        description=_text(obj, "description", where),
        report_interval_s=interval,
        metrics=tuple(metrics),
        rules=rules,
        name_vi=_text(obj, "name_vi", where) if "name_vi" in obj else None,
        aliases=_aliases(obj, where) if "aliases" in obj else (),
    )


def _aliases(obj: Mapping[str, object], where: str) -> tuple[str, ...]:
    raw = obj["aliases"]
    if not isinstance(raw, list) or not all(isinstance(item, str) and item.strip() for item in raw):
        raise CatalogError(f"{where}: field 'aliases' must be a list of non-empty strings")
    return tuple(cast(list[str], raw))


def _parse_metric(raw: object, *, where: str) -> MetricSpec:
    obj = _as_object(raw, where)
    name = obj.get("name")
    if isinstance(name, str):
        where = f"{where} {name!r}"
    _check_keys(obj, required=_METRIC_KEYS, optional=_METRIC_OPTIONAL_KEYS, where=where)
    name = _name(obj, "name", where)
    unit = _text(obj, "unit", where)
    if unit not in UCUM_UNITS:
        raise CatalogError(f"{where}: field 'unit' {unit!r} is not a known UCUM code (see UCUM_UNITS)")
    low = _number(obj, "min", where)
    high = _number(obj, "max", where)
    if not low < high:
        raise CatalogError(f"{where}: field 'min' ({low}) must be below field 'max' ({high})")
    group = _name(obj, "group", where) if "group" in obj else None
    steps = _literal(obj, "normal_steps", STEP_DIRECTIONS, where) if "normal_steps" in obj else None
    return MetricSpec(
        name=name,
        unit=unit,
        description=_text(obj, "description", where),
        min=low,
        max=high,
        group=group,
        normal_steps=steps,
    )


def _parse_rule(raw: object, *, metrics: Mapping[str, MetricSpec], where: str) -> RuleSpec:
    obj = _as_object(raw, where)
    _check_keys(obj, required=_RULE_KEYS, optional=_RULE_OPTIONAL_KEYS, where=where)
    kind = _literal(obj, "kind", RULE_KINDS, where)
    where = f"{where} ({kind})"

    metric_name: str | None = None
    if kind == "silent":
        if obj.get("metric") is not None:
            raise CatalogError(f"{where}: field 'metric' must be absent for a silent rule (it watches the device)")
    else:
        if obj.get("metric") is None:
            raise CatalogError(f"{where}: field 'metric' is required")
        metric_name = _name(obj, "metric", where)
        if metric_name not in metrics:
            raise CatalogError(f"{where}: field 'metric' names {metric_name!r}, which this type does not define")

    value = _number(obj, "value", where) if obj.get("value") is not None else None
    if kind in _VALUE_KINDS and value is None:
        raise CatalogError(f"{where}: field 'value' is required")
    if kind == "silent" and value is not None:
        raise CatalogError(f"{where}: field 'value' must be absent for a silent rule")
    if kind in {"rate_of_change", "stuck"} and value is not None and value < 0:
        raise CatalogError(f"{where}: field 'value' must be >= 0, got {value}")
    if kind in _LEVEL_KINDS and metric_name is not None and value is not None:
        spec = metrics[metric_name]
        if not spec.in_range(value):
            raise CatalogError(
                f"{where}: field 'value' {value} is outside metric {metric_name!r} range "
                f"[{spec.min}, {spec.max}], so the rule could never fire"
            )

    if kind == "low_battery" and metric_name is not None and metrics[metric_name].unit != "V":
        raise CatalogError(f"{where}: field 'metric' must name a voltage (unit 'V'), {metric_name!r} is not")

    duration = _number(obj, "duration_s", where)
    # A window rule needs a window; a threshold may fire on a single reading (duration 0).
    needs_window = kind in _WINDOW_KINDS
    if duration < 0 or (needs_window and duration == 0):
        raise CatalogError(f"{where}: field 'duration_s' must be {'> 0' if needs_window else '>= 0'}, got {duration}")
    return RuleSpec(
        kind=kind,
        metric=metric_name,
        value=value,
        duration_s=duration,
        severity=_literal(obj, "severity", SEVERITIES, where),
        message=_text(obj, "message", where),
    )


def _as_object(raw: object, where: str) -> dict[str, object]:
    if not isinstance(raw, dict):
        raise CatalogError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    return cast(dict[str, object], raw)


def _check_keys(obj: Mapping[str, object], *, required: frozenset[str], optional: frozenset[str], where: str) -> None:
    unknown = sorted(set(obj) - required - optional)
    if unknown:
        raise CatalogError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}")
    missing = sorted(required - set(obj))
    if missing:
        raise CatalogError(f"{where}: missing field(s) {', '.join(map(repr, missing))}")


def _text(obj: Mapping[str, object], key: str, where: str) -> str:
    value = obj[key]
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(f"{where}: field {key!r} must be a non-empty string, got {value!r}")
    return value


def _name(obj: Mapping[str, object], key: str, where: str) -> str:
    value = obj[key]
    if not isinstance(value, str) or not NAME_PATTERN.fullmatch(value):
        raise CatalogError(f"{where}: field {key!r} must match {NAME_PATTERN.pattern}, got {value!r}")
    return value


def _number(obj: Mapping[str, object], key: str, where: str) -> float:
    value = obj[key]
    # bool is an int subclass in Python; `true` is never a valid number here.
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CatalogError(f"{where}: field {key!r} must be a finite number, got {value!r}")
    return float(value)


def _literal(obj: Mapping[str, object], key: str, allowed: tuple[_L, ...], where: str) -> _L:
    value = obj[key]
    for option in allowed:
        if value == option:
            return option
    raise CatalogError(f"{where}: field {key!r} must be one of {', '.join(allowed)}, got {value!r}")
