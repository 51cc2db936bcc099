"""Per-device multivariate detector (PCA T²+SPE and IsolationForest)."""

from __future__ import annotations

import pickle

import numpy as np
import numpy.typing as npt
import pytest

from analytics.detectors.multivariate import DeviceDetector, DeviceDetectorConfig, Method


def _normal_rows(n: int, seed: int = 1) -> npt.NDArray[np.float64]:
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, 1))
    # Three correlated metrics: voltage, current, power-ish.
    columns = [base + 0.1 * rng.normal(size=(n, 1)) for _ in range(3)]
    return np.asarray(np.hstack(columns) + np.array([230.0, 5.0, 1.0]), dtype=np.float64)


@pytest.mark.parametrize("method", ["pca", "iforest"])
def test_outlier_scores_above_threshold_and_all_normal_rows(method: Method) -> None:
    config = DeviceDetectorConfig(method=method, retrain_every=100, trees=20)
    detector = DeviceDetector(["voltage_v", "current_a", "power_kw"], config)
    scores = [detector.update(row) for row in _normal_rows(300)]
    assert detector.trained
    assert detector.trainings >= 3  # retrained on schedule
    normal_alerts = sum(s >= detector.threshold for s in scores[100:])
    assert normal_alerts < 0.05 * len(scores[100:])  # ~0.5 % expected
    # PCA catches a broken correlation (each value plausible alone); IsolationForest, being axis-aligned,
    # is only asked to catch a gross outlier.
    row = [232.0, 3.0, 1.0] if method == "pca" else [240.0, 15.0, 11.0]
    outlier = detector.score(row)
    assert outlier >= detector.threshold
    assert outlier >= max(scores[100:])


def test_untrained_detector_scores_low_and_rejects_wrong_width() -> None:
    detector = DeviceDetector(["a", "b"])
    assert detector.update([1.0, 2.0]) < detector.threshold
    with pytest.raises(ValueError, match="expected 2 values"):
        detector.update([1.0])


def test_pickle_round_trip_and_seeded_determinism() -> None:
    rows = _normal_rows(200, seed=5)
    config = DeviceDetectorConfig(method="iforest", retrain_every=60, trees=15, seed=11)
    first = DeviceDetector(["a", "b", "c"], config)
    first_scores = [first.update(r) for r in rows[:150]]
    restored = pickle.loads(pickle.dumps(first))
    tail = [first.update(r) for r in rows[150:]]
    assert [restored.update(r) for r in rows[150:]] == tail
    second = DeviceDetector(["a", "b", "c"], config)
    assert [second.update(r) for r in rows[:150]] == first_scores
