"""Firmware device models, one per device type code: the physics behind each sensor's readings.

A model is a small state machine: `sample(t, rng)` advances its state from the previous sample to epoch second `t`
(in sub-steps) and returns the readings a real device of that type would report. Metric names, units and physical
ranges mirror the center's catalog (a unit test holds them equal) but are owned here: firmware knows only the wire.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Final, Literal

from firmware_sim.physics import (
    DAY_S,
    binomial,
    bump,
    cycle,
    daylight,
    happens,
    local_day,
    local_hour,
    ou_step,
    poisson,
    tide_level,
    tide_rate,
    weekday,
    wetness,
)

MetricKind = Literal["analog", "binary", "counter"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A metric as the firmware reports it; `kind` tells fault injection which metrics a value fault may hit."""

    name: str
    unit: str
    low: float
    high: float
    kind: MetricKind = "analog"
    decimals: int = 2


def _m(  # noqa: PLR0917 - a table of metrics reads best positionally
    name: str, unit: str, low: float, high: float, kind: MetricKind = "analog", decimals: int = 2
) -> MetricSpec:
    return MetricSpec(name, unit, low, high, kind, decimals)


BATTERY_LI_ION: Final = _m("battery_v", "V", 2.0, 4.5, decimals=3)


class DeviceModel:
    """Base of the device models; subclasses set the class variables and implement `_start`, `_advance`, `_read`."""

    type_code: ClassVar[str]
    sector: ClassVar[str]
    report_interval_s: ClassVar[float]
    metrics: ClassVar[tuple[MetricSpec, ...]]
    max_step_s: ClassVar[float] = 60.0
    # (metric, partner): the first follows the second by this model's physics; joint faults break such pairs.
    related: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(self, rng: random.Random) -> None:
        self._t: float | None = None

    def sample(self, t: float, rng: random.Random) -> dict[str, float]:
        """The readings at epoch second `t` (after advancing the state to `t`), inside the physical ranges."""
        if self._t is None:
            self._start(t, rng)
        elif t > self._t:
            steps = max(1, math.ceil((t - self._t) / self.max_step_s))
            dt = (t - self._t) / steps
            for i in range(1, steps + 1):
                self._advance(self._t + i * dt, dt, rng)
        self._t = t
        raw = self._read(t, rng)
        return {m.name: round(min(max(raw[m.name], m.low), m.high), m.decimals) for m in self.metrics}

    def _start(self, t: float, rng: random.Random) -> None:
        """Settle the initial state at the first sample time."""

    def _advance(self, t: float, dt: float, rng: random.Random) -> None:
        """Advance the state by `dt` seconds, ending at `t`."""

    def _read(self, t: float, rng: random.Random) -> Mapping[str, float]:
        raise NotImplementedError


def _battery(t: float, level: float, rng: random.Random) -> float:
    """A solar-topped Li-ion cell: charges by day, sags slowly at night."""
    return level + 0.25 * daylight(local_hour(t)) + rng.gauss(0.0, 0.004)


# ------------------------------------------------------------------------------------------- agriculture


class SoilProbe(DeviceModel):
    """Root-zone moisture drying by evapotranspiration, wetted by morning irrigation and wet-season rain."""

    type_code = "soil_probe"
    sector = "agriculture"
    report_interval_s = 900.0
    related = (("soil_ec", "soil_moisture"),)
    metrics = (
        _m("soil_moisture", "%", 0, 100),
        _m("soil_temperature", "Cel", -10, 70),
        _m("soil_ec", "dS/m", 0, 20, decimals=3),
        BATTERY_LI_ION,
    )

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.wilting = rng.uniform(10, 14)
        self.capacity = rng.uniform(38, 45)
        self.moisture = rng.uniform(22, 38)
        self.salinity = rng.uniform(0.0, 1.2)  # delta fields near the coast carry salt
        self.irrigation_rate_per_s = 1.0 / (rng.uniform(2, 4) * 2 * 3600)  # every 2-4 days, inside a 2 h window
        self.temp_noise = 0.0
        self.battery = rng.uniform(3.55, 3.75)

    def _advance(self, t: float, dt: float, rng: random.Random) -> None:
        hour, wet = local_hour(t), wetness(t)
        et_pct_per_h = (0.05 + 0.45 * daylight(hour)) * (1.3 - 0.5 * wet)
        frac = (self.moisture - self.wilting) / (self.capacity - self.wilting)
        self.moisture -= et_pct_per_h * max(frac, 0.0) * dt / 3600
        if 5.0 <= hour < 7.0 and happens(self.irrigation_rate_per_s, dt, rng):
            self.moisture += rng.uniform(10, 16)
        if 13.0 <= hour < 19.0 and happens(wet * 0.6 / (6 * 3600), dt, rng):  # afternoon storms, wet season
            self.moisture += rng.uniform(4, 14)
        self.moisture = min(self.moisture, self.capacity + 6)  # above field capacity drains quickly
        if self.moisture > self.capacity:
            self.moisture -= (self.moisture - self.capacity) * (1 - math.exp(-dt / 7200))
        self.temp_noise = ou_step(self.temp_noise, mean=0.0, dt=dt, tau=3600, sigma=0.3, rng=rng)

    def _read(self, t: float, rng: random.Random) -> Mapping[str, float]:
        hour = local_hour(t)
        temperature = 27.5 + 1.5 * (1 - wetness(t)) + 2.5 * cycle(hour, 15.5) + self.temp_noise
        moisture = self.moisture + rng.gauss(0.0, 0.15)
        return {
            "soil_moisture": moisture,
            "soil_temperature": temperature + rng.gauss(0.0, 0.05),
            "soil_ec": 0.15 + 0.025 * moisture + self.salinity * (1.2 - 0.01 * moisture) + rng.gauss(0.0, 0.01),
            "battery_v": _battery(t, self.battery, rng),
        }


