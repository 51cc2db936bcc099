"""`ioc bench national`: the load of 34 provinces on their centers and on the national center, from our own measured
figures (the JSON results of `ioc bench ingest` and `ioc bench storage`), with arrival peaks simulated rather than
assumed: devices report on their own clocks (Poisson arrivals per second) or, in the worst case, all on the minute.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

SIMULATED_SECONDS = 3600
SECONDS_PER_YEAR = 365.25 * 86400


@dataclass(frozen=True, slots=True)
class NationalLoad:
    provinces: int = 34
    devices_per_province: int = 20_000
    interval_s: float = 60.0
    readings_per_message: float = 5.0
    # Each province center pushes one snapshot per period to the national center (api.federation).
    federation_period_s: float = 300.0
    federation_snapshot_bytes: int = 20_000
    seed: int = 1


@dataclass(frozen=True, slots=True)
class MeasuredRates:
    """What one core does, from our benchmark results (None: not measured yet)."""

    ingest_msgs_per_core_s: float | None = None
    db_rows_per_core_s: float | None = None
    storage_bytes_per_device_year: float | None = None
    sources: tuple[str, ...] = ()


def _find_number(data: object, *needles: str) -> float | None:
    """The first number in a bench result whose key holds every needle (results nest their figures)."""
    if isinstance(data, dict):
        for key, value in data.items():
            if all(n in key for n in needles) and isinstance(value, int | float) and not isinstance(value, bool):
                return float(value)
            if all(n in key for n in needles) and isinstance(value, dict) and value:
                # Per table (`ioc bench storage`'s bytes_per_device_year): the device-year costs them all.
                return float(sum(v for v in value.values() if isinstance(v, int | float)))
        for value in data.values():
            found = _find_number(value, *needles)
            if found is not None:
                return found
    return None


def read_measured(paths: list[Path]) -> MeasuredRates:
    ingest = db = storage = None
    sources = []
    for path in paths:
        data = json.loads(path.read_text(encoding="utf-8"))
        cpu = data.get("cpu_s", {}) if isinstance(data, dict) else {}
        if isinstance(data, dict) and "published" in data and cpu.get("ingest"):
            ingest = data["published"] / cpu["ingest"]
            if cpu.get("database"):
                db = data["stored_rows"] / cpu["database"]
            sources.append(str(path))
        per_device_year = _find_number(data, "bytes_per_device_year")
        if per_device_year is not None:
            storage = per_device_year
            sources.append(str(path))
    return MeasuredRates(ingest, db, storage, tuple(sources))


def _peaks(mean_per_s: float, *, seed: int) -> dict[str, float]:
    """Per-second arrivals over a simulated hour: devices on their own clocks are Poisson."""
    rng = np.random.default_rng(seed)
    per_second = rng.poisson(mean_per_s, SIMULATED_SECONDS)
    return {
        "mean": round(float(per_second.mean()), 1),
        "p99": round(float(np.percentile(per_second, 99)), 1),
        "max": float(per_second.max()),
    }


def _cores(load_per_s: float, per_core_s: float | None) -> float | None:
    return None if per_core_s is None else round(load_per_s / per_core_s, 2)


def simulate_national_load(load: NationalLoad, *, measured: list[Path]) -> dict[str, Any]:
    rates = read_measured(measured)
    province_msgs_s = load.devices_per_province / load.interval_s
    national_msgs_s = province_msgs_s * load.provinces
    province_peaks = _peaks(province_msgs_s, seed=load.seed)
    # Worst case: every device of a province reports in the same second (clocks aligned on the minute).
    aligned_burst = float(load.devices_per_province)
    rows_s = province_msgs_s * load.readings_per_message
    peak_rows_s = province_peaks["p99"] * load.readings_per_message
    storage = rates.storage_bytes_per_device_year
    federation_bytes_day = load.provinces * (86400 / load.federation_period_s) * load.federation_snapshot_bytes
    return {
        "load": asdict(load),
        "measured": asdict(rates),
        "province": {
            "msgs_per_s": round(province_msgs_s, 1),
            "msgs_per_s_simulated": province_peaks,
            "aligned_burst_msgs": aligned_burst,
            "rows_per_s": round(rows_s, 1),
            "rows_per_s_p99": round(peak_rows_s, 1),
            "ingest_cores_at_p99": _cores(province_peaks["p99"], rates.ingest_msgs_per_core_s),
            "db_cores_at_p99": _cores(peak_rows_s, rates.db_rows_per_core_s),
            # A burst is absorbed by the stream (JetStream keeps it) and drained at the sustained rate.
            "aligned_burst_drain_s": None
            if rates.ingest_msgs_per_core_s is None
            else round(aligned_burst / rates.ingest_msgs_per_core_s, 1),
            "storage_gb_per_year": None if storage is None else round(storage * load.devices_per_province / 1e9, 1),
        },
        "national_if_centralised": {
            "msgs_per_s": round(national_msgs_s, 1),
            "rows_per_s": round(national_msgs_s * load.readings_per_message, 1),
            "ingest_cores": _cores(national_msgs_s, rates.ingest_msgs_per_core_s),
            "db_cores": _cores(national_msgs_s * load.readings_per_message, rates.db_rows_per_core_s),
            "storage_tb_per_year": None
            if storage is None
            else round(storage * load.devices_per_province * load.provinces / 1e12, 2),
        },
        "federation": {
            "snapshots_per_day": round(load.provinces * 86400 / load.federation_period_s),
            "bytes_per_day": round(federation_bytes_day),
            "mb_per_year": round(federation_bytes_day * 365.25 / 1e6, 1),
            "mean_bits_per_s": round(federation_bytes_day * 8 / 86400, 1),
        },
        "readings_per_year_national": float(f"{national_msgs_s * load.readings_per_message * SECONDS_PER_YEAR:.3g}"),
        "ceil_ingest_workers_per_province": None
        if rates.ingest_msgs_per_core_s is None
        else math.ceil(province_peaks["p99"] / rates.ingest_msgs_per_core_s),
    }
