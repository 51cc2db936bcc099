"""NAB scorer: hand-made cases with known answers, a copied NAB file, and the published scoreboard."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from analytics.nab import (
    Corpus,
    CostMatrix,
    NabFile,
    probation_length,
    scaled_sigmoid,
    score_detector,
    score_profile,
    sweep_weights,
)
from analytics.nab_io import load_corpus, load_result_scores

REPO = Path(__file__).resolve().parents[2]
TEST_NAB = REPO / "tests" / "data" / "nab"
SHARED_NAB = REPO.parent / "shared" / "nab"
STANDARD = CostMatrix(tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)
PROFILES = {
    "standard": STANDARD,
    "reward_low_FP_rate": CostMatrix(tp_weight=1.0, fp_weight=0.22, fn_weight=1.0),
    "reward_low_FN_rate": CostMatrix(tp_weight=1.0, fp_weight=0.11, fn_weight=2.0),
}


def _corpus(rows: int, windows: tuple[tuple[int, int], ...], name: str = "cat/a.csv") -> Corpus:
    nab_file = NabFile(name, np.arange(rows, dtype=np.float64), np.zeros(rows), windows)
    return Corpus(files=(nab_file,), profiles=PROFILES)


def _scores(rows: int, hits: dict[int, float]) -> np.ndarray:
    scores = np.zeros(rows)
    for index, value in hits.items():
        scores[index] = value
    return scores


def test_scaled_sigmoid_matches_published_anchor_points() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) == -1.0


def test_probation_is_fifteen_percent_capped_at_750_rows() -> None:
    assert probation_length(1000) == 150
    assert probation_length(1127) == 169
    assert probation_length(22695) == 750


def test_detection_at_window_start_scores_perfect() -> None:
    corpus = _corpus(100, ((50, 59),))
    result = score_profile(corpus, {"cat/a.csv": _scores(100, {50: 0.9})}, profile="standard")
    assert result.raw_score == pytest.approx(1.0)
    assert result.normalized_score == pytest.approx(100.0)
    assert result.threshold == 0.9
    assert (result.detected_windows, result.false_positives) == (1, 0)


def test_only_first_detection_in_a_window_counts() -> None:
    corpus = _corpus(100, ((50, 59),))
    scores = _scores(100, {55: 0.9, 56: 0.9, 57: 0.9})
    result = score_profile(corpus, {"cat/a.csv": scores}, profile="standard")
    expected = scaled_sigmoid(-(59 - 55 + 1) / 10.0) / scaled_sigmoid(-1.0)
    assert result.raw_score == pytest.approx(expected)
    assert result.false_positives == 0


def test_false_positive_costs_depend_on_the_preceding_window() -> None:
    corpus = _corpus(100, ((50, 59),))
    # Before any window: full cost. Just after: scaled by distance / (width - 1).
    scores = _scores(100, {20: 0.9, 50: 0.9, 62: 0.9})
    result = score_profile(corpus, {"cat/a.csv": scores}, profile="standard", threshold=0.9)
    expected = 1.0 - 0.11 + 0.11 * scaled_sigmoid((62 - 59) / 9.0)
    assert result.raw_score == pytest.approx(expected)
    assert result.false_positives == 2


def test_probation_points_are_not_scored() -> None:
    corpus = _corpus(100, ((50, 59),))
    result = score_profile(corpus, {"cat/a.csv": _scores(100, {3: 1.0, 50: 0.9})}, profile="standard")
    assert result.raw_score == pytest.approx(1.0)
    assert result.false_positives == 0


def test_missed_window_costs_fn_weight_and_null_detector_scores_zero() -> None:
    corpus = _corpus(100, ((50, 59),))
    result = score_detector(corpus, {"cat/a.csv": np.zeros(100)})
    for name, cost in PROFILES.items():
        # Constant scores: the best choice is to detect nothing.
        assert result.profiles[name].raw_score == pytest.approx(-cost.fn_weight)
        assert result.normalized(name) == pytest.approx(0.0)


def test_threshold_sweep_trades_false_positives_against_detections() -> None:
    corpus = _corpus(200, ((100, 119),))
    # Detecting the window at 0.5 would also admit 20 false positives (cost 2.2 > gain 2).
    scores = _scores(200, {**dict.fromkeys(range(40, 60), 0.6), 110: 0.5})
    standard = score_profile(corpus, {"cat/a.csv": scores}, profile="standard")
    assert standard.threshold == pytest.approx(1.1)  # nothing detected
    assert standard.raw_score == pytest.approx(-1.0)
    low_fn = score_profile(corpus, {"cat/a.csv": scores}, profile="reward_low_FN_rate")
    assert low_fn.threshold == 0.5  # a missed window costs 2 there
    assert low_fn.detected_windows == 1


def test_sweep_weights_mark_windows_and_probation() -> None:
    weights, window_of = sweep_weights(100, [(50, 59)], STANDARD)
    assert (window_of[:15] == -2).all()
    assert (window_of[50:60] == 0).all()
    assert weights[50] == pytest.approx(1.0)
    assert weights[30] == pytest.approx(-0.11)
    assert math.isclose(weights[59], scaled_sigmoid(-0.1) / scaled_sigmoid(-1.0), rel_tol=1e-12)


def test_copied_file_reproduces_published_per_file_scores() -> None:
    corpus = load_corpus(TEST_NAB)
    scores = load_result_scores(TEST_NAB / "results" / "numenta", corpus)
    assert corpus.files[0].windows == ((303, 331), (740, 768), (909, 937), (945, 973))
    published = {
        "standard": (0.542187690735, 3.19572468045),
        "reward_low_FN_rate": (0.542187690735, 3.19572468045),
        "reward_low_FP_rate": (0.575195503235, 3.06755940455),
    }
    for profile, (threshold, raw) in published.items():
        result = score_profile(corpus, scores, profile=profile, threshold=threshold)
        assert result.raw_score == pytest.approx(raw, abs=1e-9)


@pytest.mark.skipif(not SHARED_NAB.is_dir(), reason=f"NAB corpus not present at {SHARED_NAB}")
@pytest.mark.parametrize("detector", ["numenta", "windowedGaussian"])
def test_published_scoreboard_is_reproduced(detector: str) -> None:
    corpus = load_corpus(SHARED_NAB)
    published = json.loads((SHARED_NAB / "results" / "final_results.json").read_text())[detector]
    result = score_detector(corpus, load_result_scores(SHARED_NAB / "results" / detector, corpus))
    assert result.points == 365558
    for profile in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        assert result.normalized(profile) == pytest.approx(published[profile], abs=0.5)
    assert result.normalized("standard") == pytest.approx(published["standard"], abs=1e-6)