class WeatherStation(DeviceModel):
    """Air temperature and humidity day cycles, monsoon winds, afternoon convective storms, atmospheric tide."""

    type_code = "weather_station"
    sector = "agriculture"
    report_interval_s = 300.0
    max_step_s = 30.0
    related = (("relative_humidity", "air_temperature"),)
    metrics = (
        _m("air_temperature", "Cel", -40, 60),
        _m("relative_humidity", "%", 0, 100, decimals=1),
        _m("rainfall", "mm", 0, 100),
        _m("wind_speed", "m/s", 0, 75),
        _m("wind_direction", "deg", 0, 360, decimals=0),
        _m("solar_radiation", "W/m2", 0, 1800, decimals=0),
        _m("air_pressure", "hPa", 850, 1100, decimals=1),
        BATTERY_LI_ION,
    )

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.base_temp = rng.uniform(24.5, 28.0)
        self.elevation_hpa = rng.uniform(0, 25)  # highland stations sit lower on the barometer
        self.temp_noise = 0.0
        self.cloud = 0.3
        self.wind = 2.0
        self.direction_wander = 0.0
        self.pressure_noise = 0.0
        self.rain_mm_h = 0.0
        self.rain_left_s = 0.0
        self.rain_acc = 0.0
        self.battery = rng.uniform(3.55, 3.75)

    def _advance(self, t: float, dt: float, rng: random.Random) -> None:
        hour, wet = local_hour(t), wetness(t)
        if self.rain_left_s > 0:
            self.rain_left_s -= dt
            self.rain_acc += self.rain_mm_h * dt / 3600
        else:
            self.rain_mm_h = 0.0
            rate = (0.2 + 2.0 * wet) * (0.2 + bump(hour, 16.0, 2.5)) / DAY_S
            if happens(rate, dt, rng):
                self.rain_mm_h = rng.uniform(4, 45)
                self.rain_left_s = rng.expovariate(1 / 2700)
        self.temp_noise = ou_step(self.temp_noise, mean=0.0, dt=dt, tau=3600, sigma=0.7, rng=rng)
        self.cloud = ou_step(self.cloud, mean=0.2 + 0.5 * wet, dt=dt, tau=1800, sigma=0.2, rng=rng)
        self.wind = ou_step(self.wind, mean=2.0 + 1.5 * cycle(hour, 15.0) ** 2, dt=dt, tau=600, sigma=0.8, rng=rng)
        self.direction_wander = ou_step(self.direction_wander, mean=0.0, dt=dt, tau=3600, sigma=30, rng=rng)
        self.pressure_noise = ou_step(self.pressure_noise, mean=0.0, dt=dt, tau=DAY_S, sigma=1.5, rng=rng)

    def _read(self, t: float, rng: random.Random) -> Mapping[str, float]:
        hour, wet = local_hour(t), wetness(t)
        raining = self.rain_mm_h > 0
        temperature = self.base_temp + 1.5 * (1 - wet) + 4.0 * cycle(hour, 14.5) + self.temp_noise
        if raining:
            temperature -= 2.5
        dew_point = 22.5 + 2.0 * wet
        humidity = 100 * math.exp(
            17.62 * dew_point / (243.12 + dew_point) - 17.62 * temperature / (243.12 + temperature)
        )
        if raining:
            humidity = max(humidity, 94.0)
        rain, self.rain_acc = self.rain_acc, 0.0
        cloud = min(max(self.cloud, 0.0), 0.95)
        solar = 1050 * daylight(hour) * (1 - 0.75 * cloud) * (0.25 if raining else 1.0)
        monsoon = 225.0 if wet > 0.5 else 45.0  # south-west monsoon in the wet season, north-east in the dry
        return {
            "air_temperature": temperature,
            "relative_humidity": min(humidity + rng.gauss(0, 0.5), 100.0),
            "rainfall": rain,
            "wind_speed": max(self.wind, 0.0) + (4.0 if raining else 0.0),
            "wind_direction": (monsoon + self.direction_wander) % 360,
            "solar_radiation": max(0.0, solar + rng.gauss(0, 5)) if solar > 0 else 0.0,
            "air_pressure": 1010.5
            - 3.5 * wet
            - self.elevation_hpa
            + 1.2 * math.cos(2 * math.pi * (hour - 10) / 12)
            + self.pressure_noise
            - (1.5 if raining else 0.0),
            "battery_v": _battery(t, self.battery, rng),
        }


class WaterLevelGauge(DeviceModel):
    """A Mekong-delta river gauge: mixed semi-diurnal tide on top of the seasonal flood; the tide reverses the flow."""

    type_code = "water_level_gauge"
    sector = "agriculture"
    report_interval_s = 600.0
    metrics = (
        _m("water_level", "m", -5, 40, decimals=3),
        _m("flow_rate", "m3/s", -20000, 60000, decimals=1),
        _m("water_temperature", "Cel", 0, 45),
        _m("battery_v", "V", 0, 16, decimals=2),
    )

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.tide_amplitude = rng.uniform(0.4, 1.1)  # damped up-river
        self.tide_lag_s = rng.uniform(0, 6 * 3600)
        self.flood_m = rng.uniform(0.6, 1.4)
        self.river_size = rng.uniform(0.3, 1.8)
        self.noise = 0.0

    def _advance(self, t: float, dt: float, rng: random.Random) -> None:
        self.noise = ou_step(self.noise, mean=0.0, dt=dt, tau=1800, sigma=0.03, rng=rng)

    def _read(self, t: float, rng: random.Random) -> Mapping[str, float]:
        wet = wetness(t)
        level = 0.2 + self.flood_m * wet + tide_level(t, amplitude=self.tide_amplitude, lag_s=self.tide_lag_s)
        rate_m_h = tide_rate(t, amplitude=self.tide_amplitude, lag_s=self.tide_lag_s)
        flow = self.river_size * (1500 + 9000 * wet) - self.river_size * 9000 * rate_m_h
        return {
            "water_level": level + self.noise + rng.gauss(0, 0.005),
            "flow_rate": flow * (1 + rng.gauss(0, 0.01)),
            "water_temperature": 28.5 + 1.2 * (1 - wet) + 0.8 * cycle(local_hour(t), 16) + rng.gauss(0, 0.05),
            "battery_v": 12.5 + 0.8 * daylight(local_hour(t)) + rng.gauss(0, 0.02),
        }


