"""Production streaming detector: causality, persistence, determinism, output shape."""

from __future__ import annotations

import json
import math
import pickle
import random

import pytest

from analytics.detectors import DetectorConfig, UnivariateDetector


def _series(n: int, *, seed: int = 7) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    times = [1_700_000_000.0 + 300.0 * i for i in range(n)]
    values = [10.0 + 3.0 * math.sin(2 * math.pi * i / 288) + rng.gauss(0.0, 0.5) for i in range(n)]
    return times, values


def test_scores_are_causal() -> None:
    times, values = _series(1500)
    changed = list(values)
    for i in range(1000, 1500):
        changed[i] = values[i] * 5.0 + 100.0
    first = UnivariateDetector().score_series(times, values)
    second = UnivariateDetector().score_series(times, changed)
    assert first[:1000] == second[:1000]
    assert first[1000:] != second[1000:]


def test_state_round_trips_through_json_and_pickle() -> None:
    times, values = _series(2000)
    reference = UnivariateDetector()
    reference.score_series(times[:1200], values[:1200])
    state = reference.state_dict()
    restored_json = UnivariateDetector.from_state(json.loads(json.dumps(state)))
    restored_pickle = pickle.loads(pickle.dumps(reference))
    expected = reference.score_series(times[1200:], values[1200:])
    assert restored_json.score_series(times[1200:], values[1200:]) == expected
    assert restored_pickle.score_series(times[1200:], values[1200:]) == expected


def test_state_from_another_configuration_is_refused() -> None:
    state = UnivariateDetector().state_dict()
    with pytest.raises(ValueError, match="season_bins"):
        UnivariateDetector.from_state(state, DetectorConfig(season_bins=24))
    with pytest.raises(ValueError, match="version"):
        UnivariateDetector.from_state({**state, "version": 99})


def test_scores_are_deterministic() -> None:
    times, values = _series(1000)
    assert UnivariateDetector().score_series(times, values) == UnivariateDetector().score_series(times, values)


def test_scores_do_not_saturate() -> None:
    times, values = _series(3000)
    for i in range(1500, 3000, 97):
        values[i] += 40.0 * (1 + i % 5)  # big, repeated spikes
    scores = UnivariateDetector().score_series(times, values)
    assert all(0.0 < s < 1.0 for s in scores)
    scored = scores[200:]
    assert len(set(scored)) > 0.9 * len(scored)
    assert max(scores) < 1.0


def test_spike_after_warmup_is_an_alert_and_quiet_data_is_not() -> None:
    times, values = _series(2000)
    detector = UnivariateDetector()
    quiet = detector.score_series(times[:1500], values[:1500])
    # A new extreme of pure noise alerts (spatial novelty has no tolerance: it scores best on NAB),
    # so quiet data is not alert-free, but alerts stay under 1 % of points.
    alerts = sum(s >= detector.threshold for s in quiet[300:])
    assert alerts < 0.01 * len(quiet[300:])
    spike = detector.update(times[1500], values[1500] + 50.0)
    assert spike >= detector.threshold


def test_warmup_only_learns() -> None:
    times, values = _series(400)
    config = DetectorConfig()
    scores = UnivariateDetector(config).score_series(times, values)
    assert len(set(scores[: config.warmup_points])) == 1
    assert scores[0] < config.threshold


def test_missing_values_leave_state_untouched() -> None:
    times, values = _series(600)
    detector = UnivariateDetector()
    detector.score_series(times[:500], values[:500])
    before = detector.state_dict()
    score = detector.update(times[500], math.nan)
    assert score < detector.threshold
    assert detector.state_dict() == before


def test_irregular_timestamps_are_accepted() -> None:
    rng = random.Random(3)
    t = 0.0
    times, values = [], []
    for i in range(1000):
        t += rng.uniform(1.0, 900.0)
        times.append(t)
        values.append(math.sin(i / 10.0) + rng.gauss(0.0, 0.1))
    scores = UnivariateDetector().score_series(times, values)
    assert len(scores) == 1000
    assert all(0.0 < s < 1.0 for s in scores)


def test_volatility_burst_inside_the_value_range_is_an_alert() -> None:
    times, values = _series(2000)
    detector = UnivariateDetector()
    detector.score_series(times[:1500], values[:1500])
    low, high = min(values[:1500]), max(values[:1500])
    # Jumps between the two ends of the range seen so far: no new extreme of the value itself.
    burst = [low + 0.05 * (high - low) if i % 2 else high - 0.05 * (high - low) for i in range(60)]
    scores = detector.score_series(times[1500:1560], burst)
    assert max(scores) >= detector.threshold


def test_version_1_state_is_upgraded_and_stays_quiet() -> None:
    times, values = _series(2000)
    reference = UnivariateDetector()
    reference.score_series(times[:1500], values[:1500])
    state = reference.state_dict()
    old = {
        k: v for k, v in state.items() if k not in ("prev", "window_level", "window_volatility", "feature_n", "fault")
    }
    old = {k: v for k, v in old.items() if not k.endswith(("_lo", "_hi")) or k in ("lo", "hi")}
    old["version"] = 1
    restored = UnivariateDetector.from_state(json.loads(json.dumps(old)))
    assert restored.feature_n == 0
    scores = restored.score_series(times[1500:1700], values[1500:1700])
    # The window features relearn their ranges for `warmup_points` without alerting; the rest carries on.
    assert all(s < restored.threshold for s in scores[: restored.config.warmup_points])
    assert all(0.0 < s < 1.0 for s in scores)
    assert restored.state_dict()["version"] == state["version"] == 3
