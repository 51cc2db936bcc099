"""The anomalous state of one series (`is_anomaly`): 1 from the onset of a fault for as long as the series stays
unlike its normal self, 0 once it is back. Pure, causal, O(1) per point, plain floats.

Every test is against what this series has shown while normal, so a series whose normal life is jumpy (a pump
switching on and off, a bus stopping) needs a larger departure than a smooth one. Onsets:
- `jump`: a step from the previous reading far beyond the largest normal step (a spike, the start of a level
  shift). It lasts while the readings stay nearer the level they jumped to than the level they left, so a
  spike is one point and a shift lasts as long as the shift. A jump landing back near the series' slow level is
  the end of a fault the state did not hold (a drift that snaps back): anomalous for that one reading;
- `volatile`: several large steps close together, beyond a high quantile of normal steps (a noise burst; also
  a jump followed by more large steps). It lasts until the steps are calm again;
- `out_of_range`: a value well outside the range seen while normal (a drift that has built up, a shift
  hidden in a smooth trend). It lasts while the value stays outside;
- `stuck`: identical readings in a row on a value the series has not rested on for long, improbably long given
  how often it repeats itself away from its rests (and, for a series that rests for long on values other than
  zero, longer than its rests by a margin). It lasts while the run does. A repeat while the whole device rests
  (the caller says so: a parked bus freezes every metric at once, a stuck sensor freezes alone) is a rest, never
  `stuck`, and does not count toward a later stuck run; a value a run once stayed on, even one flagged stuck (a
  humidity sensor's 98 % cap at night), is a value the series rests on;
- `new_state`: a third value in a series that has only ever taken two (a binary state gone wrong).
No step starts a state when it spans missing readings (the caller gives reading times) or when the device's type
declares steps that way normal (`normal_step`: an irrigation, a tank's refill, rain).
While anomalous nothing is learnt (a fault does not become the normal); after `max_anomalous_points` the
state ends and the series learns again (a change that lasts that long is the new normal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

STATE_VERSION: Final = 1
REST_VALUES: Final = 4  # values a series rests on (0 of a stopped pump, the night's 0 of a solar panel), kept
LONG_REST_RUN: Final = 10  # a series with runs this long rests for real (rather than repeating by chance)
RETURN_POINTS: Final = 5  # a step back this soon after a jump state ended is its end, not a new fault
GAP_INTERVALS: Final = 2.5  # this many usual intervals without a reading: readings are missing
# `FaultState.normal_step`: 1 (up), -1 (down), this (either way) or 0 (none): which sudden steps are normal.
BOTH_WAYS: Final = 2


@dataclass(frozen=True, slots=True)
class FaultStateConfig:
    """Tunables of `FaultState` (chosen on the simulated fleet's tuning seeds, see `bench.detection_replay`)."""

    learn_points: int = 100  # the state stays 0 until the series has moved this often (its normal is first learnt)
    step_alpha: float = 0.02  # the normal step size: mean |x - previous x| of normal points
    quantile_alpha: float = 0.01  # the running high quantile of normal step sizes
    quantile: float = 0.98
    jump_z: float = 8.0  # a step this many normal step sizes ...
    jump_margin: float = 3.0  # ... and this far beyond the largest normal step starts a `jump`
    volatile_margin: float = 1.5  # steps beyond this x the high quantile of normal steps ...
    volatile_z: float = 4.0  # ... and this many normal step sizes ...
    volatile_points: int = 3  # ... this many of the last `volatile_window`, adding up to more than
    # `volatile_margin` x the largest four-step swing seen while normal, start a `volatile` state
    volatile_window: int = 4
    calm_points: int = 2  # a `volatile` state ends after this many calm steps
    hold_steps: float = 2.0  # a `jump` lasts while the series stays this many normal steps x √points away
    range_margin: float = 0.5  # beyond the normal range by this fraction of it: `out_of_range`
    stuck_improbability: float = 1e-6  # a run of repeats less likely than this is `stuck` ...
    stuck_margin: float = 2.5  # ... or, on a value the series rests on, longer than this x its longest rest
    max_anomalous_points: int = 300
    max_step_decay: float = 1.0  # the largest normal step forgets (per normal point): 1 never
    slow_alpha: float = 0.02  # the slow level of normal readings (~50 points), which lags behind a creeping fault
    return_share: float = 0.5  # a jump landing this near the slow level (share of the step) is a fault ending


_FLOATS: Final = (
    "lo",
    "hi",
    "prev",
    "prev_before",
    "step",
    "step_max",
    "step_q",
    "baseline",
    "jumped_to",
    "s1",
    "s2",
    "s3",
    "swing_max",
    "slow",
    "last_t",
    "interval",
)
_INTS: Final = (
    "n",
    "moves",
    "falls",
    "since_exit",
    "run",
    "run_rested",
    "repeats",
    "rest_repeats",
    "other_run_max",
    "recent",
    "anomalous_points",
    "calm",
)


class FaultState:
    """The anomalous state of one series; `step(x)` feeds one value and returns the state after it."""

    __slots__ = (*_FLOATS, *_INTS, "anomalous", "config", "distinct", "normal_step", "onset", "resting", "rests")

    def __init__(self, config: FaultStateConfig | None = None) -> None:
        self.config = config or FaultStateConfig()
        self.n = 0
        self.moves = 0  # normal readings that differ from the one before
        self.falls = 0  # normal readings below the one before (none: a counter, whose drop to zero is a reset)
        self.since_exit = RETURN_POINTS + 1  # readings since an anomalous state ended
        self.lo = self.hi = 0.0
        self.prev = math.nan
        self.prev_before = math.nan  # the reading before `prev`
        self.step = 0.0  # mean normal |step|
        self.step_max = 0.0
        self.step_q = 0.0
        self.s1 = self.s2 = self.s3 = 0.0  # the three step sizes before this one
        self.swing_max = 0.0  # the largest sum of four consecutive normal step sizes
        self.slow = math.nan  # slow EWMA of normal readings (NaN: none yet)
        self.last_t = -math.inf  # reading time of the last reading, when the caller gives times
        self.interval = 0.0  # the usual time between readings (0: not known yet)
        self.run = 0  # identical readings in a row beyond the first
        self.run_rested = 0  # of those, the ones made while the whole device rested
        self.repeats = 0  # normal readings equal to the one before
        self.rest_repeats = 0  # of those, the ones in long runs (rests): not chance repeats
        self.rests: dict[float, int] = {}  # value → longest normal run on it, for the values rested on longest
        self.other_run_max = 0  # longest normal run on any other value
        self.distinct: list[float] = []  # up to three distinct values seen (two: a binary series)
        self.recent = 0  # bits of the last steps beyond the volatility bar, newest lowest
        self.anomalous = False
        self.resting = False  # this repeat came while the whole device rests
        self.onset = ""  # why the current (or last) anomalous state began
        # 1 / -1 / `BOTH_WAYS`: sudden steps up / down / either way are normal for this series (its device type
        # says so); 0: none are.
        # Configuration from the catalog, set by the owner after creating or restoring the state (not saved).
        self.normal_step = 0
        self.anomalous_points = 0
        self.calm = 0
        self.baseline = 0.0  # a `jump`'s level before and after the step
        self.jumped_to = 0.0

    # persistence -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: getattr(self, name) for name in (*_FLOATS, *_INTS)}
        state.update(
            anomalous=self.anomalous,
            resting=self.resting,
            onset=self.onset,
            distinct=list(self.distinct),
            rests=[[v, n] for v, n in self.rests.items()],
            version=STATE_VERSION,
        )
        return state

    @classmethod
    def from_state(cls, state: dict[str, Any], config: FaultStateConfig | None = None) -> FaultState:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported fault state version: {state.get('version')!r}")
        found = cls(config)
        # A field added since the state was saved starts afresh (its initial value), as in a new series.
        for name in _FLOATS:
            setattr(found, name, float(state.get(name, getattr(found, name))))
        for name in _INTS:
            setattr(found, name, int(state.get(name, getattr(found, name))))
        found.anomalous = bool(state["anomalous"])
        found.resting = bool(state.get("resting", False))
        found.onset = str(state["onset"])
        found.distinct = [float(v) for v in state["distinct"]]
        found.rests = {float(v): int(n) for v, n in state["rests"]}
        return found

    # one point -------------------------------------------------------------------------------------------
    def update(self, x: float, *, resting: bool = False, t: float | None = None) -> bool:
        """Feed value `x` (not NaN); return whether the series is anomalous after it. `resting`: the device as a
        whole is at rest (most of its metrics repeat at this reading), so a repeat here is a rest. `t`: its reading
        time in seconds, if known: a step across missing readings (a lost link) is no sudden step."""
        gap = False
        if t is not None:
            # The usual time between readings is the shortest seen; a reading after a longer wait than
            # `GAP_INTERVALS` of them follows missing readings. Written out: this runs once per reading.
            dt = t - self.last_t
            self.last_t = t
            if 0.0 < dt < math.inf:
                if dt < self.interval or self.interval <= 0.0:
                    self.interval = dt
                else:
                    gap = dt > GAP_INTERVALS * self.interval
        self.n += 1
        if self.n == 1:
            self.lo = self.hi = self.prev = x
            self.distinct.append(x)
            return False
        prev = self.prev
        repeated = x == prev
        if not repeated and self.run:
            self._end_run(prev)
        self.run = self.run + 1 if repeated else 0
        if not repeated:
            self.run_rested = 0
        elif resting:
            self.run_rested += 1
        self.prev_before, self.prev = prev, x
        binary = len(self.distinct) <= 2
        new_value = x not in self.distinct
        size = abs(x - prev)
        self.since_exit += 1
        swing = size + self.s1 + self.s2 + self.s3
        self.s1, self.s2, self.s3 = size, self.s1, self.s2
        self.resting = resting and repeated
        if self.anomalous:
            return self._hold(x, size, swing)
        learning = self.moves < self.config.learn_points
        normal_step = self.normal_step
        if (gap or normal_step) and not learning:
            along = size if gap or normal_step == BOTH_WAYS else (x - prev) * normal_step
            if along > self._volatile_bar():
                # A step the device's type calls normal (an irrigation, a refill, rain), or one across missing
                # readings: its new level is learnt, its size is not (it would blunt the step tests), and it starts
                # no state.
                self.s1 = 0.0
                self._learn(x, size, repeated, binary=binary, value_only=True)
                return False
        onset = "" if learning else self._onset(x, size, swing, binary=binary, new=new_value)
        if onset:
            self.onset = onset
            self.anomalous = True
            self.anomalous_points = 1
            self.calm = 0
            self.baseline, self.jumped_to = prev, x
            if onset == "return":
                self.onset, self.baseline = "jump", x  # a jump with no step to hold: it ends at the next reading
            return True
        self._learn(x, size, repeated, binary=binary)
        self.swing_max = max(self.swing_max, swing)
        return False

    def _volatile_bar(self) -> float:
        cfg = self.config
        return max(cfg.volatile_z * self.step, cfg.volatile_margin * self.step_q)

    def _onset(self, x: float, size: float, swing: float, *, binary: bool, new: bool) -> str:
        cfg = self.config
        if binary:
            return "new_state" if new else ""
        self.recent = ((self.recent << 1) | int(size > self._volatile_bar())) & ((1 << cfg.volatile_window) - 1)
        if size > max(cfg.jump_z * self.step, cfg.jump_margin * self.step_max):
            if self._reset(x) or self._returning(x):
                return ""
            if abs(x - self.slow) < cfg.return_share * size:
                # Back near the series' slow level: a fault the state did not hold (a drift, a leak) just ended.
                # Flagged for this reading only (see `update`), the step is not learnt.
                return "return"
            return "jump"
        if self.recent.bit_count() >= cfg.volatile_points and swing > cfg.volatile_margin * self.swing_max:
            return "volatile"
        if self._outside(x, cfg.range_margin):
            return "out_of_range"
        if self.run > self.run_rested and not self.resting and self._stuck(x):
            return "stuck"
        return ""

    def _returning(self, x: float) -> bool:
        """A step back, about as large as the one that began a jump state that ended moments ago: the end of that
        fault (the state let go a little early, the signal under it moving on), not a new one."""
        if self.since_exit > RETURN_POINTS:
            return False
        onset_step = self.jumped_to - self.baseline
        step = x - self.prev_before
        return onset_step * step < 0 and 0.5 <= abs(step) / abs(onset_step) <= 2.0

    def _reset(self, x: float) -> bool:
        """A counter (a series that has never fallen) dropping back to its start: a new day's register."""
        return self.falls == 0 and x < self.prev_before and x <= self.lo + 0.1 * (self.hi - self.lo)

    def _outside(self, x: float, margin: float) -> bool:
        span = self.hi - self.lo
        return x > self.hi + margin * span or x < self.lo - margin * span

    def _stuck(self, x: float) -> bool:
        cfg = self.config
        rested = self.rests.get(x)
        if rested is not None and rested >= LONG_REST_RUN:
            # A value the series has rested on for long (a solar panel's night-time 0) is a resting state: how long
            # a rest lasts depends on how much of one the learning saw (a night begun at 2 am is a short night).
            return False
        run = self.run - self.run_rested  # repeats while the whole device rested are rests
        long_rests = [r for v, r in self.rests.items() if r >= LONG_REST_RUN and v != 0.0]
        if long_rests or self.other_run_max >= LONG_REST_RUN:
            # A series that rests for long on other values than zero (a parked bus, a day's energy total over the
            # night, a congested road) cannot tell a stuck sensor from a rest until the run outlasts its longest
            # rest by the margin.
            return run > cfg.stuck_margin * max(*long_rests, self.other_run_max, self.rests.get(0.0, 0))
        # A series that rests for long only at zero (a pump, a solar panel at night) is judged on its other
        # values alone: their longest runs, and how often it repeats itself away from its rests.
        short_max = max((r for r in self.rests.values() if r < LONG_REST_RUN), default=0)
        if run <= max(cfg.stuck_margin * max(self.other_run_max, short_max), rested or 0):
            return False
        # How often this series repeats itself while normal (Laplace-smoothed), to the power of the run.
        chance = max(self.repeats - self.rest_repeats, 0)
        p = (chance + 1) / (max(self.n - self.rest_repeats, chance) + 2)
        return run * math.log(p) < math.log(cfg.stuck_improbability)

    def _end_run(self, value: float) -> None:
        """A run of repeats of `value` ended: remember how long this series rests on its values. A run flagged
        `stuck` is remembered too: a series that stays on exactly the same value again another time is resting
        there (at a saturation cap, a zero, a parking spot), not stuck."""
        if self.anomalous and self.onset != "stuck":
            return
        run = self.run
        if value in self.rests:
            self.rests[value] = max(self.rests[value], run)
            return
        if len(self.rests) < REST_VALUES:
            self.rests[value] = run
            return
        shortest = min(self.rests, key=self.rests.__getitem__)
        if run > self.rests[shortest]:
            self.other_run_max = max(self.other_run_max, self.rests.pop(shortest))
            self.rests[value] = run
        else:
            self.other_run_max = max(self.other_run_max, run)

    def _learn(self, x: float, size: float, repeated: bool, *, binary: bool, value_only: bool = False) -> None:
        cfg = self.config
        if len(self.distinct) < 3 and x not in self.distinct:
            self.distinct.append(x)
        if x < self.prev_before and not self._reset(x):
            self.falls += 1
        self.lo = min(self.lo, x)
        self.hi = max(self.hi, x)
        slow = self.slow
        self.slow = x if slow != slow else slow + cfg.slow_alpha * (x - slow)  # noqa: PLR0124 - NaN test, hot path
        if value_only:
            return
        if repeated:
            self.repeats += 1
            if self.run >= LONG_REST_RUN:
                self.rest_repeats += LONG_REST_RUN if self.run == LONG_REST_RUN else 1
            return  # a series resting on a value says nothing about the size of its steps
        self.moves += 1
        if binary:
            return
        # Normal step sizes, in the series' unit: their mean (a step is clipped at 10 means), a slowly
        # forgotten maximum and a stochastic-approximation high quantile.
        self.step += cfg.step_alpha * (min(size, 10.0 * self.step if self.step > 0 else size) - self.step)
        self.step_max = max(self.step_max * cfg.max_step_decay, size)
        q = cfg.quantile
        self.step_q += cfg.quantile_alpha * (q if size > self.step_q else q - 1.0) * self.step

    def _hold(self, x: float, size: float, swing: float) -> bool:
        cfg = self.config
        self.anomalous_points += 1
        onset = self.onset
        if onset == "jump":
            # Still nearer the level it jumped to, and further from the one it left than the series would wander
            # in that many normal steps (a random walk's spread grows with the square root of the steps).
            away = abs(x - self.baseline)
            still = abs(x - self.jumped_to) < away and away > cfg.hold_steps * self.step * math.sqrt(
                self.anomalous_points
            )
            self.recent = ((self.recent << 1) | int(size > self._volatile_bar())) & ((1 << cfg.volatile_window) - 1)
            if not still and self.recent.bit_count() >= cfg.volatile_points:
                # Not one step away and back (a spike) but large steps one after another: noise.
                self.onset = "volatile"
                self.calm = 0
                still = True
        elif onset == "volatile":
            self.calm = 0 if size > self._volatile_bar() else self.calm + 1
            still = self.calm < cfg.calm_points
        elif onset == "out_of_range":
            still = self._outside(x, cfg.range_margin / 2)
        elif onset == "stuck":
            still = self.run > 0 and not self.resting
        else:  # new_state
            still = x not in self.distinct[:2]
        if still and self.anomalous_points <= cfg.max_anomalous_points:
            return True
        if still and onset == "jump":
            # A change that lasted this long is the new normal, and so is the size of the step that began it.
            self.step_max = max(self.step_max, abs(self.jumped_to - self.baseline))
        self.anomalous = False
        self.recent = 0
        self.since_exit = 0 if onset == "jump" else RETURN_POINTS + 1
        # Back to normal (or a change that lasted so long it is the new normal): learnt from here on.
        self._learn(x, size, size == 0.0, binary=len(self.distinct) <= 2)
        self.s1 = self.s2 = self.s3 = 0.0
        return False