class SalinitySensor(DeviceModel):
    """Salinity intrusion: high in the dry season (peaking in March-April), pushed in by each flood tide."""

    type_code = "salinity_sensor"
    sector = "agriculture"
    report_interval_s = 900.0
    related = (("conductivity", "salinity"),)
    metrics = (
        _m("salinity", "g/L", 0, 50, decimals=3),
        _m("conductivity", "mS/cm", 0, 100, decimals=3),
        _m("water_temperature", "Cel", 0, 45),
        BATTERY_LI_ION,
    )

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.peak_salinity = rng.uniform(4, 25)  # distance from the sea sets the dry-season peak
        self.tide_lag_s = rng.uniform(0, 6 * 3600)
        self.noise = 0.0
        self.battery = rng.uniform(3.55, 3.75)

    def _advance(self, t: float, dt: float, rng: random.Random) -> None:
        self.noise = ou_step(self.noise, mean=0.0, dt=dt, tau=6 * 3600, sigma=0.08, rng=rng)

    def _read(self, t: float, rng: random.Random) -> Mapping[str, float]:
        dry = 1 - wetness(t)
        tide = tide_level(t, amplitude=1.0, lag_s=self.tide_lag_s + 3600) / 2.25  # salt lags the water level
        salinity = self.peak_salinity * dry**1.5 * (0.7 + 0.3 * tide) * math.exp(self.noise) + 0.05
        return {
            "salinity": salinity + rng.gauss(0, 0.01),
            "conductivity": 0.25 + 1.56 * salinity + rng.gauss(0, 0.02),
            "water_temperature": 28.5 + 1.2 * dry + 0.8 * cycle(local_hour(t), 16) + rng.gauss(0, 0.05),
            "battery_v": _battery(t, self.battery, rng),
        }


class AquaculturePond(DeviceModel):
    """Shrimp or fish pond: photosynthesis drives oxygen and pH up by day, respiration drains them by night."""

    type_code = "aquaculture_pond"
    sector = "agriculture"
    report_interval_s = 300.0
    related = (("ph", "dissolved_oxygen"),)
    metrics = (
        _m("dissolved_oxygen", "mg/L", 0, 20),
        _m("ph", "[pH]", 0, 14),
        _m("water_temperature", "Cel", 0, 45),
        _m("salinity", "g/L", 0, 50),
    )

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.bloom = rng.uniform(0.7, 1.3)  # algae density sets the day-night swing
        self.salinity = rng.uniform(5, 22)
        self.salinity_base = self.salinity
        self.do_noise = 0.0

    def _advance(self, t: float, dt: float, rng: random.Random) -> None:
        self.do_noise = ou_step(self.do_noise, mean=0.0, dt=dt, tau=1800, sigma=0.4, rng=rng)
        self.salinity = ou_step(self.salinity, mean=self.salinity_base, dt=dt, tau=5 * DAY_S, sigma=1.0, rng=rng)

    def _read(self, t: float, rng: random.Random) -> Mapping[str, float]:
        photo = cycle(local_hour(t), 15.0)
        return {
            "dissolved_oxygen": 6.2 + 3.0 * self.bloom * photo + self.do_noise,
            "ph": 7.8 + 0.4 * self.bloom * photo + 0.1 * self.do_noise + rng.gauss(0, 0.01),
            "water_temperature": 29.0 + 1.0 * (1 - wetness(t)) + 1.6 * cycle(local_hour(t), 15.5) + rng.gauss(0, 0.05),
            "salinity": self.salinity + rng.gauss(0, 0.05),
        }


# ------------------------------------------------------------------------------------------------ energy


