"""Faults that match the field, for `ioc bench detection`: rates per device-day turned into per-report
probabilities for each device type, and windows sized from the type's report interval and its catalog rules
(a stuck sensor stays stuck longer than its type's stuck rule; a dropout or an outage outlasts its silent rule).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from devices.catalog import Catalog
from firmware_sim.faults import FaultKind, FaultSpec, TypeFaults

DAY_S: Final = 86_400.0
# Expected starts per device-day of each scored kind. A value or joint fault starts only on a metric that is
# moving (and a joint one only on a type with related metrics), so fewer start than these rates ask for.
FIELD_RATES_PER_DAY: Final[Mapping[FaultKind, float]] = {
    "spike": 0.8,
    "level_shift": 0.6,
    "drift": 0.6,
    "stuck": 0.5,
    "noise": 0.6,
    "dropout": 0.3,
    "offline": 0.3,
    "correlation_break": 0.8,
    "slow_leak": 0.8,
    "neighbour_drift": 0.8,
}
# A stuck sensor outlasts its type's stuck rule by this factor (range); a lost link outlasts the silent rule.
STUCK_OVER_RULE: Final = (1.2, 1.5)
SILENCE_OVER_RULE: Final = (1.5, 3.0)


def field_fault_spec(
    catalog: Catalog,
    *,
    rates_per_day: Mapping[FaultKind, float] = FIELD_RATES_PER_DAY,
    start_after_ms: int = 0,
) -> FaultSpec:
    """A `FaultSpec` with, per device type, per-report probabilities for `rates_per_day` at the type's report
    interval and windows sized from its rules; no fault starts before `start_after_ms`."""
    per_type: dict[str, TypeFaults] = {}
    for dtype in catalog:
        interval_s = dtype.report_interval_s
        probabilities = {kind: min(1.0, rate * interval_s / DAY_S) for kind, rate in rates_per_day.items()}
        durations: dict[FaultKind, tuple[float, float]] = {}
        stuck = [r.duration_s for r in dtype.rules if r.kind == "stuck"]
        if stuck:
            shortest = min(stuck)
            durations["stuck"] = (STUCK_OVER_RULE[0] * shortest, STUCK_OVER_RULE[1] * shortest)
        silent = [r.duration_s for r in dtype.rules if r.kind == "silent"]
        if silent:
            rule_s = max(silent)
            for kind in ("dropout", "offline"):
                durations[kind] = (SILENCE_OVER_RULE[0] * rule_s, SILENCE_OVER_RULE[1] * rule_s)
        per_type[dtype.code] = TypeFaults(probabilities=probabilities, durations_s=durations)
    return FaultSpec(per_type=per_type, start_after_ms=start_after_ms)
