"""Streaming univariate detector (scratch v1, tuned on NAB)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    warmup_points: int = 150
    mean_alpha: float = 0.1
    dev_alpha: float = 0.01
    raw_scale: float = 3.0
    short_alpha: float = 0.2
    long_alpha: float = 0.001
    spatial_tolerance: float = 0.05
    spatial_gain: float = 10.0
    suppress_points: int = 200
    suppress_factor: float = 0.3
    trigger: float = 4.0
    squash_scale: float = 4.0
    peak_decay: float = 0.0
    peak_floor: float = 1.0
    use_peak: bool = False
    peak_start: int = 100
    raw_mode: str = "resid"
    buckets: int = 40
    order: int = 2
    raw_mix: float = 0.5


_STATE_FIELDS = (
    "n",
    "lo",
    "hi",
    "mean",
    "dev",
    "short",
    "long_mean",
    "long_var",
    "suppress_left",
    "peak",
    "resolution",
    "history",
    "table",
)


class UnivariateDetector:
    __slots__ = ("config", *_STATE_FIELDS)

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        self.n = 0
        self.lo = 0.0
        self.hi = 0.0
        self.mean = 0.0
        self.dev = 0.0
        self.short = 0.0
        self.long_mean = 0.0
        self.long_var = 0.0
        self.suppress_left = 0
        self.peak = 0.0
        self.resolution = 0.0
        self.history: list[int] = []
        self.table: dict[tuple[int, ...], dict[int, int]] = {}

    def update(self, t: float, x: float) -> float:
        cfg = self.config
        self.n += 1
        if self.n == 1:
            self.lo = self.hi = self.mean = x
            return 0.0
        lo, hi = self.lo, self.hi
        span = hi - lo
        if x > hi:
            excess = (x - hi) / span if span > 0 else 1.0
            self.hi = x
        elif x < lo:
            excess = (lo - x) / span if span > 0 else 1.0
            self.lo = x
        else:
            excess = 0.0
        resid = x - self.mean
        floor = 1e-3 * (span if span > 0 else (abs(x) if x != 0 else 1.0))
        z = abs(resid) / (self.dev + floor)
        self.mean += cfg.mean_alpha * resid
        self.dev += cfg.dev_alpha * (abs(resid) - self.dev)
        raw = z * z / (z * z + cfg.raw_scale * cfg.raw_scale)
        if cfg.raw_mode != "resid":
            if self.n <= cfg.warmup_points or self.resolution <= 0:
                self.resolution = (self.hi - self.lo) / cfg.buckets
            res = self.resolution if self.resolution > 0 else 1.0
            b = math.floor(x / res)
            hist = self.history
            surprise = 1.0
            if len(hist) >= cfg.order:
                ctx = tuple(hist[-cfg.order:])
                row = self.table.get(ctx)
                if row is None:
                    row = self.table[ctx] = {}
                    surprise = 1.0
                else:
                    total = sum(row.values())
                    near = row.get(b, 0) + 0.5 * (row.get(b - 1, 0) + row.get(b + 1, 0))
                    surprise = 1.0 - min(1.0, near / total) if total else 1.0
                row[b] = row.get(b, 0) + 1
            hist.append(b)
            if len(hist) > cfg.order:
                del hist[0]
            if cfg.raw_mode == "seq":
                raw = surprise
            else:
                raw = cfg.raw_mix * surprise + (1 - cfg.raw_mix) * raw
        self.short += cfg.short_alpha * (raw - self.short)
        d = raw - self.long_mean
        self.long_mean += cfg.long_alpha * d
        self.long_var = (1 - cfg.long_alpha) * (self.long_var + cfg.long_alpha * d * d)
        sd = math.sqrt(self.long_var) + 1e-3
        z_like = (self.short - self.long_mean) / sd
        evidence = max(
            z_like,
            cfg.spatial_gain * (excess - cfg.spatial_tolerance) + cfg.trigger
            if excess > cfg.spatial_tolerance
            else 0.0,
        )
        if cfg.use_peak:
            ratio = evidence / max(self.peak, cfg.peak_floor)
            if self.n > cfg.peak_start:
                self.peak = max(self.peak * (1.0 - cfg.peak_decay), evidence)
            evidence = ratio
        if self.n <= cfg.warmup_points:
            return 0.0
        if self.suppress_left > 0:
            self.suppress_left -= 1
            evidence *= cfg.suppress_factor
        elif evidence > cfg.trigger:
            self.suppress_left = cfg.suppress_points
        if evidence <= 0:
            return 0.0
        return evidence / (evidence + cfg.squash_scale)


def score_series(times, values, config=None):
    det = UnivariateDetector(config)
    return [det.update(t, x) for t, x in zip(times, values)]