class SmartMeter(DeviceModel):
    """Household load: morning and evening peaks, dry-season air conditioning, some roofs export solar at noon."""

    type_code = "smart_meter"
    sector = "energy"
    report_interval_s = 900.0
    related = (("current", "active_power"),)
    metrics = (
        _m("active_power", "kW", -200, 1000, decimals=3),
        _m("energy_import", "kW.h", 0, 1e9, "counter", decimals=3),
        _m("energy_export", "kW.h", 0, 1e9, "counter", decimals=3),
        _m("voltage", "V", 0, 300, decimals=1),
        _m("current", "A", 0, 1000, decimals=2),
        _m("power_factor", "1", -1, 1, decimals=3),
        _m("frequency", "Hz", 45, 55, decimals=3),
    )

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.scale = rng.uniform(0.6, 2.0)
        self.pv_kw = rng.uniform(2, 5) if rng.random() < 0.3 else 0.0
        self.energy_import = rng.uniform(1_000, 20_000)
        self.energy_export = rng.uniform(0, 2_000) if self.pv_kw else 0.0
        self.appliances = 0.0
        self.cloud = 0.3
        self.voltage_noise = 0.0
        self.frequency = 50.0
        self.pf_noise = 0.0
        self.power = 0.0

    def _load_kw(self, t: float) -> float:
        hour, dry = local_hour(t), 1 - wetness(t)
        base = 0.25 + 0.7 * bump(hour, 6.5, 0.8) + 1.7 * bump(hour, 19.8, 1.6) + 0.7 * dry * bump(hour, 13.5, 2.5)
        return self.scale * base + max(self.appliances, -0.2)

    def _advance(self, t: float, dt: float, rng: random.Random) -> None:
        self.appliances = ou_step(self.appliances, mean=0.0, dt=dt, tau=300, sigma=0.25 * self.scale, rng=rng)
        self.cloud = ou_step(self.cloud, mean=0.2 + 0.5 * wetness(t), dt=dt, tau=1800, sigma=0.2, rng=rng)
        self.voltage_noise = ou_step(self.voltage_noise, mean=0.0, dt=dt, tau=600, sigma=1.5, rng=rng)
        self.frequency = ou_step(self.frequency, mean=50.0, dt=dt, tau=60, sigma=0.03, rng=rng)
        self.pf_noise = ou_step(self.pf_noise, mean=0.0, dt=dt, tau=900, sigma=0.015, rng=rng)
        power = self._net_kw(t)
        self.energy_import += max(power, 0.0) * dt / 3600
        self.energy_export += max(-power, 0.0) * dt / 3600

    def _net_kw(self, t: float) -> float:
        solar = self.pv_kw * daylight(local_hour(t)) * (1 - 0.7 * min(max(self.cloud, 0.0), 1.0))
        return max(self._load_kw(t), 0.05) - solar

    def _read(self, t: float, rng: random.Random) -> Mapping[str, float]:
        power = self._net_kw(t)
        voltage = 229.0 - 4.0 * min(abs(power) / 4, 1.5) + self.voltage_noise
        pf = min(0.99, 0.93 + self.pf_noise)
        return {
            "active_power": power,
            "energy_import": self.energy_import,
            "energy_export": self.energy_export,
            "voltage": voltage,
            "current": abs(power) * 1000 / (voltage * pf),
            "power_factor": pf,
            "frequency": self.frequency,
        }


class TransformerMonitor(DeviceModel):
    """Distribution transformer: daily load curve, phase unbalance, top-oil heating with hours of thermal lag."""

    type_code = "transformer_monitor"
    sector = "energy"
    report_interval_s = 300.0
    related = (("winding_temperature", "oil_temperature"), ("current_l1", "load_pct"), ("voltage_l2", "voltage_l1"))
    metrics = (
        _m("load_pct", "%", 0, 200, decimals=1),
        _m("oil_temperature", "Cel", -10, 150, decimals=1),
        _m("winding_temperature", "Cel", -10, 200, decimals=1),
        _m("voltage_l1", "V", 0, 300, decimals=1),
        _m("voltage_l2", "V", 0, 300, decimals=1),
        _m("voltage_l3", "V", 0, 300, decimals=1),
        _m("current_l1", "A", 0, 3000, decimals=1),
        _m("current_l2", "A", 0, 3000, decimals=1),
        _m("current_l3", "A", 0, 3000, decimals=1),
    )

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.rated_kva = rng.choice((250.0, 400.0, 560.0, 630.0))
        self.scale = rng.uniform(0.6, 1.05)
        self.commercial = rng.uniform(0.0, 0.5)
        self.unbalance = tuple(rng.uniform(-0.08, 0.08) for _ in range(3))
        self.load_noise = 0.0
        self.oil = 0.0

    def _load(self, t: float) -> float:
        hour = local_hour(t)
        shape = 0.35 + self.commercial * bump(hour, 11.0, 3.0) + 0.6 * bump(hour, 19.5, 2.0)
        shape += 0.15 * (1 - wetness(t)) * bump(hour, 14.0, 3.0)
        return max(0.02, self.scale * shape + self.load_noise)

    def _ambient(self, t: float) -> float:
        return 28.0 + 1.5 * (1 - wetness(t)) + 4.0 * cycle(local_hour(t), 14.5)

    def _oil_target(self, t: float) -> float:
        k = self._load(t)
        return self._ambient(t) + 45.0 * math.pow((6 * k * k + 1) / 7, 0.8)

    def _start(self, t: float, rng: random.Random) -> None:
        self.oil = self._oil_target(t)

    def _advance(self, t: float, dt: float, rng: random.Random) -> None:
        self.load_noise = ou_step(self.load_noise, mean=0.0, dt=dt, tau=900, sigma=0.03, rng=rng)
        a = math.exp(-dt / (3 * 3600))
        self.oil = self.oil * a + self._oil_target(t) * (1 - a)

    def _read(self, t: float, rng: random.Random) -> Mapping[str, float]:
        k = self._load(t)
        rated_a = self.rated_kva * 1000 / (3 * 230)
        readings: dict[str, float] = {
            "load_pct": 100 * k,
            "oil_temperature": self.oil + rng.gauss(0, 0.1),
            "winding_temperature": self.oil + 20.0 * k**1.6 + rng.gauss(0, 0.1),
        }
        for i, u in enumerate(self.unbalance, start=1):
            readings[f"current_l{i}"] = rated_a * k * (1 + u) + rng.gauss(0, 0.5)
            readings[f"voltage_l{i}"] = 232.0 - 9.0 * k * (1 + u) + rng.gauss(0, 0.3)
        return readings


