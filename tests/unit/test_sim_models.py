"""Firmware device models: the catalogue's metrics exactly, physical ranges, and plausible physics."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest

from devices.catalog import load_catalog
from firmware_sim.models import MODELS, DeviceModel
from firmware_sim.physics import local_hour

# Midnight in Vietnam, in the dry season and in the flood season.
DRY_START = datetime(2026, 3, 10, 17, 0, tzinfo=UTC).timestamp()
WET_START = datetime(2026, 10, 5, 17, 0, tzinfo=UTC).timestamp()


def _run(
    code: str, *, seed: int, start: float, hours: float, interval_s: float | None = None
) -> tuple[list[float], list[dict[str, float]], list[Mapping[str, float]]]:
    """Times, reported readings, and the model's raw values before the firmware clamps them."""
    cls = MODELS[code]
    rng = random.Random(seed)
    model = cls(rng)
    raw: list[Mapping[str, float]] = []
    read = model._read

    def recording_read(t: float, r: random.Random) -> Mapping[str, float]:
        values = read(t, r)
        raw.append(dict(values))
        return values

    model._read = recording_read  # type: ignore[method-assign, assignment]
    step = interval_s or cls.report_interval_s
    times = [start + i * step for i in range(int(hours * 3600 / step))]
    out = [model.sample(t, rng) for t in times]
    return times, out, raw


