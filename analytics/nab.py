"""NAB (Numenta Anomaly Benchmark) scoring, reimplemented from the published rules.

Pure: a loaded `Corpus` and per-point anomaly scores in, a `NabResult` out. Semantics follow NAB's
sweeper: scaled-sigmoid window rewards, first detection per window, false positives weighted by their
distance after the preceding window, a probation period that is not scored, one threshold per profile
chosen over the whole corpus, and normalisation between the null and the perfect detector.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PROBATION_FRACTION = 0.15
PROBATION_MAX_ROWS_BASE = 5000  # NAB caps probation at 15 % of 5000 rows
NO_DETECTION_THRESHOLD = 1.1  # NAB's threshold label for "nothing detected"
_OUTSIDE = -1  # point outside every window
_PROBATION = -2  # point inside the probation period (not scored)


@dataclass(frozen=True, slots=True)
class CostMatrix:
    """Weights of one NAB application profile."""

    tp_weight: float
    fp_weight: float
    fn_weight: float


@dataclass(frozen=True, slots=True)
class NabFile:
    """One corpus series: `name` is `category/file.csv`; windows are inclusive row-index pairs."""

    name: str
    times_s: FloatArray
    values: FloatArray
    windows: tuple[tuple[int, int], ...]

    @property
    def category(self) -> str:
        return self.name.split("/", 1)[0]

    def __len__(self) -> int:
        return int(self.values.shape[0])


@dataclass(frozen=True, slots=True)
class Corpus:
    """The data files, their labelled windows and the scoring profiles."""

    files: tuple[NabFile, ...]
    profiles: Mapping[str, CostMatrix]

    @property
    def points(self) -> int:
        return sum(len(f) for f in self.files)


@dataclass(frozen=True, slots=True)
class CategoryScore:
    """Score of one data category at the profile's corpus-wide threshold."""

    category: str
    files: int
    windows: int
    detected_windows: int
    false_positives: int
    raw_score: float
    normalized_score: float | None  # None when the category has no windows (null == perfect)


@dataclass(frozen=True, slots=True)
class ProfileResult:
    """Best corpus score of one profile and where it came from."""

    profile: str
    threshold: float
    raw_score: float
    null_score: float
    perfect_score: float
    normalized_score: float
    detected_windows: int
    windows: int
    false_positives: int
    categories: tuple[CategoryScore, ...]


@dataclass(frozen=True, slots=True)
class NabResult:
    """NAB result for every profile of the corpus."""

    profiles: Mapping[str, ProfileResult]
    points: int

    def normalized(self, profile: str) -> float:
        return self.profiles[profile].normalized_score


def probation_length(rows: int) -> float:
    """Rows at the start of a file that are not scored (NAB: min(floor(15 % rows), 15 % of 5000))."""
    return min(math.floor(PROBATION_FRACTION * rows), PROBATION_FRACTION * PROBATION_MAX_ROWS_BASE)


def scaled_sigmoid(relative_position: float) -> float:
    """NAB's reward curve: ~0.987 at a window's left edge, 0 at its right edge, -1 far after it."""
    if relative_position >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * relative_position)) - 1.0


def sweep_weights(rows: int, windows: Sequence[tuple[int, int]], cost: CostMatrix) -> tuple[FloatArray, IntArray]:
    """Per-point weight of a detection and the point's window number (-1 outside, -2 probation).

    Inside a window the weight is the true-positive reward of detecting there first; outside it is the
    (negative) false-positive cost, relative to the right edge of the preceding window.
    """
    index = np.arange(rows, dtype=np.float64)
    position = np.full(rows, 3.0)  # before any window: full false-positive cost
    window_of = np.full(rows, _OUTSIDE, dtype=np.int64)
    in_window = np.zeros(rows, dtype=bool)
    ordered = sorted(windows)
    for number, (left, right) in enumerate(ordered):
        width = float(right - left + 1)
        span = slice(left, right + 1)
        position[span] = -(right - index[span] + 1.0) / width
        window_of[span] = number
        in_window[span] = True
        following = ordered[number + 1][0] if number + 1 < len(ordered) else rows
        after = slice(right + 1, following)
        position[after] = (index[after] - right) / (width - 1.0) if width > 1.0 else 3.0
    with np.errstate(over="ignore"):
        curve = np.where(position >= 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * position)) - 1.0)
    weights = np.where(in_window, curve * cost.tp_weight / scaled_sigmoid(-1.0), curve * cost.fp_weight)
    window_of[: math.ceil(probation_length(rows))] = _PROBATION
    return weights, window_of