class SolarInverter(DeviceModel):
    """Rooftop or farm PV: clear-sky bell curve dimmed by passing clouds, a daily energy register reset at midnight."""

    type_code = "solar_inverter"
    sector = "energy"
    report_interval_s = 300.0
    related = (("ac_power", "dc_power"),)
    metrics = (
        _m("dc_power", "kW", 0, 500, decimals=3),
        _m("ac_power", "kW", 0, 500, decimals=3),
        _m("energy_today", "kW.h", 0, 5000, "counter", decimals=3),
        _m("grid_voltage", "V", 0, 300, decimals=1),
        _m("grid_frequency", "Hz", 45, 55, decimals=3),
        _m("inverter_temperature", "Cel", -20, 100, decimals=1),
    )

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.capacity_kw = rng.choice((10.0, 30.0, 50.0, 100.0, 250.0))
        self.cloud = 0.3
        self.energy_today = 0.0
        self.day = -1
        self.heat = 0.0
        self.frequency = 50.0

    def _dc_kw(self, t: float) -> float:
        cloud = min(max(self.cloud, 0.0), 0.95)
        return self.capacity_kw * 0.85 * math.pow(daylight(local_hour(t)), 1.2) * (1 - 0.8 * cloud)

    def _start(self, t: float, rng: random.Random) -> None:
        self.day = local_day(t)
        hour = local_hour(t)
        # The register already holds what the morning produced.
        self.energy_today = self.capacity_kw * 0.85 * 0.6 * max(0.0, (min(hour, 18.0) - 6.0)) * 0.55

    def _advance(self, t: float, dt: float, rng: random.Random) -> None:
        if local_day(t) != self.day:
            self.day, self.energy_today = local_day(t), 0.0
        self.cloud = ou_step(self.cloud, mean=0.15 + 0.45 * wetness(t), dt=dt, tau=1200, sigma=0.2, rng=rng)
        self.frequency = ou_step(self.frequency, mean=50.0, dt=dt, tau=60, sigma=0.03, rng=rng)
        ac = self._ac_kw(t)
        self.energy_today += ac * dt / 3600
        a = math.exp(-dt / 600)
        self.heat = self.heat * a + (ac / self.capacity_kw) * (1 - a)

    def _ac_kw(self, t: float) -> float:
        dc = self._dc_kw(t)
        return 0.97 * dc if dc > 0.005 * self.capacity_kw else 0.0

    def _read(self, t: float, rng: random.Random) -> Mapping[str, float]:
        dc, ac = self._dc_kw(t), self._ac_kw(t)
        ambient = 28.0 + 4.0 * cycle(local_hour(t), 14.5)
        return {
            "dc_power": dc,
            "ac_power": ac,
            "energy_today": self.energy_today,
            "grid_voltage": 229.0 + 4.0 * ac / self.capacity_kw + rng.gauss(0, 0.5),
            "grid_frequency": self.frequency,
            "inverter_temperature": ambient + 28.0 * self.heat + rng.gauss(0, 0.2),
        }


class PumpStation(DeviceModel):
    """Drainage pump on a float switch: the sump fills, the pump starts, current, pressure, flow and vibration
    rise together with its speed, the sump empties, the pump stops."""

    type_code = "pump_station"
    sector = "energy"
    report_interval_s = 60.0
    max_step_s = 10.0
    related = (
        ("flow_rate", "discharge_pressure"),
        ("motor_current", "flow_rate"),
        ("vibration_velocity", "discharge_pressure"),
    )
    metrics = (
        _m("motor_current", "A", 0, 1000, decimals=1),
        _m("discharge_pressure", "bar", 0, 25, decimals=3),
        _m("flow_rate", "m3/h", 0, 20000, decimals=1),
        _m("vibration_velocity", "mm/s", 0, 50, decimals=3),
        _m("sump_level", "m", 0, 15, decimals=3),
    )

    START_LEVEL_M: ClassVar[float] = 3.5
    STOP_LEVEL_M: ClassVar[float] = 1.2

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.rated_flow = rng.uniform(400, 2500)
        self.rated_current = self.rated_flow * rng.uniform(0.08, 0.1)
        self.rated_pressure = rng.uniform(2.0, 5.0)
        self.sump_area_m2 = self.rated_flow * rng.uniform(0.08, 0.12)  # fills in about 40 min, empties in 25
        self.level = rng.uniform(self.STOP_LEVEL_M, self.START_LEVEL_M)
        self.running = rng.random() < 0.5
        self.speed = 0.95
        self.inflow_factor = 0.5

    def _advance(self, t: float, dt: float, rng: random.Random) -> None:
        self.speed = ou_step(self.speed, mean=0.92, dt=dt, tau=600, sigma=0.04, rng=rng)
        self.inflow_factor = ou_step(
            self.inflow_factor, mean=0.35 + 0.35 * wetness(t), dt=dt, tau=3600, sigma=0.08, rng=rng
        )
        inflow = self.rated_flow * max(self.inflow_factor, 0.05)
        outflow = self.rated_flow * self.speed if self.running else 0.0
        self.level += (inflow - outflow) * dt / 3600 / self.sump_area_m2
        self.level = max(self.level, 0.2)
        if self.running and self.level <= self.STOP_LEVEL_M:
            self.running = False
        elif not self.running and self.level >= self.START_LEVEL_M:
            self.running = True

    def _read(self, t: float, rng: random.Random) -> Mapping[str, float]:
        s = min(max(self.speed, 0.6), 1.05) if self.running else 0.0
        return {
            "motor_current": self.rated_current * (0.25 + 0.75 * s**3) * (1 if self.running else 0)
            + rng.gauss(0, 0.3) * s,
            "discharge_pressure": self.rated_pressure * s * s + abs(rng.gauss(0, 0.01)),
            "flow_rate": self.rated_flow * s * (1 + rng.gauss(0, 0.005)),
            "vibration_velocity": 0.08 + 2.8 * s * s + abs(rng.gauss(0, 0.05)),
            "sump_level": self.level + rng.gauss(0, 0.005),
        }


# --------------------------------------------------------------------------------------------- transport


def _traffic_profile(t: float) -> float:
    """Share of the peak flow on an urban road: motorbike rush hours at 7:30 and 17:30, quieter at weekends."""
    hour = local_hour(t)
    profile = 0.06 + 0.5 * bump(hour, 12.5, 3.5) + 0.9 * bump(hour, 7.5, 0.9) + 0.95 * bump(hour, 17.6, 1.1)
    if weekday(t) >= 5:
        profile *= 0.7
    return min(profile, 1.0)


