"""Running the production detector over a NAB corpus and timing it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from analytics.detectors.univariate import DetectorConfig, UnivariateDetector
from analytics.nab import Corpus, FloatArray, NabResult, score_detector


@dataclass(frozen=True, slots=True)
class CorpusRun:
    """Per-file scores of one detector over a corpus and how long detection took."""

    scores_by_file: dict[str, FloatArray]
    detect_seconds: float


def detect_corpus(corpus: Corpus, config: DetectorConfig | None = None) -> CorpusRun:
    """Score every file with a fresh `UnivariateDetector` (one per series, as in production)."""
    started = time.perf_counter()
    scores: dict[str, FloatArray] = {}
    for nab_file in corpus.files:
        detector = UnivariateDetector(config)
        series = detector.score_series(nab_file.times_s.tolist(), nab_file.values.tolist())
        scores[nab_file.name] = np.asarray(series, dtype=np.float64)
    return CorpusRun(scores_by_file=scores, detect_seconds=time.perf_counter() - started)


def evaluate_detector(corpus: Corpus, config: DetectorConfig | None = None) -> tuple[NabResult, CorpusRun]:
    """NAB result of the production detector on `corpus`."""
    run = detect_corpus(corpus, config)
    return score_detector(corpus, run.scores_by_file), run


def nab_result_json(result: NabResult, *, detector: str, seconds: float, detect_seconds: float | None) -> Any:
    """The JSON document of `ioc eval nab`."""
    document: dict[str, Any] = {"detector": detector}
    for name, profile in result.profiles.items():
        document[name] = profile.normalized_score
    document["thresholds"] = {name: p.threshold for name, p in result.profiles.items()}
    document["profiles"] = {
        name: {
            "score": p.normalized_score,
            "raw_score": p.raw_score,
            "null_score": p.null_score,
            "perfect_score": p.perfect_score,
            "threshold": p.threshold,
            "detected_windows": p.detected_windows,
            "windows": p.windows,
            "false_positives": p.false_positives,
        }
        for name, p in result.profiles.items()
    }
    document["categories"] = {
        name: {
            c.category: {
                "score": c.normalized_score,
                "raw_score": c.raw_score,
                "files": c.files,
                "windows": c.windows,
                "detected_windows": c.detected_windows,
                "false_positives": c.false_positives,
            }
            for c in p.categories
        }
        for name, p in result.profiles.items()
    }
    document["points"] = result.points
    document["seconds"] = seconds
    if detect_seconds is not None:
        document["detect_seconds"] = detect_seconds
        document["points_per_second"] = result.points / detect_seconds if detect_seconds > 0 else None
    return document
