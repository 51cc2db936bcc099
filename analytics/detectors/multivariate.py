"""Per-device multivariate detector: scores a device's metric vector against its own recent normal data.

A model (PCA with Hotelling's T² plus the residual SPE, or an IsolationForest) is trained on the last
`history_rows` rows that were not themselves anomalous and retrained every `retrain_every` rows.
scikit-learn is imported only when a model is trained, so importing this module stays cheap.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from analytics.detectors.univariate import squash

Method = Literal["pca", "iforest"]


@dataclass(frozen=True, slots=True)
class DeviceDetectorConfig:
    """Tunables of `DeviceDetector`."""

    method: Method = "pca"
    history_rows: int = 2000  # recent normal rows kept for training
    min_train_rows: int = 50  # no scores (floor) before this many rows
    retrain_every: int = 500  # rows between retrainings
    explained_variance: float = 0.95  # PCA components kept
    trees: int = 100  # IsolationForest size
    seed: int = 0
    alert_quantile: float = 0.995  # training distances above this quantile are alerts
    alert_evidence: float = 4.0  # evidence at that quantile (evidence 0 = median distance)
    squash_scale: float = 4.0

    @property
    def threshold(self) -> float:
        return squash(self.alert_evidence, self.squash_scale)


class DeviceDetector:
    """Streaming multivariate scorer for one device; picklable (its state is plain data and a model)."""

    def __init__(self, metrics: Sequence[str], config: DeviceDetectorConfig | None = None) -> None:
        if not metrics:
            raise ValueError("a device detector needs at least one metric")
        self.metrics = tuple(metrics)
        self.config = config or DeviceDetectorConfig()
        self.history: deque[tuple[float, ...]] = deque(maxlen=self.config.history_rows)
        self.rows_seen = 0
        self.rows_since_training = 0
        self.trainings = 0
        self._model: Any = None
        self._mean = np.zeros(len(self.metrics))
        self._std = np.ones(len(self.metrics))
        self._center = 0.0  # median distance on the training data
        self._spread = 1.0  # distance from the median to the alert quantile, per unit of evidence
        self._spe_mean = 1.0  # mean squared PCA residual on the training data

    @property
    def threshold(self) -> float:
        return self.config.threshold

    @property
    def trained(self) -> bool:
        return self._model is not None

    def update(self, row: Sequence[float]) -> float:
        """Score one row of metric values (in `metrics` order), then learn from it if it looks normal."""
        if len(row) != len(self.metrics):
            raise ValueError(f"expected {len(self.metrics)} values, got {len(row)}")
        values = tuple(float(v) for v in row)
        if any(math.isnan(v) for v in values):
            return squash(-self.config.squash_scale, self.config.squash_scale)
        self.rows_seen += 1
        self.rows_since_training += 1
        score = self.score(values)
        if score < self.threshold:
            self.history.append(values)
        due = self.rows_since_training >= self.config.retrain_every
        if len(self.history) >= self.config.min_train_rows and (self._model is None or due):
            self.retrain()
        return score

    def score(self, values: Sequence[float]) -> float:
        """Score a row without learning from it."""
        cfg = self.config
        if self._model is None:
            return squash(-cfg.squash_scale, cfg.squash_scale)
        distance = float(self._distances(np.asarray([values], dtype=np.float64))[0])
        evidence = (distance - self._center) / self._spread
        return squash(evidence, cfg.squash_scale)

    def retrain(self) -> None:
        """Fit the model on the kept normal rows (called on schedule by `update`)."""
        data = np.asarray(self.history, dtype=np.float64)
        self._mean = data.mean(axis=0)
        std = data.std(axis=0)
        self._std = np.where(std > 0, std, 1.0)
        scaled = (data - self._mean) / self._std
        if self.config.method == "pca":
            from sklearn.decomposition import PCA

            model: Any = PCA(n_components=min(scaled.shape), random_state=self.config.seed).fit(scaled)
            ratio = np.cumsum(model.explained_variance_ratio_)
            keep = int(np.searchsorted(ratio, self.config.explained_variance) + 1)
            keep = min(keep, scaled.shape[1])
            model = PCA(n_components=keep, random_state=self.config.seed).fit(scaled)
        else:
            from sklearn.ensemble import IsolationForest

            model = IsolationForest(n_estimators=self.config.trees, random_state=self.config.seed).fit(scaled)
        self._model = model
        self._spe_mean = 1.0
        if self.config.method == "pca":
            self._spe_mean = max(float(self._pca_parts(scaled)[1].mean()), 1e-12)
        distances = self._distances(data)
        self._center = float(np.median(distances))
        upper = float(np.quantile(distances, self.config.alert_quantile))
        self._spread = max(upper - self._center, 1e-9) / self.config.alert_evidence
        self.rows_since_training = 0
        self.trainings += 1

    def _distances(self, rows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        scaled = (rows - self._mean) / self._std
        if self.config.method == "pca":
            # Hotelling's T² per component plus the residual (SPE) relative to its training mean.
            t2, spe = self._pca_parts(scaled)
            return np.asarray(t2 / self._model.n_components_ + spe / self._spe_mean, dtype=np.float64)
        # IsolationForest: lower score_samples = more abnormal.
        return np.asarray(-self._model.score_samples(scaled), dtype=np.float64)

    def _pca_parts(self, scaled: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        model = self._model
        projected = model.transform(scaled)
        variance = np.maximum(model.explained_variance_, 1e-12)
        t2 = np.sum(projected * projected / variance, axis=1)
        residual = scaled - model.inverse_transform(projected)
        return t2, np.sum(residual * residual, axis=1)