@dataclass(frozen=True, slots=True)
class _Sweep:
    """Scorable points of the whole corpus, concatenated, for one profile."""

    scores: FloatArray
    weights: FloatArray
    window_of: IntArray  # corpus-wide window number, or -1 outside
    windows: int


def _build_sweep(corpus: Corpus, scores_by_file: Mapping[str, FloatArray], cost: CostMatrix) -> _Sweep:
    scores: list[FloatArray] = []
    weights: list[FloatArray] = []
    window_of: list[IntArray] = []
    offset = 0
    for nab_file in corpus.files:
        w, wid = sweep_weights(len(nab_file), nab_file.windows, cost)
        keep = wid != _PROBATION
        file_scores = _file_scores(scores_by_file, nab_file)
        scores.append(file_scores[keep])
        weights.append(w[keep])
        window_of.append(np.where(wid[keep] >= 0, wid[keep] + offset, _OUTSIDE))
        offset += len(nab_file.windows)
    all_window_of = np.concatenate(window_of)
    scored_windows = int(np.unique(all_window_of[all_window_of >= 0]).shape[0])
    return _Sweep(np.concatenate(scores), np.concatenate(weights), all_window_of, scored_windows)


def _file_scores(scores_by_file: Mapping[str, FloatArray], nab_file: NabFile) -> FloatArray:
    try:
        file_scores = np.asarray(scores_by_file[nab_file.name], dtype=np.float64)
    except KeyError as exc:
        raise ValueError(f"no anomaly scores for {nab_file.name}") from exc
    if file_scores.shape != (len(nab_file),):
        raise ValueError(f"{nab_file.name}: {file_scores.shape[0]} scores for {len(nab_file)} rows")
    return np.nan_to_num(file_scores, nan=0.0)


def _sweep_thresholds(sweep: _Sweep, cost: CostMatrix) -> tuple[FloatArray, FloatArray]:
    """Corpus score for every distinct threshold (detections are scores >= threshold), highest first.

    The first entry is "nothing detected". Each window contributes the reward of its earliest detected
    point (rewards fall monotonically through a window), or -fn_weight while undetected.
    """
    base = -cost.fn_weight * sweep.windows
    order = np.argsort(-sweep.scores, kind="stable")
    sorted_scores = sweep.scores[order]
    sorted_window = sweep.window_of[order]
    delta = np.where(sorted_window == _OUTSIDE, sweep.weights[order], 0.0)

    in_window = np.flatnonzero(sorted_window != _OUTSIDE)
    if in_window.size:
        # Group the window points by window, keeping descending-score order inside each group, and track
        # the earliest row detected so far in each window (a running minimum that restarts per group).
        rows = order[in_window]
        groups = sorted_window[in_window]
        by_group = np.argsort(groups, kind="stable")
        g_rows, g_groups = rows[by_group], groups[by_group]
        span = int(sweep.scores.shape[0]) + 1
        earliest = np.minimum.accumulate(g_rows - g_groups * span) + g_groups * span
        reward = sweep.weights[earliest]
        previous = np.empty_like(reward)
        previous[1:] = reward[:-1]
        first = np.ones(g_groups.shape[0], dtype=bool)
        first[1:] = g_groups[1:] != g_groups[:-1]
        previous[first] = -cost.fn_weight
        step = np.empty_like(reward)
        step[by_group] = reward - previous
        delta[in_window] = step

    running = base + np.cumsum(delta)
    last_of_value = np.ones(sorted_scores.shape[0], dtype=bool)
    last_of_value[:-1] = sorted_scores[1:] != sorted_scores[:-1]
    top = (
        max(NO_DETECTION_THRESHOLD, float(np.nextafter(sorted_scores[0], np.inf)))
        if order.size
        else NO_DETECTION_THRESHOLD
    )
    thresholds = np.concatenate(([top], sorted_scores[last_of_value]))
    totals = np.concatenate(([base], running[last_of_value]))
    return thresholds, totals


