"""Joint (multivariate) detection for one device: learns how its metrics move together and notices when one
of them leaves that relation (flow drops while the pressure holds, a conductivity sensor drifting away from the
salinity it should follow). Pure and causal; one instance per device, rows in, state out.

Each row is the device's metric vector at one reading time. A model of normal rows predicts every metric from
the others (`method`):
- `regression`: a least-squares fit of each metric on all the others, from exponentially weighted means and
  covariances of normal rows (forgotten over `memory_s` of reading time, whatever the report interval, so the
  model remembers whole days and may still drift slowly with the seasons);
- `pca`: the reconstruction of the standardised row from its leading principal components (those explaining
  `explained_variance`), from the same weighted covariance.
A metric's surprise `z` is its residual over the mean absolute residual of normal rows (and never over less than
a sliver of the metric's spread, `resolution_share`). Only a metric that the others predict well (R² at least
`min_r2`) can be blamed: a relation that does not exist cannot break, and a door switch or a rain gauge is not
predicted by anything. A metric with two values (a state) takes no part in the relations at all. Onsets, judged per metric against its own history of
normal surprise: one row with `z` far beyond the largest normal `z` (a break),
or several rows in a short window beyond a high quantile of normal `z` (a relation leaking away). The state
holds while the blamed metric's residual stays beyond `exit_z`, nothing is learnt meanwhile, and it is blamed
on the metric that left the relation (`metric`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import mul
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

JointMethod = Literal["regression", "pca"]
STATE_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class JointConfig:
    """Tunables of `JointDetector` (chosen on the simulated fleet's tuning seeds)."""

    method: JointMethod = "regression"
    memory_s: float = 2 * 86_400.0  # time constant of the running moments, in reading time
    learn_rows: int = 100  # rows before the state may turn on
    refit_every: int = 10  # rows between solving the model again from the running moments
    ridge: float = 1e-3  # added to the standardised covariance's diagonal
    min_r2: float = 0.9  # a metric is watched when the others explain at least this share of its variance
    resolution_share: float = 0.003  # a residual is measured in at least this share of the metric's std
    explained_variance: float = 0.95  # pca: components kept
    scale_alpha: float = 0.02  # mean absolute residual of normal rows
    quantile_alpha: float = 0.01
    quantile: float = 0.98
    break_z: float = 8.0  # one row this many mean residuals ...
    break_margin: float = 8.0  # ... and this far beyond the largest normal z starts a `break`
    leak_margin: float = 2.0  # rows beyond this x the high quantile of normal z ...
    leak_z: float = 4.0  # ... and this many mean residuals ...
    leak_points: int = 3  # ... this many of the last `leak_window` rows start a `leak`
    leak_window: int = 4
    exit_z: float = 3.0  # the blamed metric back within this many mean residuals ...
    exit_rows: int = 2  # ... for this many rows in a row ends the state
    max_anomalous_rows: int = 300
    max_skipped_rows: int = 0  # suspicious rows in a row left unlearnt, at most (0: every row is learnt)


class JointDetector:
    """Joint state of one device over `metrics`; `update(values)` feeds one row (NaN: metric missing).

    The live job calls `update` for every row of every device, so the per-row work is plain Python floats in lists
    (numpy on vectors of two to six metrics spends far more on each call than on the arithmetic); numpy solves the
    model every `refit_every` rows (`_fit`) and tells the blamed metric apart at an onset (`_attribute`)."""

    def __init__(self, metrics: Sequence[str], config: JointConfig | None = None) -> None:
        if len(metrics) < 2:
            raise ValueError("joint detection needs at least two metrics")
        self.metrics = tuple(metrics)
        self.config = config or JointConfig()
        d = self._d = len(self.metrics)
        self.rows = 0
        self.weight = 0.0
        self.last_ts: float | None = None
        self.mean = [0.0] * d
        self._cov = [0.0] * (d * d)  # running covariance, row-major
        self._model: list[list[float]] | None = None  # maps a standardised row to its prediction
        self._std = [1.0] * d
        self._watched = [False] * d  # metrics well enough predicted to be blamed
        self._since_fit = 0
        self._fitted_rows = 0  # rows learnt since the model first existed
        self.scale = [0.0] * d
        self.z_max = [0.0] * d
        self.z_q = [0.0] * d
        self.z_prev = [[0.0] * d for _ in range(3)]  # the last three rows' z, newest first
        self.swing_max = [0.0] * d  # the largest sum of four consecutive normal z
        self.distinct: list[list[float]] = [[] for _ in range(d)]  # up to three values seen per metric
        self._settled = False
        self._blamable = [False] * d
        self._break_bar = [1.0] * d
        self._leak_bar = [1.0] * d
        self._swing_bar = [0.0] * d
        self._floor = [1e-9] * d
        self._divisor = [1e-9] * d  # scale + floor, per metric: what a residual is measured in
        self.recent = 0
        self.skipped = 0  # suspicious rows in a row not learnt
        self.anomalous = False
        self.blamed: int | None = None
        self.onset = ""
        self.anomalous_rows = 0
        self.calm = 0
        self.z = [0.0] * d
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
            "mean": list(self.mean),
            "cov": [self._cov[i * self._d : (i + 1) * self._d] for i in range(self._d)],
            "scale": list(self.scale),
            "z_max": list(self.z_max),
            "z_q": list(self.z_q),
            "z_prev": [list(r) for r in self.z_prev],
            "swing_max": list(self.swing_max),
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
    def from_state(cls, state: Mapping[str, Any], config: JointConfig | None = None) -> JointDetector:
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"unsupported joint state version: {state.get('version')!r}")
        found = cls(list(state["metrics"]), config)
        d = found._d

        def vector(name: str) -> list[float]:
            values = [float(x) for x in state[name]]
            if len(values) != d:
                raise ValueError(f"joint state {name!r} has {len(values)} values, expected {d}")
            return values

        found.rows = int(state["rows"])
        found._fitted_rows = int(state["fitted_rows"])
        found.weight = float(state["weight"])
        found.last_ts = None if state["last_ts"] is None else float(state["last_ts"])
        found.mean = vector("mean")
        found._cov = [float(x) for row in state["cov"] for x in row]
        if len(found._cov) != d * d:
            raise ValueError(f"joint state 'cov' is not {d} x {d}")
        found.scale = vector("scale")
        found._divisor = [s + f for s, f in zip(found.scale, found._floor, strict=True)]
        found.z_max = vector("z_max")
        found.z_q = vector("z_q")
        found.z_prev = [[float(x) for x in row] for row in state["z_prev"]]
        found.swing_max = vector("swing_max")
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
        d = self._d
        if len(values) != d:
            raise ValueError(f"expected {d} values, got {len(values)}")
        row = [float(v) for v in values]
        if not all(map(math.isfinite, row)):
            return self.anomalous
        cfg = self.config
        z = self._surprise(row)
        self.z = z
        p0, p1, p2 = self.z_prev
        swing = [z[i] + p0[i] + p1[i] + p2[i] for i in range(d)]
        self.z_prev = [z, p0, p1]
        if not self._settled:
            self._note_values(row)
        if self.anomalous:
            return self._hold(z, row, ts)
        ready = self.rows >= cfg.learn_rows and self._model is not None
        watched = self._blamable
        leak_bar = self._leak_bar
        onset = ""
        if ready:
            break_bar = self._break_bar
            swing_bar = self._swing_bar
            ratio = 0.0
            over_leak = False
            for i in range(d):
                if watched[i]:
                    zi = z[i]
                    ratio = max(ratio, zi / break_bar[i])
                    if zi > leak_bar[i] and swing[i] > swing_bar[i]:
                        over_leak = True
            self.ratio = ratio
            self.recent = ((self.recent << 1) | int(over_leak)) & ((1 << cfg.leak_window) - 1)
            if ratio > 1.0 or self.recent.bit_count() >= cfg.leak_points:
                onset = "break" if ratio > 1.0 else "leak"
                self.blamed = self._attribute(row, watched)
        if onset:
            self.onset = onset
            self.anomalous = True
            self.anomalous_rows = 1
            self.calm = 0
            return True
        # A suspicious row (beyond the leak bar) is not learnt: a slow leak would otherwise train the model and its
        # maxima to itself. Suspicion that lasts `max_skipped_rows` is a new regime, learnt from then on.
        if ready and any(watched[i] and z[i] > leak_bar[i] for i in range(d)):
            self.skipped += 1
            if self.skipped <= cfg.max_skipped_rows:
                return False
        else:
            self.skipped = 0
        self._learn(row, z, ts)
        if self.rows > cfg.learn_rows:
            self.swing_max = [s if s >= m else m for s, m in zip(swing, self.swing_max, strict=True)]
        return False

    def _attribute(self, row: list[float], watched: list[bool]) -> int:
        """The metric that left the relation: the one whose replacement by its prediction from the others makes
        the rest of the row most normal. (A fault of one metric also moves the others' predictions, and a metric
        the others predict very tightly may show the larger residual; leaving one out tells them apart.) Only at
        an onset, so numpy."""
        assert self._model is not None
        model = np.asarray(self._model)
        std = np.asarray(self._std)
        break_bar = np.asarray(self._break_bar)
        watched_mask = np.asarray(watched, dtype=bool)
        divisor = np.asarray(self.scale) + np.asarray(self._floor)
        standard = (np.asarray(row) - np.asarray(self.mean)) / std
        candidates = np.flatnonzero(watched_mask)
        best, best_excess = int(candidates[0]), math.inf
        for k in candidates:
            fixed = standard.copy()
            fixed[k] = float(model[k] @ standard)
            residual = np.abs(fixed - model @ fixed) * std / divisor
            residual[k] = 0.0
            excess = float(np.max(np.where(watched_mask, residual / break_bar, 0.0)))
            if excess < best_excess:
                best, best_excess = int(k), excess
        return best

    def _note_values(self, values: list[float]) -> None:
        """Up to three distinct values per metric (two: a state, not a measurement)."""
        settled = True
        grown = False
        for seen, x in zip(self.distinct, values, strict=True):
            if len(seen) < 3:
                if x not in seen:
                    seen.append(x)
                    grown = True
                settled = settled and len(seen) >= 3
        self._settled = settled
        if grown:  # which metrics may be blamed changes only with a new value (or a new fit, which sets it too)
            self._blamable = self._blamable_now()

    def _blamable_now(self) -> list[bool]:
        return [w and len(v) > 2 for w, v in zip(self._watched, self.distinct, strict=True)]

    def _bars(self) -> None:
        """The per-metric bars, from the learned maxima and quantiles (kept, not computed per row)."""
        cfg = self.config
        self._break_bar = [max(cfg.break_z, cfg.break_margin * m, 1e-12) for m in self.z_max]
        self._leak_bar = [max(cfg.leak_z, cfg.leak_margin * q, 1e-12) for q in self.z_q]
        self._swing_bar = [cfg.leak_margin * s for s in self.swing_max]

    def _hold(self, z: list[float], row: list[float], ts: float) -> bool:
        cfg = self.config
        self.anomalous_rows += 1
        blamed = self.blamed if self.blamed is not None else max(range(self._d), key=z.__getitem__)
        self.calm = self.calm + 1 if z[blamed] < cfg.exit_z else 0
        if self.calm < cfg.exit_rows and self.anomalous_rows <= cfg.max_anomalous_rows:
            return True
        if self.calm < cfg.exit_rows:
            # Lasted so long it is the new normal: the relation has changed; that much departure is normal now.
            self.z_max[blamed] = max(self.z_max[blamed], z[blamed])
        self.anomalous = False
        self.recent = 0
        self.z_prev = [[0.0] * self._d for _ in range(3)]
        self._learn(row, z, ts)
        self._bars()
        return False

    # the model -------------------------------------------------------------------------------------------
    def _surprise(self, row: list[float]) -> list[float]:
        """Each metric's residual from its prediction by the others, in mean absolute residuals of normal rows."""
        if self._model is None or self._since_fit >= self.config.refit_every:
            self._fit()
        model = self._model
        if model is None:
            return [0.0] * self._d
        std = self._std
        standard = [(x - m) / s for x, m, s in zip(row, self.mean, std, strict=True)]
        return [
            abs(own - sum(map(mul, coefficients, standard))) * s / divisor
            for own, coefficients, s, divisor in zip(standard, model, std, self._divisor, strict=True)
        ]

    def _fit(self) -> None:
        """Solve the model from the running moments: a matrix taking a standardised row to its prediction (and
        the bars from the learned maxima and quantiles, as often)."""
        self._since_fit = 0
        self._bars()
        if self.weight <= 0 or self.rows < 10:
            return
        d = self._d
        cov = self._cov
        std = [math.sqrt(max(cov[i * d + i], 0.0)) for i in range(d)]
        # A metric that has not varied lately, or that has only ever shown two values (a state: a door, a bay
        # taken or free), predicts nothing and is predicted by nothing: a measurement that only a switch explains
        # is a level per state (a parked car's own magnetic field), which the per-metric detector watches.
        varies = [
            s > 1e-9 * (abs(m) + 1.0) and len(seen) > 2
            for s, m, seen in zip(std, self.mean, self.distinct, strict=True)
        ]
        # Residuals finer than a sliver of the metric's spread are its resolution, not a relation leaving it: a
        # relation exact but for rounding (AC power 0.97 x DC, zero below the inverter's cut-in) would otherwise
        # call its rounding and its cut-in at dawn breaks.
        share = self.config.resolution_share
        floor = [max(1e-9 * (abs(m) + 1.0), share * s) for m, s in zip(self.mean, std, strict=True)]
        std = [s if v else 1.0 for s, v in zip(std, varies, strict=True)]
        self._floor = floor
        self._std = std
        self._divisor = [s + f for s, f in zip(self.scale, floor, strict=True)]
        # A metric that has not varied lately is unrelated to everything (and cannot be watched).
        diagonal = 1.0 + self.config.ridge
        corr = [
            [
                diagonal if i == j else (cov[i * d + j] / (std[i] * std[j]) if varies[i] and varies[j] else 0.0)
                for j in range(d)
            ]
            for i in range(d)
        ]
        if self.config.method == "pca":
            self._fit_pca(np.asarray(corr), np.asarray(varies, dtype=bool))
            return
        # Regression: row j predicted from the others, b_j = C[-j,-j]^-1 C[-j,j].
        precision = _inverse(corr)
        min_r2 = self.config.min_r2
        # For a correlation matrix, 1 - 1/P[j,j] is the R² of metric j on all the others.
        self._watched = [v and 1.0 - 1.0 / precision[j][j] >= min_r2 for j, v in enumerate(varies)]
        self._blamable = self._blamable_now()
        model = []
        for j, p_row in enumerate(precision):
            # With the precision matrix P, the regression of j on the rest is -P[j,-j] / P[j,j].
            p_jj = p_row[j]
            coefficients = [-p / p_jj for p in p_row]
            coefficients[j] = 0.0
            model.append(coefficients)
        self._model = model

    def _fit_pca(self, corr: npt.NDArray[np.float64], varies: npt.NDArray[np.bool_]) -> None:
        """`pca`: the reconstruction from the leading principal components of the correlation matrix."""
        d = corr.shape[0]
        eigenvalues, vectors = np.linalg.eigh(corr)
        order = np.argsort(eigenvalues)[::-1]
        eigenvalues, vectors = eigenvalues[order], vectors[:, order]
        share = np.cumsum(eigenvalues) / max(float(eigenvalues.sum()), 1e-12)
        keep = min(d - 1, int(np.searchsorted(share, self.config.explained_variance)) + 1)
        basis = vectors[:, :keep]
        self._model = (basis @ basis.T).tolist()
        # The share of each metric's variance the kept components explain.
        watched = varies & (np.sum(basis * basis * eigenvalues[:keep], axis=1) >= self.config.min_r2)
        self._watched = watched.tolist()
        self._blamable = self._blamable_now()

    def _learn(self, row: list[float], z: list[float], ts: float) -> None:
        cfg = self.config
        self.rows += 1
        self._since_fit += 1
        elapsed = 0.0 if self.last_ts is None else max(0.0, ts - self.last_ts)
        self.last_ts = ts
        self.weight = math.exp(-elapsed / cfg.memory_s) * self.weight + 1.0
        w = 1.0 / self.weight
        keep = 1.0 - w
        delta = [x - m for x, m in zip(row, self.mean, strict=True)]
        self.mean = [m + w * e for m, e in zip(self.mean, delta, strict=True)]
        outer = [a * b for a in delta for b in delta]
        self._cov = [keep * (c + w * p) for c, p in zip(self._cov, outer, strict=True)]
        if self._model is None:
            return
        self._fitted_rows += 1
        if self.rows < cfg.learn_rows:
            # While learning, the plain mean of the residuals since the model exists: no early row, taken
            # against a scale still near zero, may pose as a normal extreme.
            fitted = self._fitted_rows
            self.scale = [s + (zi * v - s) / fitted for s, zi, v in zip(self.scale, z, self._divisor, strict=True)]
            self._divisor = [s + f for s, f in zip(self.scale, self._floor, strict=True)]
            return
        # One pass per metric (this runs for nearly every row): residual, its clipped running mean, the maximum
        # and the high quantile of normal z, and the divisor of the next row's residuals.
        alpha = cfg.scale_alpha
        q, below = cfg.quantile, cfg.quantile - 1.0
        qa = cfg.quantile_alpha
        scale: list[float] = []
        z_max: list[float] = []
        z_q: list[float] = []
        divisor: list[float] = []
        for zi, v, before, m, zq, f in zip(
            z, self._divisor, self.scale, self.z_max, self.z_q, self._floor, strict=True
        ):
            r = zi * v
            if before > 0:
                limit = 10.0 * before
                s = before + alpha * ((r if r <= limit else limit) - before)
            else:
                s = before + alpha * (r - before)
            scale.append(s)
            divisor.append(s + f)
            z_max.append(zi if zi >= m else m)
            z_q.append(zq + qa * (q if zi > zq else below) * (zq if zq >= 1.0 else 1.0))
        self.scale, self.z_max, self.z_q, self._divisor = scale, z_max, z_q, divisor


