"""`ioc bench analytics`: readings per second through the analytics job's pure half (per-metric and joint
detectors and rules per reading), on synthetic vaccine-fridge series; no database. `--lag` runs the live job
against a database instead (`bench.analytics_lag`)."""

from __future__ import annotations

import random
import time

from analytics.detector_state import new_detector, new_joint_detector
from analytics.scoring import DeviceInfo, JobConfig, StreamScorer
from devices.catalog import load_catalog


def _synthetic_rows(
    devices: int, points: int, *, seed: int
) -> tuple[list[tuple[str, str, float, float, int, float]], int]:
    """Readings of `devices` vaccine fridges (5 metrics each), one per 60 s, with a few excursions."""
    rng = random.Random(seed)
    dtype = load_catalog().get("vaccine_fridge")
    assert dtype is not None
    start = 1_790_000_000.0
    rows = []
    for d in range(devices):
        device_id = f"bench-{d:06d}"
        for spec in dtype.metrics:
            base = spec.min + 0.4 * (spec.max - spec.min)
            noise = 0.01 * (spec.max - spec.min)
            for i in range(points):
                value = base + rng.gauss(0.0, noise)
                if rng.random() < 0.002:
                    value = spec.max - noise
                rows.append((device_id, spec.name, start + 60.0 * i, value, 0, start + 60.0 * i))
    return rows, len(dtype.metrics)


def bench_scoring(*, devices: int, points: int, seed: int = 7) -> dict[str, object]:
    """Scoring throughput of the job's pure half (detector + rules per reading), no database."""
    rows, metrics = _synthetic_rows(devices, points, seed=seed)
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    scorer = StreamScorer(load_catalog(), JobConfig(), detector_factory=new_detector, joint_factory=new_joint_detector)
    info = DeviceInfo("vaccine_fridge", "can-tho", "health")
    fleet = {f"bench-{d:06d}": info for d in range(devices)}
    # Score in batches of whole time slices, as the job sees them: every series advances a little per batch.
    per_batch = max(1, 50_000 // (devices * metrics))
    batches = []
    for first in range(0, points, per_batch):
        chunk = [r for r in rows if first * 60.0 <= r[2] - 1_790_000_000.0 < (first + per_batch) * 60.0]
        batches.append(chunk)
    started = time.perf_counter()
    anomalies = 0
    ops = 0
    for chunk in batches:
        outcome = scorer.score(chunk, fleet)
        anomalies += len(outcome.anomalies)
        ops += len(outcome.ops)
    elapsed = time.perf_counter() - started
    return {
        "what": "analytics job scoring (per-metric and joint detectors, rules), one core, no database",
        "readings": len(rows),
        "series": devices * metrics,
        "batches": len(batches),
        "seconds": round(elapsed, 3),
        "readings_per_s": round(len(rows) / elapsed),
        "anomalies": anomalies,
        "alarm_ops": ops,
    }