def _pearson(xs: list[float], ys: list[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
    sy = math.sqrt(sum((y - my) ** 2 for y in ys))
    return sxy / (sx * sy)


def test_every_catalog_type_has_a_model_with_exactly_its_metrics_units_and_ranges() -> None:
    catalog = load_catalog()
    assert set(MODELS) == {t.code for t in catalog}
    for dtype in catalog:
        model = MODELS[dtype.code]
        assert model.sector == dtype.sector, dtype.code
        assert model.report_interval_s == dtype.report_interval_s, dtype.code
        assert [m.name for m in model.metrics] == list(dtype.metric_names), dtype.code
        for spec in model.metrics:
            catalog_spec = dtype.metric(spec.name)
            assert catalog_spec is not None
            assert (spec.unit, spec.low, spec.high) == (catalog_spec.unit, catalog_spec.min, catalog_spec.max), (
                dtype.code,
                spec.name,
            )


@pytest.mark.parametrize("code", sorted(MODELS))
@pytest.mark.parametrize("start", [DRY_START, WET_START], ids=["dry", "wet"])
def test_normal_operation_stays_inside_the_physical_ranges_before_any_clamping(code: str, start: float) -> None:
    catalog = load_catalog()
    dtype = catalog.get(code)
    assert dtype is not None
    for seed in range(4):
        _, out, raw = _run(code, seed=seed, start=start, hours=72)
        for values in (*out, *raw):
            assert set(values) == set(dtype.metric_names)
            for name, value in values.items():
                spec = dtype.metric(name)
                assert spec is not None
                assert math.isfinite(value)
                assert spec.min <= value <= spec.max, (code, seed, name, value)


def test_weather_station_has_a_day_cycle_and_no_sun_at_night() -> None:
    times, out, _ = _run("weather_station", seed=3, start=DRY_START, hours=24 * 7)
    afternoon = [o["air_temperature"] for t, o in zip(times, out, strict=True) if 13.5 <= local_hour(t) < 15.5]
    dawn = [o["air_temperature"] for t, o in zip(times, out, strict=True) if 4 <= local_hour(t) < 6]
    assert sum(afternoon) / len(afternoon) - sum(dawn) / len(dawn) > 4.0
    night_sun = [o["solar_radiation"] for t, o in zip(times, out, strict=True) if not 6 <= local_hour(t) <= 18]
    assert max(night_sun) == 0
    humid_dawn = [o["relative_humidity"] for t, o in zip(times, out, strict=True) if 4 <= local_hour(t) < 6]
    humid_noon = [o["relative_humidity"] for t, o in zip(times, out, strict=True) if 13.5 <= local_hour(t) < 15.5]
    assert sum(humid_dawn) / len(humid_dawn) > sum(humid_noon) / len(humid_noon) + 10


def test_pump_current_pressure_flow_and_vibration_move_together() -> None:
    _, out, _ = _run("pump_station", seed=5, start=WET_START, hours=48)
    names = ("motor_current", "discharge_pressure", "flow_rate", "vibration_velocity")
    series = {n: [o[n] for o in out] for n in names}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert _pearson(series[a], series[b]) > 0.8, (a, b)
    running = [o["flow_rate"] > 0 for o in out]
    starts = sum(1 for prev, cur in itertools.pairwise(running) if cur and not prev)
    assert starts >= 10  # the float switch cycles the pump many times in two days
    # The sump fills while the pump stands still and empties while it runs.
    for prev, cur in itertools.pairwise(out):
        if prev["flow_rate"] > 0 and cur["flow_rate"] > 0:
            assert cur["sump_level"] < prev["sump_level"] + 0.05


def test_vaccine_fridge_compressor_cycles_and_holds_two_to_eight() -> None:
    times, out, _ = _run("vaccine_fridge", seed=2, start=DRY_START, hours=48, interval_s=60)
    on = [o["compressor_on"] for o in out]
    cycles = sum(1 for prev, cur in itertools.pairwise(on) if prev == 1 and cur == 0)
    assert cycles >= 30  # a cycle every half hour or so
    temps = [o["temperature"] for o in out if o["mains_on"] == 1]
    assert sum(1 for t in temps if 2.0 <= t <= 8.0) / len(temps) > 0.95
    # A running compressor cools, a standing one lets the cabinet warm.
    running = [b["temperature"] - a["temperature"] for a, b in itertools.pairwise(out) if a["compressor_on"]]
    standing = [b["temperature"] - a["temperature"] for a, b in itertools.pairwise(out) if not a["compressor_on"]]
    assert sum(running) / len(running) < -0.1
    assert sum(standing) / len(standing) > 0.05
    doors = [o["door_open"] for t, o in zip(times, out, strict=True) if 7 <= local_hour(t) < 11.5]
    assert sum(doors) > 0
    night_doors = [o["door_open"] for t, o in zip(times, out, strict=True) if local_hour(t) < 6]
    assert sum(night_doors) == 0


def test_bus_moves_continuously_along_its_route() -> None:
    times, out, _ = _run("bus_tracker", seed=4, start=DRY_START, hours=24)
    moved = 0.0
    for (t0, a), (t1, b) in zip(zip(times, out, strict=True), zip(times[1:], out[1:], strict=False), strict=False):
        dy = (b["latitude"] - a["latitude"]) * 111_320
        dx = (b["longitude"] - a["longitude"]) * 111_320 * math.cos(math.radians(a["latitude"]))
        step_m = math.hypot(dx, dy)
        assert step_m <= 60 / 3.6 * (t1 - t0) + 1, (t0, step_m)  # never faster than 60 km/h
        moved += step_m
    assert moved > 50_000  # a day of service covers tens of kilometres
    in_service = [o for t, o in zip(times, out, strict=True) if 8 <= local_hour(t) < 20]
    assert max(o["speed"] for o in in_service) > 15
    assert min(o["speed"] for o in in_service) == 0  # it stops at stops
    night = [o for t, o in zip(times, out, strict=True) if 1 <= local_hour(t) < 4]
    assert all(o["speed"] == 0 for o in night)


def test_river_gauge_sees_two_tides_a_day_and_the_tide_reverses_the_dry_season_flow() -> None:
    _times, out, _ = _run("water_level_gauge", seed=1, start=DRY_START, hours=24 * 4)
    levels = [o["water_level"] for o in out]
    highs = sum(
        1 for i in range(6, len(levels) - 6) if levels[i] == max(levels[i - 6 : i + 7]) and levels[i] > min(levels)
    )
    assert 5 <= highs <= 10  # semi-diurnal: about two high waters a day
    assert min(o["flow_rate"] for o in out) < 0
    _, wet, _ = _run("water_level_gauge", seed=1, start=WET_START, hours=24 * 4)
    assert sum(o["water_level"] for o in wet) / len(wet) > sum(levels) / len(levels) + 0.3  # the flood


def test_salinity_intrudes_in_the_dry_season_only() -> None:
    _, dry, _ = _run("salinity_sensor", seed=7, start=DRY_START, hours=72)
    _, wet, _ = _run("salinity_sensor", seed=7, start=WET_START, hours=72)
    assert sum(o["salinity"] for o in dry) / len(dry) > 5 * sum(o["salinity"] for o in wet) / len(wet)
    assert _pearson([o["salinity"] for o in dry], [o["conductivity"] for o in dry]) > 0.99


def test_traffic_has_rush_hours_and_household_load_an_evening_peak() -> None:
    times, out, _ = _run("traffic_counter", seed=1, start=DRY_START, hours=24 * 5)
    rush = [o["vehicle_count"] for t, o in zip(times, out, strict=True) if 7 <= local_hour(t) < 8]
    night = [o["vehicle_count"] for t, o in zip(times, out, strict=True) if 1 <= local_hour(t) < 4]
    assert sum(rush) / len(rush) > 5 * sum(night) / len(night)
    assert all(o["motorbike_count"] <= o["vehicle_count"] for o in out)
    times, out, _ = _run("smart_meter", seed=1, start=DRY_START, hours=24 * 5)
    evening = [o["active_power"] for t, o in zip(times, out, strict=True) if 19 <= local_hour(t) < 21]
    small_hours = [o["active_power"] for t, o in zip(times, out, strict=True) if 2 <= local_hour(t) < 4]
    assert sum(evening) / len(evening) > 2 * sum(small_hours) / len(small_hours)
    imports = [o["energy_import"] for o in out]
    assert imports == sorted(imports)


def test_soil_moisture_dries_by_day_and_jumps_when_irrigated() -> None:
    _, out, _ = _run("soil_probe", seed=2, start=DRY_START, hours=24 * 10)
    moisture = [o["soil_moisture"] for o in out]
    jumps = sum(1 for a, b in itertools.pairwise(moisture) if b - a > 5)
    assert jumps >= 2
    falls = sum(1 for a, b in itertools.pairwise(moisture) if b < a)
    assert falls > len(moisture) / 2


def test_models_are_reproducible_for_a_seed() -> None:
    for code in MODELS:
        assert _run(code, seed=9, start=DRY_START, hours=6)[1] == _run(code, seed=9, start=DRY_START, hours=6)[1]
        assert _run(code, seed=9, start=DRY_START, hours=6)[1] != _run(code, seed=10, start=DRY_START, hours=6)[1]


def test_model_base_is_abstract() -> None:
    with pytest.raises(NotImplementedError):
        DeviceModel(random.Random(0)).sample(0.0, random.Random(0))
