"""A frozen copy of the joint detector as it was before its per-row work moved from numpy to plain floats: the
reference `test_detector_joint_equivalence.py` holds the production detector to (same states, same blame, the
same surprise within rounding). Not used by the product; do not edit."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from analytics.detectors.joint import STATE_VERSION, JointConfig

FloatArray = npt.NDArray[np.float64]


class NumpyJointDetector:
    """Joint state of one device over `metrics`; `update(values)` feeds one row (NaN: metric missing)."""

    def __init__(self, metrics: Sequence[str], config: JointConfig | None = None) -> None:
        if len(metrics) < 2:
            raise ValueError("joint detection needs at least two metrics")
        self.metrics = tuple(metrics)
        self.config = config or JointConfig()
        d = len(self.metrics)
        self.rows = 0
        self.weight = 0.0
        self.last_ts: float | None = None
        self.mean = np.zeros(d)
        self.cov = np.zeros((d, d))
        self._model: FloatArray | None = None  # maps a standardised row to its prediction
        self._std = np.ones(d)
        self._watched = np.zeros(d, dtype=bool)  # metrics well enough predicted to be blamed
        self._since_fit = 0
        self._fitted_rows = 0  # rows learnt since the model first existed
        self.scale = np.zeros(d)
        self.z_max = np.zeros(d)
        self.z_q = np.zeros(d)
        self.z_prev = np.zeros((3, d))  # the last three rows' z, newest first
        self.swing_max = np.zeros(d)  # the largest sum of four consecutive normal z
        self.distinct: list[list[float]] = [[] for _ in range(d)]  # up to three values seen per metric
        self._settled = False
        self._blamable = np.zeros(d, dtype=bool)
        self._break_bar = np.ones(d)
        self._leak_bar = np.ones(d)
        self._swing_bar = np.zeros(d)
        self._floor = np.full(d, 1e-9)
        self.recent = 0
        self.skipped = 0  # suspicious rows in a row not learnt
        self.anomalous = False
        self.blamed: int | None = None
        self.onset = ""
        self.anomalous_rows = 0
        self.calm = 0
        self.z = np.zeros(d)
        self.ratio = 0.0  # the last row's largest z over its break bar, among watched metrics

    @property
    def score(self) -> float:
        """How surprising the last row was, in (0, 1): the largest ratio of a watched metric's `z` to its break bar,
        squashed like the univariate score (a ratio of 1, the bar itself, scores the univariate alert threshold)."""
        from analytics.detectors.univariate import DetectorConfig, squash

        univariate = DetectorConfig()
        return squash(univariate.alert_evidence * self.ratio, univariate.squash_scale)

    @property
    def metric(self) -> str | None:
        """The metric blamed for the current (or last) anomalous state."""
        return None if self.blamed is None else self.metrics[self.blamed]

    # persistence -----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "metrics": list(self.metrics),
            "rows": self.rows,
            "fitted_rows": self._fitted_rows,
            "weight": self.weight,
            "last_ts": self.last_ts,
            "mean": self.mean.tolist(),
            "cov": self.cov.tolist(),
            "scale": self.scale.tolist(),
            "z_max": self.z_max.tolist(),
            "z_q": self.z_q.tolist(),
            "z_prev": self.z_prev.tolist(),
            "swing_max": self.swing_max.tolist(),
            "distinct": [list(v) for v in self.distinct],
            "recent": self.recent,
            "skipped": self.skipped,
            "anomalous": self.anomalous,
            "blamed": self.blamed,
            "onset": self.onset,
            "anomalous_rows": self.anomalous_rows,
            "calm": self.calm,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any], config: JointConfig | None = None) -> NumpyJointDetector:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported joint state version: {state.get('version')!r}")
        found = cls(list(state["metrics"]), config)
        found.rows = int(state["rows"])
        found._fitted_rows = int(state["fitted_rows"])
        found.weight = float(state["weight"])
        found.last_ts = None if state["last_ts"] is None else float(state["last_ts"])
        found.mean = np.asarray(state["mean"], dtype=np.float64)
        found.cov = np.asarray(state["cov"], dtype=np.float64)
        found.scale = np.asarray(state["scale"], dtype=np.float64)
        found.z_max = np.asarray(state["z_max"], dtype=np.float64)
        found.z_q = np.asarray(state["z_q"], dtype=np.float64)
        found.z_prev = np.asarray(state["z_prev"], dtype=np.float64)
        found.swing_max = np.asarray(state["swing_max"], dtype=np.float64)
        found.distinct = [[float(x) for x in v] for v in state["distinct"]]
        found.recent = int(state["recent"])
        found.skipped = int(state["skipped"])
        found.anomalous = bool(state["anomalous"])
        blamed = state["blamed"]
        found.blamed = None if blamed is None else int(blamed)
        found.onset = str(state["onset"])
        found.anomalous_rows = int(state["anomalous_rows"])
        found.calm = int(state["calm"])
        found._since_fit = found.config.refit_every  # solve again on the next row
        found._bars()
        found._settled = all(len(v) >= 3 for v in found.distinct)
        return found

    # one row ---------------------------------------------------------------------------------------------
    def update(self, values: Sequence[float], ts: float) -> bool:
        """Feed one row in `metrics` order, read at `ts` (epoch seconds); return whether the device is jointly
        anomalous after it. A row with a missing metric is skipped (state unchanged)."""
        if len(values) != self.mean.shape[0]:
            raise ValueError(f"expected {self.mean.shape[0]} values, got {len(values)}")
        if not all(math.isfinite(v) for v in values):
            return self.anomalous
        row = np.asarray(values, dtype=np.float64)
        cfg = self.config
        z = self._surprise(row)
        self.z = z
        z_prev = self.z_prev
        swing = z + z_prev[0] + z_prev[1] + z_prev[2]
        z_prev[2] = z_prev[1]
        z_prev[1] = z_prev[0]
        z_prev[0] = z
        if not self._settled:
            self._note_values(values)
        if self.anomalous:
            return self._hold(z, row, ts)
        onset = ""
        if self.rows >= cfg.learn_rows and self._model is not None:
            watched = self._blamable
            ratio = np.where(watched, z / self._break_bar, 0.0)
            self.ratio = float(ratio.max())
            over_leak = watched & (z > self._leak_bar) & (swing > self._swing_bar)
            self.recent = ((self.recent << 1) | int(bool(over_leak.any()))) & ((1 << cfg.leak_window) - 1)
            if self.ratio > 1.0 or self.recent.bit_count() >= cfg.leak_points:
                onset = "break" if self.ratio > 1.0 else "leak"
                self.blamed = self._attribute(row, watched)
        if onset:
            self.onset = onset
            self.anomalous = True
            self.anomalous_rows = 1
            self.calm = 0
            return True
        # A suspicious row (beyond the leak bar) is not learnt: a slow leak would otherwise train the model and its
        # maxima to itself. Suspicion that lasts `max_skipped_rows` is a new regime, learnt from then on.
        if (
            self.rows >= cfg.learn_rows
            and self._model is not None
            and bool((self._blamable & (z > self._leak_bar)).any())
        ):
            self.skipped += 1
            if self.skipped <= cfg.max_skipped_rows:
                return False
        else:
            self.skipped = 0
        self._learn(row, z, ts)
        if self.rows > cfg.learn_rows:
            np.maximum(self.swing_max, swing, out=self.swing_max)
        return False

    def _attribute(self, row: FloatArray, watched: npt.NDArray[np.bool_]) -> int:
        """The metric that left the relation: the one whose replacement by its prediction from the others makes
        the rest of the row most normal. (A fault of one metric also moves the others' predictions, and a metric
        the others predict very tightly may show the larger residual; leaving one out tells them apart.)"""
        assert self._model is not None
        standard = (row - self.mean) / self._std
        candidates = np.flatnonzero(watched)
        best, best_excess = int(candidates[0]), math.inf
        for k in candidates:
            fixed = standard.copy()
            fixed[k] = float(self._model[k] @ standard)
            residual = np.abs(fixed - self._model @ fixed) * self._std / (self.scale + self._floor)
            residual[k] = 0.0
            excess = float(np.max(np.where(watched, residual / self._break_bar, 0.0)))
            if excess < best_excess:
                best, best_excess = int(k), excess
        return best

    def _note_values(self, values: Sequence[float]) -> None:
        """Up to three distinct values per metric (two: a state, not a measurement)."""
        settled = True
        for seen, x in zip(self.distinct, values, strict=True):
            if len(seen) < 3:
                if x not in seen:
                    seen.append(float(x))
                settled = settled and len(seen) >= 3
        self._settled = settled
        self._blamable = self._watched & np.asarray([len(v) > 2 for v in self.distinct])

    def _bars(self) -> None:
        """The per-metric bars, from the learned maxima and quantiles (kept, not computed per row)."""
        cfg = self.config
        self._break_bar = np.maximum(np.maximum(cfg.break_z, cfg.break_margin * self.z_max), 1e-12)
        self._leak_bar = np.maximum(np.maximum(cfg.leak_z, cfg.leak_margin * self.z_q), 1e-12)
        self._swing_bar = cfg.leak_margin * self.swing_max

    def _hold(self, z: FloatArray, row: FloatArray, ts: float) -> bool:
        cfg = self.config
        self.anomalous_rows += 1
        blamed = self.blamed if self.blamed is not None else int(np.argmax(z))
        self.calm = self.calm + 1 if z[blamed] < cfg.exit_z else 0
        if self.calm < cfg.exit_rows and self.anomalous_rows <= cfg.max_anomalous_rows:
            return True
        if self.calm < cfg.exit_rows:
            # Lasted so long it is the new normal: the relation has changed; that much departure is normal now.
            self.z_max[blamed] = max(float(self.z_max[blamed]), float(z[blamed]))
        self.anomalous = False
        self.recent = 0
        self.z_prev[:] = 0.0
        self._learn(row, z, ts)
        self._bars()
        return False

    # the model -------------------------------------------------------------------------------------------
    def _surprise(self, row: FloatArray) -> FloatArray:
        cfg = self.config
        if self._model is None or self._since_fit >= cfg.refit_every:
            self._fit()
        if self._model is None:
            return np.zeros_like(row)
        standard = (row - self.mean) / self._std
        residual = np.abs(standard - self._model @ standard) * self._std
        return np.asarray(residual / (self.scale + self._floor), dtype=np.float64)

    def _fit(self) -> None:
        """Solve the model from the running moments: a matrix taking a standardised row to its prediction (and
        the bars from the learned maxima and quantiles, as often)."""
        self._since_fit = 0
        self._bars()
        if self.weight <= 0 or self.rows < 10:
            return
        std = np.sqrt(np.maximum(np.diag(self.cov), 0.0))
        self._floor = 1e-9 * (np.abs(self.mean) + 1.0)
        varies = std > self._floor
        self._std = np.where(varies, std, 1.0)
        corr = self.cov / np.outer(self._std, self._std)
        d = corr.shape[0]
        # A metric that has not varied lately is unrelated to everything (and cannot be watched).
        corr[~varies, :] = 0.0
        corr[:, ~varies] = 0.0
        np.fill_diagonal(corr, 1.0 + self.config.ridge)
        if self.config.method == "pca":
            eigenvalues, vectors = np.linalg.eigh(corr)
            order = np.argsort(eigenvalues)[::-1]
            eigenvalues, vectors = eigenvalues[order], vectors[:, order]
            share = np.cumsum(eigenvalues) / max(float(eigenvalues.sum()), 1e-12)
            keep = min(d - 1, int(np.searchsorted(share, self.config.explained_variance)) + 1)
            basis = vectors[:, :keep]
            self._model = basis @ basis.T
            # The share of each metric's variance the kept components explain.
            self._watched = varies & (np.sum(basis * basis * eigenvalues[:keep], axis=1) >= self.config.min_r2)
            self._blamable = self._watched & np.asarray([len(v) > 2 for v in self.distinct])
            return
        # Regression: row j predicted from the others, b_j = C[-j,-j]^-1 C[-j,j].
        model = np.zeros((d, d))
        precision = np.linalg.inv(corr)
        # For a correlation matrix, 1 - 1/P[j,j] is the R² of metric j on all the others.
        self._watched = varies & (1.0 - 1.0 / np.diag(precision) >= self.config.min_r2)
        self._blamable = self._watched & np.asarray([len(v) > 2 for v in self.distinct])
        for j in range(d):
            # With the precision matrix P, the regression of j on the rest is -P[j,-j] / P[j,j].
            coefficients = -precision[j] / precision[j, j]
            coefficients[j] = 0.0
            model[j] = coefficients
        self._model = model

    def _learn(self, row: FloatArray, z: FloatArray, ts: float) -> None:
        cfg = self.config
        self.rows += 1
        self._since_fit += 1
        elapsed = 0.0 if self.last_ts is None else max(0.0, ts - self.last_ts)
        self.last_ts = ts
        self.weight = math.exp(-elapsed / cfg.memory_s) * self.weight + 1.0
        w = 1.0 / self.weight
        delta = row - self.mean
        self.mean = self.mean + w * delta
        self.cov = (1.0 - w) * (self.cov + w * np.outer(delta, delta))
        if self._model is None:
            return
        residual = z * (self.scale + self._floor)
        self._fitted_rows += 1
        if self.rows < cfg.learn_rows:
            # While learning, the plain mean of the residuals since the model exists: no early row, taken
            # against a scale still near zero, may pose as a normal extreme.
            self.scale = self.scale + (residual - self.scale) / self._fitted_rows
            return
        clipped = np.where(self.scale > 0, np.minimum(residual, 10.0 * self.scale), residual)
        self.scale = self.scale + cfg.scale_alpha * (clipped - self.scale)
        if self.rows >= cfg.learn_rows:
            self.z_max = np.maximum(self.z_max, z)
            q = cfg.quantile
            self.z_q = self.z_q + cfg.quantile_alpha * np.where(z > self.z_q, q, q - 1.0) * np.maximum(self.z_q, 1.0)