class TrafficCounter(DeviceModel):
    """Loop counter on an urban road: rush-hour flows, mostly motorbikes, speed falling as occupancy rises."""

    type_code = "traffic_counter"
    sector = "transport"
    report_interval_s = 60.0
    metrics = (
        _m("vehicle_count", "{vehicle}", 0, 2000, "counter", decimals=0),
        _m("motorbike_count", "{vehicle}", 0, 2000, "counter", decimals=0),
        _m("average_speed", "km/h", 0, 200, decimals=1),
        _m("occupancy", "%", 0, 100, decimals=1),
    )

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.peak_flow_h = rng.uniform(1500, 6000)
        self.motorbike_share = rng.uniform(0.72, 0.9)
        self.free_speed = rng.uniform(35, 55)
        self.count = 0.0
        self.motorbikes = 0.0
        self.jam = 0.0

    def _advance(self, t: float, dt: float, rng: random.Random) -> None:
        flow_h = self.peak_flow_h * _traffic_profile(t)
        n = poisson(flow_h * dt / 3600, rng)
        self.count += n
        self.motorbikes += binomial(n, self.motorbike_share, rng)
        self.jam = ou_step(self.jam, mean=0.0, dt=dt, tau=600, sigma=0.05, rng=rng)

    def _read(self, t: float, rng: random.Random) -> Mapping[str, float]:
        count, motorbikes = self.count, self.motorbikes
        self.count = self.motorbikes = 0.0
        occupancy = min(95.0, 100 * (0.55 * _traffic_profile(t) ** 1.4 + max(self.jam, -0.02)))
        speed = self.free_speed * (1 - 0.75 * occupancy / 100) + rng.gauss(0, 0.8) if count else 0.0
        return {
            "vehicle_count": count,
            "motorbike_count": motorbikes,
            "average_speed": speed,
            "occupancy": max(occupancy, 0.0) if count else 0.0,
        }


# Bus routes as (lat, lon) waypoints along real streets (coarse).
BUS_ROUTES: Final[tuple[tuple[tuple[float, float], ...], ...]] = (
    # Ho Chi Minh City: Ben Thanh - Cho Lon along Tran Hung Dao
    ((10.7725, 106.6980), (10.7680, 106.6930), (10.7620, 106.6840), (10.7560, 106.6740), (10.7530, 106.6630),
     (10.7500, 106.6520)),
    # Ha Noi: Hoan Kiem - Cau Giay
    ((21.0285, 105.8520), (21.0270, 105.8420), (21.0300, 105.8300), (21.0320, 105.8150), (21.0330, 105.8000),
     (21.0340, 105.7950)),
    # Can Tho: Ninh Kieu - Cai Rang
    ((10.0340, 105.7880), (10.0280, 105.7830), (10.0200, 105.7790), (10.0120, 105.7760), (10.0020, 105.7720),
     (9.9980, 105.7650)),
)  # fmt: skip
_EARTH_M_PER_DEG: Final = 111_320.0


def _segment_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    dy = (b[0] - a[0]) * _EARTH_M_PER_DEG
    dx = (b[1] - a[1]) * _EARTH_M_PER_DEG * math.cos(math.radians((a[0] + b[0]) / 2))
    return math.hypot(dx, dy)


def _bearing(a: tuple[float, float], b: tuple[float, float]) -> float:
    dy = b[0] - a[0]
    dx = (b[1] - a[1]) * math.cos(math.radians((a[0] + b[0]) / 2))
    return math.degrees(math.atan2(dx, dy)) % 360


class BusTracker(DeviceModel):
    """A city bus shuttling along its route: stops every few hundred metres, slower at rush hour, passengers
    boarding by the hour's demand; positions move continuously along the street."""

    type_code = "bus_tracker"
    sector = "transport"
    report_interval_s = 30.0
    max_step_s = 2.0
    metrics = (
        _m("latitude", "deg", -90, 90, decimals=6),
        _m("longitude", "deg", -180, 180, decimals=6),
        _m("speed", "km/h", 0, 160, decimals=1),
        _m("heading", "deg", 0, 360, decimals=1),
        _m("passenger_count", "{passenger}", 0, 150, decimals=0),
    )
    CAPACITY: ClassVar[int] = 80
    STOP_SPACING_M: ClassVar[float] = 450.0

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.route = BUS_ROUTES[rng.randrange(len(BUS_ROUTES))]
        self.cumulative = [0.0]
        for a, b in zip(self.route, self.route[1:], strict=False):
            self.cumulative.append(self.cumulative[-1] + _segment_m(a, b))
        self.length = self.cumulative[-1]
        self.position = rng.uniform(0, self.length)
        self.direction = rng.choice((1, -1))
        self.next_stop = self._stop_after(self.position)
        self.dwell_s = 0.0
        self.speed_ms = 0.0
        self.cruise_noise = 0.0
        self.passengers = rng.randint(5, 40)

    def _stop_after(self, position: float) -> float:
        if self.direction > 0:
            return min((math.floor(position / self.STOP_SPACING_M) + 1) * self.STOP_SPACING_M, self.length)
        return max((math.ceil(position / self.STOP_SPACING_M) - 1) * self.STOP_SPACING_M, 0.0)

    def _advance(self, t: float, dt: float, rng: random.Random) -> None:
        hour = local_hour(t)
        self.cruise_noise = ou_step(self.cruise_noise, mean=0.0, dt=dt, tau=120, sigma=1.5, rng=rng)
        if self.dwell_s > 0 or not 5.0 <= hour < 22.0:
            self.dwell_s = max(0.0, self.dwell_s - dt)
            self.speed_ms = 0.0
            return
        rush = max(bump(hour, 7.5, 1.0), bump(hour, 17.6, 1.2))
        target = max(2.0, (26.0 - 14.0 * rush) / 3.6 + self.cruise_noise)
        self.speed_ms += (target - self.speed_ms) * (1 - math.exp(-dt / 15))  # accelerate smoothly
        step = self.speed_ms * dt
        if abs(self.next_stop - self.position) <= step:
            self.position = self.next_stop
            self.speed_ms = 0.0
            self.dwell_s = rng.uniform(15, 40)
            alight = sum(1 for _ in range(self.passengers) if rng.random() < 0.18)
            demand = 2 + 10 * rush + 3 * bump(hour, 12, 3)
            self.passengers = min(self.CAPACITY, self.passengers - alight + poisson(demand, rng))
            if self.position in (0.0, self.length):
                self.direction = -self.direction
                self.dwell_s = rng.uniform(120, 300)  # layover at the terminus
                self.passengers = poisson(demand, rng)
            self.next_stop = self._stop_after(self.position)
        else:
            self.position += self.direction * step

    def _locate(self) -> tuple[float, float, float]:
        s = min(max(self.position, 0.0), self.length)
        for i in range(1, len(self.cumulative)):
            if s <= self.cumulative[i] or i == len(self.cumulative) - 1:
                a, b = self.route[i - 1], self.route[i]
                span = self.cumulative[i] - self.cumulative[i - 1]
                f = (s - self.cumulative[i - 1]) / span if span else 0.0
                heading = _bearing(a, b) if self.direction > 0 else (_bearing(a, b) + 180) % 360
                return a[0] + f * (b[0] - a[0]), a[1] + f * (b[1] - a[1]), heading
        raise AssertionError("unreachable")

    def _read(self, t: float, rng: random.Random) -> Mapping[str, float]:
        lat, lon, heading = self._locate()
        return {
            "latitude": lat,
            "longitude": lon,
            "speed": self.speed_ms * 3.6,
            "heading": heading,
            "passenger_count": float(self.passengers),
        }


