"""Streaming univariate anomaly detector: one instance per series, plain Python floats per point.

Evidence for each point, causal and in O(1):
- the prediction residual of the better of two baselines (an EWMA level, or a time-of-day profile when
  that has been predicting better), scaled by that baseline's running mean absolute error and squashed
  to a raw surprise in [0, 1);
- an anomaly likelihood in the manner of HTM: a short average of raw surprise against its long-run mean
  and standard deviation, in standard deviations;
- spatial novelty: how far the value leaves the range seen so far, and likewise for two smoothed features
  of the recent window: its level (a fast EWMA of the value, catching shifts hidden in the noise) and its
  volatility (a slow EWMA of |step|, catching noise or spike bursts that stay inside the value range).
After an alert the evidence is damped for a while (one alert per incident), the first `warmup_points`
only train the model, and the output is a smooth squash of the evidence into (0, 1) that never saturates.

The score ranks how surprising each point is; whether the series is anomalous *now* (`anomalous`, the
`is_anomaly` output) is a separate state machine, `analytics.detectors.fault_state.FaultState`, fed the same points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from analytics.detectors.fault_state import BOTH_WAYS, FaultState, FaultStateConfig

STATE_VERSION = 3  # 2 added the window-feature ranges, 3 the anomalous state; older states are upgraded
SECONDS_PER_DAY = 86400.0
# The score of a point that is not scored (learning, a missing value): `squash(-scale, scale)`, whatever the scale.
FLOOR_SCORE = 0.25


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    """Tunables of `UnivariateDetector`; the defaults are the ones evaluated on NAB (coordinate search on the
    standard profile: 68.43 with the earlier defaults, 70.7 with these and the volatile-onset boost)."""

    warmup_points: int = 100  # learn only; scores stay at the floor
    level_alpha: float = 0.05  # EWMA baseline
    error_alpha: float = 0.002  # running mean absolute error of each baseline
    surprise_scale: float = 12.0  # residual (in mean errors) at which raw surprise is 0.5
    short_alpha: float = 0.2  # short average of raw surprise (~10 points)
    long_alpha: float = 0.0015  # long-run mean/variance of raw surprise
    likelihood_floor: float = 1e-3  # minimum standard deviation of raw surprise
    spatial_tolerance: float = 0.0  # fraction of the seen range a value may exceed it by
    spatial_gain: float = 3.0  # evidence per range-fraction beyond the tolerance
    window_level_alpha: float = 0.1  # recent level (~10 points) whose new extremes are novel
    window_volatility_alpha: float = 0.03  # recent mean |step| (~30 points) whose new extremes are novel
    season_bins: int = 96  # time-of-day profile resolution (0 disables it)
    season_alpha: float = 0.4  # how fast a profile bin follows new days
    season_margin: float = 1.1  # profile used only when its error is this much smaller
    season_period_s: float = SECONDS_PER_DAY
    alert_evidence: float = 5.0  # evidence that counts as an alert (and starts damping)
    # The anomalous state turning `volatile` (steps beyond anything normal, several at once) is evidence of its
    # own: at least `alert_evidence + onset_boost`.
    onset_boost: float = 1.0
    damping_points: int = 40  # points damped after an alert
    damping_factor: float = 0.6
    squash_scale: float = 4.0  # output = 0.5 + 0.5 * e / (|e| + squash_scale)
    state: FaultStateConfig = field(default_factory=FaultStateConfig)

    @property
    def threshold(self) -> float:
        """Output score at which a point is an alert."""
        return squash(self.alert_evidence, self.squash_scale)


def squash(evidence: float, scale: float) -> float:
    """Map evidence (any real) smoothly into (0, 1); distinct inputs stay distinct in practice."""
    return 0.5 + 0.5 * evidence / (abs(evidence) + scale)


_SCALARS = (
    "n",
    "lo",
    "hi",
    "level",
    "level_error",
    "season_error",
    "short",
    "long_mean",
    "long_var",
    "damping_left",
    "prev",
    "window_level",
    "window_volatility",
    "feature_n",
    "level_lo",
    "level_hi",
    "volatility_lo",
    "volatility_hi",
)
_INT_SCALARS = ("n", "damping_left", "feature_n")
# Added in state version 2; a version-1 state restarts them (they learn again for `warmup_points`).
_V2_SCALARS = _SCALARS[_SCALARS.index("prev") :]


class UnivariateDetector:
    """Scores one series point by point; `state_dict()` / `from_state()` persist it between runs."""

    __slots__ = ("config", "fault", "profile", *_SCALARS)

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self.n = 0
        self.lo = 0.0
        self.hi = 0.0
        self.level = 0.0
        self.level_error = 0.0
        self.season_error = 0.0
        self.short = 0.0
        self.long_mean = 0.0
        self.long_var = 0.0
        self.damping_left = 0
        self.prev = 0.0
        self.window_level = 0.0
        self.window_volatility = 0.0
        self.feature_n = 0
        self.level_lo = self.level_hi = 0.0
        self.volatility_lo = self.volatility_hi = 0.0
        self.profile: list[float | None] = [None] * self.config.season_bins
        self.fault = FaultState(self.config.state)

    @property
    def threshold(self) -> float:
        return self.config.threshold

    @property
    def anomalous(self) -> bool:
        """Whether the series is anomalous after the last point (the `is_anomaly` state)."""
        return self.fault.anomalous

    def declare_normal_steps(self, direction: str | None) -> None:
        """Sudden steps in `direction` ("up", "down" or "both"; None: neither) are normal operation for this series
        (its device type says so: an irrigation, a refill, rain), so they start no anomalous state. Not saved: the
        caller declares it again after `from_state`."""
        self.fault.normal_step = {"up": 1, "down": -1, "both": BOTH_WAYS}.get(direction or "", 0)

    def state_dict(self) -> dict[str, Any]:
        """The learned state as JSON-compatible values (floats, ints, lists, None)."""
        state: dict[str, Any] = {name: getattr(self, name) for name in _SCALARS}
        state["profile"] = list(self.profile)
        state["fault"] = self.fault.state_dict()
        state["version"] = STATE_VERSION
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Any], config: DetectorConfig | None = None) -> UnivariateDetector:
        """Rebuild a detector from `state_dict()` output (e.g. after a JSON round trip)."""
        version = state.get("version")
        if version not in (1, 2, STATE_VERSION):
            raise ValueError(f"unsupported detector state version: {state.get('version')!r}")
        detector = cls(config)
        profile = list(state["profile"])
        if len(profile) != detector.config.season_bins:
            raise ValueError("detector state does not match the configuration's season_bins")
        for name in _SCALARS:
            if version == 1 and name in _V2_SCALARS:
                continue  # keep the fresh value: the window features start learning now
            value = state[name]
            setattr(detector, name, int(value) if name in _INT_SCALARS else float(value))
        detector.profile = [None if v is None else float(v) for v in profile]
        if "fault" in state:
            detector.fault = FaultState.from_state(dict(state["fault"]), detector.config.state)
        return detector

    def update(self, t: float, x: float, *, resting: bool = False) -> float:
        """Learn from value `x` at epoch seconds `t` and return its anomaly score in (0, 1); `resting`: the device
        as a whole is at rest at this reading (see `FaultState.update`).

        A missing value (NaN) leaves the state untouched and scores as normal.

        The live job calls this once per reading, so it is written for speed: locals, no helper calls per point.
        """
        if math.isnan(x):
            return FLOOR_SCORE
        cfg = self.config
        fault = self.fault
        was_anomalous = fault.anomalous
        fault.update(x, resting=resting, t=t)
        volatile_onset = fault.anomalous and not was_anomalous and fault.onset == "volatile"
        n = self.n = self.n + 1
        if n == 1:
            self.lo = self.hi = self.level = x
        window_excess = self._update_window_features(x)
        if n == 1:
            return FLOOR_SCORE

        lo, hi = self.lo, self.hi
        span = hi - lo
        excess = 0.0
        if x > hi:
            excess = (x - hi) / span if span > 0 else 1.0
            self.hi = x
        elif x < lo:
            excess = (lo - x) / span if span > 0 else 1.0
            self.lo = x

        # Residuals of both baselines, each scaled by its own running mean absolute error.
        floor = 1e-3 * (span if span > 0 else (abs(x) if x != 0 else 1.0))
        level = self.level
        residual = x - level
        level_error = self.level_error
        deviation = abs(residual) / (level_error + floor)
        self.level = level + cfg.level_alpha * residual
        error_alpha = cfg.error_alpha
        self.level_error = level_error + error_alpha * (abs(residual) - level_error)
        bins = cfg.season_bins
        if bins:
            period = cfg.season_period_s
            k = min(int(((t % period) / period) * bins), bins - 1)
            profile = self.profile
            expected = profile[k]
            season_residual = x - (expected if expected is not None else self.level)
            season_error = self.season_error
            if season_error * cfg.season_margin < level_error:
                deviation = abs(season_residual) / (season_error + floor)
            self.season_error = season_error + error_alpha * (abs(season_residual) - season_error)
            profile[k] = x if expected is None else expected + cfg.season_alpha * (x - expected)

        # Likelihood: short average of raw surprise against its long-run distribution.
        scale = cfg.surprise_scale
        deviation2 = deviation * deviation
        raw = deviation2 / (deviation2 + scale * scale)
        short = self.short = self.short + cfg.short_alpha * (raw - self.short)
        long_alpha = cfg.long_alpha
        long_mean = self.long_mean
        delta = raw - long_mean
        long_mean = self.long_mean = long_mean + long_alpha * delta
        long_var = self.long_var = (1.0 - long_alpha) * (self.long_var + long_alpha * delta * delta)
        evidence = (short - long_mean) / (math.sqrt(long_var) + cfg.likelihood_floor)
        excess = max(excess, window_excess)
        alert = cfg.alert_evidence
        tolerance = cfg.spatial_tolerance
        if excess > tolerance:
            evidence = max(evidence, alert + cfg.spatial_gain * (excess - tolerance))

        if volatile_onset:
            evidence = max(evidence, alert + cfg.onset_boost)
        if n <= cfg.warmup_points:
            return FLOOR_SCORE
        if self.damping_left > 0:
            self.damping_left -= 1
            evidence *= cfg.damping_factor
        elif evidence > alert:
            self.damping_left = cfg.damping_points
        return 0.5 + 0.5 * evidence / (abs(evidence) + cfg.squash_scale)  # `squash`, inlined

    def _update_window_features(self, x: float) -> float:
        """Learn the recent level and volatility; return how far either leaves its range seen so far.

        Ranges only learn during the first `warmup_points` of the features (so a restored version-1
        state does not alert on them at once); the excess is how far the feature leaves its range as a fraction
        of the range's width (1.0 if the range is a point), as for the value. Written out (no helper per range):
        this runs once per reading.
        """
        cfg = self.config
        feature_n = self.feature_n = self.feature_n + 1
        if feature_n == 1:
            self.prev = self.window_level = x
            self.window_volatility = 0.0
            return 0.0
        volatility = self.window_volatility
        volatility = self.window_volatility = volatility + cfg.window_volatility_alpha * (
            abs(x - self.prev) - volatility
        )
        self.prev = x
        level = self.window_level
        level = self.window_level = level + cfg.window_level_alpha * (x - level)
        if feature_n == 2:
            self.level_lo = self.level_hi = level
            self.volatility_lo = self.volatility_hi = volatility
            return 0.0
        excess = 0.0
        lo, hi = self.level_lo, self.level_hi
        if level > hi:
            excess = (level - hi) / (hi - lo) if hi > lo else 1.0
            self.level_hi = level
        elif level < lo:
            excess = (lo - level) / (hi - lo) if hi > lo else 1.0
            self.level_lo = level
        lo, hi = self.volatility_lo, self.volatility_hi
        volatility_excess = 0.0
        if volatility > hi:
            volatility_excess = (volatility - hi) / (hi - lo) if hi > lo else 1.0
            self.volatility_hi = volatility
        elif volatility < lo:
            volatility_excess = (lo - volatility) / (hi - lo) if hi > lo else 1.0
            self.volatility_lo = volatility
        if feature_n <= cfg.warmup_points:
            return 0.0
        return max(excess, volatility_excess)

    def score_series(self, times: Iterable[float], values: Iterable[float]) -> list[float]:
        """Feed a whole series in order (continuing from the current state)."""
        update = self.update
        return [update(t, x) for t, x in zip(times, values, strict=True)]
