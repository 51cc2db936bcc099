"""When a learned-detector anomaly becomes an alarm: the policy (data) and its per-series gate (pure state).

Every score at or above the detector's threshold is still written to `anomalies`; an operator's alarm is
raised only when the policy admits it. Rules' alarms do not pass through here. Why a policy at all: the
detector flags whatever is new to it, and a young series (hours old, not yet a full day of physics seen)
finds much of normal life new; faults are rarer and either much stranger (a spike, a shift) or persistent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

PERSIST_WINDOW_MAX: Final = 62  # the recent points are bits of one int


@dataclass(frozen=True, slots=True)
class DetectorAlarmPolicy:
    """Which anomalies of one series may raise a detector alarm.

    - `learn_points`: the series' first points raise nothing (the detector's own warm-up is among them): its
      baseline is still forming. Counted in readings, so it follows the series' own report interval.
    - `learn_s`: nor does anything in the series' first `learn_s` of reading time (a day of learning sees a
      whole day's physics once, whatever the report interval);
    - a point with score ≥ `high_score` raises at once (clearly unlike anything learned);
    - otherwise `persist_points` anomalous points within the last `persist_window` points raise (a condition
      that lasts, not one odd value);
    - `device_gap_s`: after a detector alarm on a device, another detector alarm on any metric of the same
      device waits this long in reading time (one incident often moves several correlated metrics).
    """

    learn_points: int = 0
    learn_s: float = 0.0
    high_score: float = 0.0
    persist_points: int = 1
    persist_window: int = 1
    device_gap_s: float = 0.0

    def __post_init__(self) -> None:
        if self.learn_points < 0 or self.device_gap_s < 0 or self.learn_s < 0:
            raise ValueError("learn_points, learn_s and device_gap_s must not be negative")
        if not 1 <= self.persist_points <= self.persist_window <= PERSIST_WINDOW_MAX:
            raise ValueError(f"need 1 <= persist_points <= persist_window <= {PERSIST_WINDOW_MAX}")
        if not 0.0 <= self.high_score <= 1.0:
            raise ValueError("high_score is a detector score in [0, 1]")


# Every anomalous score raises (the job's behaviour before the policy; tests of the lifecycle use it).
EVERY_ANOMALY: Final = DetectorAlarmPolicy()
# The live defaults (`Settings.detector_alarm_*`). The production detectors keep their own anomalous state
# (onset, persistence and end are theirs), so the policy only holds alarms back while a series learns its
# normal: a day of reading time, which sees every hour of the day once whatever the report interval.
DEFAULT_POLICY: Final = DetectorAlarmPolicy(learn_s=86_400.0)


class DetectorAlarmGate:
    """A series' memory for the policy: how many points it has seen and which recent ones were anomalous."""

    __slots__ = ("first_ts", "points", "recent")

    def __init__(self) -> None:
        self.points = 0
        # One bit per recent point, newest lowest: 1 = anomalous.
        self.recent = 0
        self.first_ts: float | None = None

    def step(self, policy: DetectorAlarmPolicy, *, score: float, anomalous: bool, ts: float = 0.0) -> bool:
        """Feed one scored point (reading time `ts`); True when it may raise (the device-wide gap is the caller's
        to apply)."""
        self.points += 1
        if self.first_ts is None:
            self.first_ts = ts
        mask = (1 << policy.persist_window) - 1
        self.recent = ((self.recent << 1) | int(anomalous)) & mask
        if not anomalous or self.points <= policy.learn_points or ts - self.first_ts < policy.learn_s:
            return False
        if policy.high_score > 0.0 and score >= policy.high_score:
            return True
        return self.recent.bit_count() >= policy.persist_points

    def dump(self) -> dict[str, int | float | None]:
        return {"points": self.points, "recent": self.recent, "first_ts": self.first_ts}

    def load(self, data: Mapping[str, object]) -> None:
        points, recent = data.get("points", 0), data.get("recent", 0)
        if isinstance(points, int) and isinstance(recent, int):
            self.points, self.recent = points, recent
        first = data.get("first_ts")
        # A state saved before `first_ts` was kept: the series has been learning since before the restart.
        self.first_ts = float(first) if isinstance(first, int | float) else float("-inf")


def device_gap_open(policy: DetectorAlarmPolicy, *, last_raise_ts: float | None, ts: float) -> bool:
    """True when the device may have a new detector alarm at reading time `ts`."""
    return last_raise_ts is None or ts - last_raise_ts >= policy.device_gap_s