class ParkingSensor(DeviceModel):
    """A magnetometer bay sensor: cars arrive by the hour's demand and stay about an hour and a half."""

    type_code = "parking_sensor"
    sector = "transport"
    report_interval_s = 600.0
    metrics = (
        _m("occupied", "1", 0, 1, "binary", decimals=0),
        _m("magnetic_field", "uT", 0, 2000, decimals=1),
        _m("battery_v", "V", 2.0, 3.8, decimals=3),
    )

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.occupied = rng.random() < 0.4
        self.vehicle_field = rng.uniform(180, 650)
        self.battery = rng.uniform(3.55, 3.65)

    def _advance(self, t: float, dt: float, rng: random.Random) -> None:
        hour = local_hour(t)
        if self.occupied:
            if happens(1 / 5400, dt, rng):
                self.occupied = False
        elif happens((0.1 + 1.4 * bump(hour, 9, 2) + 1.6 * bump(hour, 18.5, 2)) / 3600, dt, rng):
            self.occupied = True
            self.vehicle_field = rng.uniform(180, 650)

    def _read(self, t: float, rng: random.Random) -> Mapping[str, float]:
        field = self.vehicle_field if self.occupied else 12.0
        return {
            "occupied": 1.0 if self.occupied else 0.0,
            "magnetic_field": field + rng.gauss(0, 2.0),
            "battery_v": self.battery - 0.02 * cycle(local_hour(t), 4) + rng.gauss(0, 0.003),
        }


# ------------------------------------------------------------------------------------------------- health


class VaccineFridge(DeviceModel):
    """A 2-8 Cel vaccine refrigerator: thermostat cycling of the compressor, door openings in clinic hours,
    mains cuts that stop the compressor while the logger runs on battery."""

    type_code = "vaccine_fridge"
    sector = "health"
    report_interval_s = 300.0
    max_step_s = 10.0
    metrics = (
        _m("temperature", "Cel", -40, 60),
        _m("door_open", "1", 0, 1, "binary", decimals=0),
        _m("compressor_on", "1", 0, 1, "binary", decimals=0),
        _m("mains_on", "1", 0, 1, "binary", decimals=0),
        BATTERY_LI_ION,
    )
    ON_AT_C: ClassVar[float] = 6.0
    OFF_AT_C: ClassVar[float] = 3.0
    COOLING_C_PER_S: ClassVar[float] = 0.3 / 60

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.temperature = rng.uniform(3.5, 5.5)
        self.compressor = rng.random() < 0.4
        self.door_left_s = 0.0
        self.outage_left_s = 0.0
        self.battery = 4.1
        self.insulation_s = rng.uniform(3.0, 5.0) * 3600

    def _advance(self, t: float, dt: float, rng: random.Random) -> None:
        hour = local_hour(t)
        clinic = 7.0 <= hour < 11.5 or 13.5 <= hour < 16.5
        if self.door_left_s > 0:
            self.door_left_s -= dt
        elif clinic and happens(5 / 3600, dt, rng):
            self.door_left_s = rng.uniform(15, 70)
        if self.outage_left_s > 0:
            self.outage_left_s -= dt
            self.battery = max(3.3, self.battery - 0.08 * dt / 3600)
        else:
            self.battery = min(4.15, self.battery + 0.3 * dt / 3600)
            if happens(1 / (4 * DAY_S), dt, rng):
                self.outage_left_s = rng.uniform(1200, 7200)
        ambient = 29.0 + 3.0 * cycle(hour, 14.5)
        leak_tau = 1200.0 if self.door_left_s > 0 else self.insulation_s
        self.temperature += (ambient - self.temperature) * (1 - math.exp(-dt / leak_tau))
        mains = self.outage_left_s <= 0
        if not mains:
            self.compressor = False
        elif self.temperature >= self.ON_AT_C:
            self.compressor = True
        elif self.temperature <= self.OFF_AT_C:
            self.compressor = False
        if self.compressor:
            self.temperature -= self.COOLING_C_PER_S * dt

    def _read(self, t: float, rng: random.Random) -> Mapping[str, float]:
        return {
            "temperature": self.temperature + rng.gauss(0, 0.03),
            "door_open": 1.0 if self.door_left_s > 0 else 0.0,
            "compressor_on": 1.0 if self.compressor else 0.0,
            "mains_on": 1.0 if self.outage_left_s <= 0 else 0.0,
            "battery_v": self.battery + rng.gauss(0, 0.003),
        }