def joint_metrics(metric_names: Sequence[str], groups: Mapping[str, str | None]) -> list[tuple[str, ...]]:
    """The metric sets a device type is watched on jointly: its catalog groups (metrics that move together) when
    it names any, else all its metrics as one set; sets of one metric are dropped."""
    named: dict[str, list[str]] = {}
    for name in metric_names:
        group = groups.get(name)
        if group is not None:
            named.setdefault(group, []).append(name)
    sets = [tuple(members) for members in named.values()] if named else [tuple(metric_names)]
    return [s for s in sets if len(s) >= 2]


def _inverse(matrix: list[list[float]]) -> list[list[float]]:
    """The inverse of a small, well-conditioned square matrix (a ridged correlation matrix), by Gauss-Jordan
    elimination with partial pivoting: for a handful of metrics plain floats beat numpy's call overhead. A zero
    pivot (a singular matrix) is left to `numpy.linalg.inv`, which raises, as it always did here."""
    d = len(matrix)
    work = [[*row, *(1.0 if i == j else 0.0 for j in range(d))] for i, row in enumerate(matrix)]
    for col in range(d):
        pivot_row = max(range(col, d), key=lambda r: abs(work[r][col]))
        pivot = work[pivot_row][col]
        if pivot == 0.0:
            return [[float(x) for x in row] for row in np.linalg.inv(np.asarray(matrix))]
        if pivot_row != col:
            work[col], work[pivot_row] = work[pivot_row], work[col]
        lead = [x / pivot for x in work[col]]
        work[col] = lead
        for r in range(d):
            if r != col:
                factor = work[r][col]
                if factor != 0.0:
                    work[r] = [x - factor * y for x, y in zip(work[r], lead, strict=True)]
    return [row[d:] for row in work]
