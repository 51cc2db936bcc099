"""Running the production detector over a NAB corpus and timing it."""

from __future__ import annotations

import time
from dataclasses import dataclass

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
