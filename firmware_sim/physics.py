"""Shared physics of the simulated world: Vietnamese local time, seasons, daylight, tides, noise processes.

Pure functions of time and of a `random.Random` passed in; no global random state.
"""

from __future__ import annotations

import math
import random
import time
from typing import Final

VN_UTC_OFFSET_S: Final = 7 * 3600
DAY_S: Final = 86_400.0
# Principal tidal constituents of the Mekong mouths (period h, amplitude m, phase rad): mixed, mainly semi-diurnal.
TIDE_CONSTITUENTS: Final = (
    (12.4206, 0.90, 0.0),  # M2
    (12.0000, 0.35, 1.1),  # S2
    (23.9345, 0.55, 2.3),  # K1
    (25.8193, 0.45, 0.7),  # O1
)


def local_hour(t: float) -> float:
    """Hour of day (0..24) in Vietnam (UTC+7)."""
    return ((t + VN_UTC_OFFSET_S) % DAY_S) / 3600.0


def local_day(t: float) -> int:
    """Days since the epoch in Vietnam local time (changes at local midnight)."""
    return int((t + VN_UTC_OFFSET_S) // DAY_S)


def weekday(t: float) -> int:
    """0 = Monday … 6 = Sunday, local time."""
    return (local_day(t) + 3) % 7  # 1970-01-01 was a Thursday


def day_of_year(t: float) -> int:
    return time.gmtime(t + VN_UTC_OFFSET_S).tm_yday


def wetness(t: float) -> float:
    """0 at the height of the dry season (April), 1 at the flood peak (early October)."""
    return 0.5 + 0.5 * math.cos(2 * math.pi * (day_of_year(t) - 280) / 365.25)


def bump(hour: float, center: float, width_h: float) -> float:
    """A Gaussian bump on the 24 h circle, 1 at `center`."""
    d = abs(hour - center) % 24.0
    d = min(d, 24.0 - d)
    return math.exp(-0.5 * (d / width_h) ** 2)


def cycle(hour: float, peak: float) -> float:
    """A cosine day cycle in -1..1 peaking at hour `peak`."""
    return math.cos(2 * math.pi * (hour - peak) / 24.0)


def daylight(hour: float) -> float:
    """Sun elevation factor 0..1 (sunrise 6:00, noon 12:00, sunset 18:00 near the tropics)."""
    return max(0.0, math.sin(math.pi * (hour - 6.0) / 12.0))


def tide_level(t: float, *, amplitude: float, lag_s: float) -> float:
    """Tidal height in metres around mean sea level at a station `lag_s` seconds up-river."""
    tt = t - lag_s
    return amplitude * sum(a * math.cos(2 * math.pi * tt / (p * 3600) + ph) for p, a, ph in TIDE_CONSTITUENTS)


def tide_rate(t: float, *, amplitude: float, lag_s: float) -> float:
    """d(tide_level)/dt in metres per hour."""
    tt = t - lag_s
    return amplitude * sum(
        -a * (2 * math.pi / p) * math.sin(2 * math.pi * tt / (p * 3600) + ph) for p, a, ph in TIDE_CONSTITUENTS
    )


def ou_step(x: float, *, mean: float, dt: float, tau: float, sigma: float, rng: random.Random) -> float:
    """One exact step of an Ornstein-Uhlenbeck process (stationary std `sigma`, correlation time `tau`)."""
    a = math.exp(-dt / tau)
    return mean + (x - mean) * a + sigma * math.sqrt(1.0 - a * a) * rng.gauss(0.0, 1.0)


def happens(rate_per_s: float, dt: float, rng: random.Random) -> bool:
    """Whether a Poisson event of `rate_per_s` occurs within `dt` seconds."""
    return rate_per_s > 0 and rng.random() < 1.0 - math.exp(-rate_per_s * dt)


def poisson(lam: float, rng: random.Random) -> int:
    """A Poisson draw; normal approximation for large means."""
    if lam <= 0:
        return 0
    if lam > 40:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, p = math.exp(-lam), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def binomial(n: int, p: float, rng: random.Random) -> int:
    if n <= 0:
        return 0
    if n > 40:
        return min(n, max(0, round(rng.gauss(n * p, math.sqrt(n * p * (1 - p))))))
    return sum(1 for _ in range(n) if rng.random() < p)
