"""The anomalous state of one series (`is_anomaly`): 1 from the onset of a fault for as long as the series stays
unlike its normal self, 0 once it is back. Pure, causal, O(1) per point, plain floats.

Every test is against what this series has shown while normal, so a series whose normal life is jumpy (a pump
switching on and off, a bus stopping) needs a larger departure than a smooth one. Onsets:
- `jump`: a step from the previous reading far beyond the largest normal step (a spike, the start of a level
  shift). It lasts while the readings stay nearer the level they jumped to than the level they left, so a
  spike is one point and a shift lasts as long as the shift;
- `volatile`: several large steps close together, beyond a high quantile of normal steps (a noise burst). It
  lasts until the steps are calm again;
- `out_of_range`: a value well outside the range seen while normal (a drift that has built up, a shift
  hidden in a smooth trend). It lasts while the value stays outside;
- `stuck`: identical readings in a row on a value the series has not rested on for long, improbably long given
  how often it repeats itself (and, for a series that rests for long, longer than its rests by a margin). It
  lasts while the run does. A repeat while the whole device rests (the caller says so: a parked bus freezes
  every metric at once, a stuck sensor freezes alone) is a rest, never `stuck`, and does not count toward a
  later stuck run; a value a run once stayed on, even one flagged stuck (a humidity sensor's 98 % cap at
  night), is a value the series rests on;
- `new_state`: a third value in a series that has only ever taken two (a binary state gone wrong).
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
)
_INTS: Final = (
    "n",
    "moves",
    "falls",
    "since_exit",
    "run",
    "run_rested",
    "repeats",
    "other_run_max",
    "recent",
    "anomalous_points",
    "calm",
)


class FaultState:
    """The anomalous state of one series; `step(x)` feeds one value and returns the state after it."""

    __slots__ = (*_FLOATS, *_INTS, "anomalous", "config", "distinct", "onset", "resting", "rests")

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
        self.run = 0  # identical readings in a row beyond the first
        self.run_rested = 0  # of those, the ones made while the whole device rested
        self.repeats = 0  # normal readings equal to the one before
        self.rests: dict[float, int] = {}  # value → longest normal run on it, for the values rested on longest
        self.other_run_max = 0  # longest normal run on any other value
        self.distinct: list[float] = []  # up to three distinct values seen (two: a binary series)
        self.recent = 0  # bits of the last steps beyond the volatility bar, newest lowest
        self.anomalous = False
        self.resting = False  # this repeat came while the whole device rests
        self.onset = ""  # why the current (or last) anomalous state began
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
    def update(self, x: float, *, resting: bool = False) -> bool:
        """Feed value `x` (not NaN); return whether the series is anomalous after it. `resting`: the device as a
        whole is at rest (most of its metrics repeat at this reading), so a repeat here is a rest."""
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
        onset = "" if learning else self._onset(x, size, swing, binary=binary, new=new_value)
        if onset:
            self.onset = onset
            self.anomalous = True
            self.anomalous_points = 1
            self.calm = 0
            self.baseline, self.jumped_to = prev, x
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
        rest_max = max(self.rests.values(), default=0)
        if rest_max >= LONG_REST_RUN:
            # A series that rests for long (a parked bus, a pump between cycles) cannot tell a stuck sensor from a
            # rest until the run outlasts its longest rest by the margin.
            return run > cfg.stuck_margin * rest_max
        if run <= max(self.other_run_max, rested or 0):
            return False
        # How often this series repeats itself while normal (Laplace-smoothed), to the power of the run.
        p = (self.repeats + 1) / (self.n + 2)
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

    def _learn(self, x: float, size: float, repeated: bool, *, binary: bool) -> None:
        cfg = self.config
        if len(self.distinct) < 3 and x not in self.distinct:
            self.distinct.append(x)
        if x < self.prev_before and not self._reset(x):
            self.falls += 1
        self.lo = min(self.lo, x)
        self.hi = max(self.hi, x)
        if repeated:
            self.repeats += 1
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
        elif onset == "volatile":
            self.calm = 0 if size > self._volatile_bar() or swing > self.swing_max else self.calm + 1
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