class OxygenTank(DeviceModel):
    """A hospital liquid-oxygen tank: wards draw more by day, the level falls until the tanker refills it."""

    type_code = "oxygen_tank"
    sector = "health"
    report_interval_s = 60.0
    related = (("pressure", "flow_rate"),)
    metrics = (
        _m("pressure", "bar", 0, 25, decimals=3),
        _m("level", "%", 0, 100, decimals=2),
        _m("flow_rate", "m3/h", 0, 500, decimals=2),
    )

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.base_flow = rng.uniform(20, 120)
        self.capacity_m3 = self.base_flow * rng.uniform(100, 160)  # 4-6 days between deliveries
        self.level = rng.uniform(30, 95)
        self.refill_left_s = 0.0
        self.flow_noise = 0.0
        self.pressure_noise = 0.0

    def _flow(self, t: float) -> float:
        return max(0.0, self.base_flow * (0.8 + 0.35 * bump(local_hour(t), 10.5, 4.0)) + self.flow_noise)

    def _advance(self, t: float, dt: float, rng: random.Random) -> None:
        self.flow_noise = ou_step(self.flow_noise, mean=0.0, dt=dt, tau=600, sigma=0.06 * self.base_flow, rng=rng)
        self.pressure_noise = ou_step(self.pressure_noise, mean=0.0, dt=dt, tau=300, sigma=0.04, rng=rng)
        self.level -= 100 * self._flow(t) * dt / 3600 / self.capacity_m3
        if self.refill_left_s > 0:
            self.refill_left_s -= dt
            self.level += 70.0 * dt / 1800  # a 30-minute delivery
        elif self.level < 22 and happens(1 / 7200, dt, rng):
            self.refill_left_s = 1800.0
        self.level = min(max(self.level, 0.0), 97.0)

    def _read(self, t: float, rng: random.Random) -> Mapping[str, float]:
        flow = self._flow(t)
        pressure = 4.3 - 0.5 * (flow / self.base_flow - 1) + self.pressure_noise
        if self.level < 5:
            pressure *= self.level / 5
        return {"pressure": pressure, "level": self.level + rng.gauss(0, 0.02), "flow_rate": flow}


class AirQualityMonitor(DeviceModel):
    """Roadside air quality: traffic rush hours and night-time inversions raise particulates, rain washes them out,
    the dry season is worst."""

    type_code = "air_quality_monitor"
    sector = "health"
    report_interval_s = 300.0
    related = (("pm10", "pm2_5"),)
    metrics = (
        _m("pm2_5", "ug/m3", 0, 1000, decimals=1),
        _m("pm10", "ug/m3", 0, 2000, decimals=1),
        _m("co2", "[ppm]", 0, 10000, decimals=0),
        _m("temperature", "Cel", -20, 60, decimals=1),
        _m("humidity", "%", 0, 100, decimals=1),
    )

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.base_pm = rng.uniform(15, 45)
        self.coarse_ratio = rng.uniform(1.4, 2.0)
        self.log_noise = 0.0
        self.washout = 0.0

    def _advance(self, t: float, dt: float, rng: random.Random) -> None:
        self.log_noise = ou_step(self.log_noise, mean=0.0, dt=dt, tau=3600, sigma=0.25, rng=rng)
        self.washout *= math.exp(-dt / (6 * 3600))
        if happens(wetness(t) * 0.8 / DAY_S, dt, rng):
            self.washout = 0.6

    def _read(self, t: float, rng: random.Random) -> Mapping[str, float]:
        hour, wet = local_hour(t), wetness(t)
        shape = 1 + 0.6 * bump(hour, 7.5, 1.2) + 0.5 * bump(hour, 18.5, 1.5) + 0.4 * bump(hour, 23.0, 3.0)
        pm25 = self.base_pm * (1.6 - 0.8 * wet) * shape * math.exp(self.log_noise) * (1 - self.washout)
        temperature = 27.0 + 1.5 * (1 - wet) + 4.0 * cycle(hour, 14.5)
        return {
            "pm2_5": pm25 + rng.gauss(0, 0.5),
            "pm10": pm25 * self.coarse_ratio + rng.gauss(0, 1.0),
            "co2": 425 + 70 * _traffic_profile(t) + 30 * self.log_noise + rng.gauss(0, 4),
            "temperature": temperature + rng.gauss(0, 0.1),
            "humidity": min(98.0, 78 + 12 * wet - 14 * cycle(hour, 14.5) + rng.gauss(0, 0.5)),
        }


MODELS: Final[Mapping[str, type[DeviceModel]]] = {
    m.type_code: m
    for m in (
        SoilProbe,
        WeatherStation,
        WaterLevelGauge,
        SalinitySensor,
        AquaculturePond,
        SmartMeter,
        TransformerMonitor,
        SolarInverter,
        PumpStation,
        TrafficCounter,
        BusTracker,
        ParkingSensor,
        VaccineFridge,
        OxygenTank,
        AirQualityMonitor,
    )
}
TYPE_CODES: Final = tuple(MODELS)


def model_for(type_code: str) -> type[DeviceModel]:
    """The firmware model of a device type; KeyError names the known types."""
    try:
        return MODELS[type_code]
    except KeyError:
        raise KeyError(f"no firmware model for device type {type_code!r}; known: {', '.join(TYPE_CODES)}") from None