def _score_at(
    corpus: Corpus, scores_by_file: Mapping[str, FloatArray], cost: CostMatrix, threshold: float
) -> tuple[CategoryScore, ...]:
    per_category: dict[str, list[float]] = {}
    for nab_file in corpus.files:
        w, wid = sweep_weights(len(nab_file), nab_file.windows, cost)
        detected = (_file_scores(scores_by_file, nab_file) >= threshold) & (wid != _PROBATION)
        fp_mask = detected & (wid == _OUTSIDE)
        raw = float(w[fp_mask].sum())
        hits = 0
        scored = 0
        for number in range(len(nab_file.windows)):
            in_window = np.flatnonzero(wid == number)
            if in_window.size == 0:
                continue
            scored += 1
            found = in_window[detected[in_window]]
            if found.size:
                hits += 1
                raw += float(w[found[0]])
            else:
                raw -= cost.fn_weight
        acc = per_category.setdefault(nab_file.category, [0.0, 0.0, 0.0, 0.0, 0.0])
        acc[0] += 1
        acc[1] += scored
        acc[2] += hits
        acc[3] += int(fp_mask.sum())
        acc[4] += raw
    result = []
    for category in sorted(per_category):
        n_files, n_windows, n_hits, n_fps, cat_raw = per_category[category]
        null, perfect = -cost.fn_weight * n_windows, cost.tp_weight * n_windows
        normalized = 100.0 * (cat_raw - null) / (perfect - null) if perfect != null else None
        result.append(
            CategoryScore(
                category=category,
                files=int(n_files),
                windows=int(n_windows),
                detected_windows=int(n_hits),
                false_positives=int(n_fps),
                raw_score=cat_raw,
                normalized_score=normalized,
            )
        )
    return tuple(result)


def score_profile(
    corpus: Corpus,
    scores_by_file: Mapping[str, FloatArray],
    *,
    profile: str,
    threshold: float | None = None,
) -> ProfileResult:
    """Score one profile at the corpus-wide threshold that maximises it (or at a given `threshold`)."""
    cost = corpus.profiles[profile]
    sweep = _build_sweep(corpus, scores_by_file, cost)
    if threshold is None:
        thresholds, totals = _sweep_thresholds(sweep, cost)
        best = int(np.argmax(totals))  # first maximum = highest threshold, as NAB's stable sort
        threshold = float(thresholds[best])
    categories = _score_at(corpus, scores_by_file, cost, threshold)
    raw = sum(c.raw_score for c in categories)
    null = -cost.fn_weight * sweep.windows
    perfect = cost.tp_weight * sum(len(f.windows) for f in corpus.files)
    return ProfileResult(
        profile=profile,
        threshold=threshold,
        raw_score=raw,
        null_score=null,
        perfect_score=perfect,
        normalized_score=100.0 * (raw - null) / (perfect - null),
        detected_windows=sum(c.detected_windows for c in categories),
        windows=sweep.windows,
        false_positives=sum(c.false_positives for c in categories),
        categories=categories,
    )


def score_detector(corpus: Corpus, scores_by_file: Mapping[str, FloatArray]) -> NabResult:
    """NAB scores of one detector's per-point scores (keyed by `category/file.csv`) for every profile."""
    return NabResult(
        profiles={name: score_profile(corpus, scores_by_file, profile=name) for name in corpus.profiles},
        points=corpus.points,
    )
