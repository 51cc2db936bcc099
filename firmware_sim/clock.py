"""Clocks the simulator reads time from: the wall clock, and a scaled clock for accelerated runs.

Every simulated timestamp comes from a clock given to the fleet, so a run is reproducible for a seed and a clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class Clock(Protocol):
    """Epoch seconds now, and how many simulated seconds pass per real second (for pacing the loop)."""

    speed: float

    def now(self) -> float: ...


class WallClock:
    """The machine's clock."""

    __slots__ = ("speed",)

    def __init__(self) -> None:
        self.speed = 1.0

    def now(self) -> float:
        return time.time()


class ScaledClock:
    """Starts at `start` (epoch seconds) and runs `speed` times faster than real time."""

    __slots__ = ("_mono", "_real0", "speed", "start")

    def __init__(self, start: float, *, speed: float = 1.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.start = start
        self.speed = speed
        self._mono = monotonic
        self._real0 = monotonic()

    def now(self) -> float:
        return self.start + (self._mono() - self._real0) * self.speed
