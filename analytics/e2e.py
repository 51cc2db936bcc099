"""End-to-end detection measured against ground truth: the simulator's fault labels (JSONL) versus the alarms
the live job raised in the database.

A label is one injected fault: `{"device": …, "metric": … | null, "kind": …, "start": …, "end": …}` (`device_id`
is accepted for `device`; times are ISO 8601 or epoch seconds/milliseconds). An alarm detects a label when it is
on the same device (and metric, unless either is device-wide) and the reading that raised it lies in
[start, end + tolerance]. Reported per fault kind: recall, precision, median detection delay (reading time from
fault start to the raising reading); and, over all alarms, the alarm latency from the raising reading's arrival
at the center to the alarm's raise in wall time (`details.raised_wall_s - trigger_received_at`).
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from core.errors import IocError
from store.pool import Conn

DEFAULT_TOLERANCE_S: Final = 900.0
# Alarms this long before the first fault are inside the run (start-up) and count as false positives too.
LEAD_S: Final = 3600.0
LATENCY_TARGET_S: Final = 5.0
# Faults the ingest path absorbs by design (redelivery, reordering, quarantine, tolerated skew): nothing for
# analytics to detect, so they are counted but not scored.
NOT_SCORED_KINDS: Final = frozenset({"duplicate", "out_of_order", "malformed", "clock_skew"})


class LabelsError(IocError):
    """The labels file is missing or a line is not a label; the message names the line."""


@dataclass(frozen=True, slots=True)
class FaultLabel:
    device_id: str
    metric: str | None
    kind: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Detection:
    alarm_id: int
    device_id: str
    metric: str | None
    source: str
    cause: str
    trigger_ts: float
    latency_s: float | None


def _time(value: object, where: str) -> float:
    if isinstance(value, bool):
        raise LabelsError(f"{where}: not a time: {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
        # Epoch milliseconds are 1000x larger than any plausible epoch seconds.
        return seconds / 1000.0 if seconds > 1e11 else seconds
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise LabelsError(f"{where}: not a time: {value!r}") from exc
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    raise LabelsError(f"{where}: not a time: {value!r}")


def read_labels(path: Path) -> list[FaultLabel]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise LabelsError(f"{path}: cannot read: {exc}") from exc
    labels = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LabelsError(f"{where}: not JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise LabelsError(f"{where}: expected a JSON object")
        device = obj.get("device", obj.get("device_id"))
        kind = obj.get("kind")
        if not isinstance(device, str) or not isinstance(kind, str):
            raise LabelsError(f"{where}: needs string fields 'device' and 'kind'")
        metric = obj.get("metric")
        if metric == "*":
            metric = None  # the simulator's mark for a fault of whole messages (device-wide)
        if metric is not None and not isinstance(metric, str):
            raise LabelsError(f"{where}: 'metric' must be a string or null")
        start = _time(obj.get("start"), where)
        end = _time(obj.get("end", obj.get("start")), where)
        if end < start:
            raise LabelsError(f"{where}: 'end' is before 'start'")
        labels.append(FaultLabel(device_id=device, metric=metric, kind=kind, start=start, end=end))
    return labels


def load_detections(conn: Conn, *, start: float, end: float) -> list[Detection]:
    """Alarms whose raising reading lies in [start, end] (reading time, epoch seconds)."""
    rows = conn.execute(
        "SELECT id, device_id, metric, source, cause, extract(epoch FROM coalesce(trigger_reading_ts, first_reading_ts))::float8, "
        "coalesce((details->>'raised_wall_s')::float8, extract(epoch FROM raised_at)::float8) "
        "- extract(epoch FROM trigger_received_at)::float8 FROM alarms "
        "WHERE coalesce(trigger_reading_ts, first_reading_ts) BETWEEN to_timestamp(%s) AND to_timestamp(%s) "
        "ORDER BY 6",
        (start, end),
    ).fetchall()
    return [
        Detection(
            alarm_id=int(r[0]),
            device_id=str(r[1]),
            metric=r[2],
            source=str(r[3]),
            cause=str(r[4]),
            trigger_ts=float(r[5]),
            latency_s=None if r[6] is None else float(r[6]),
        )
        for r in rows
    ]


def _matches(label: FaultLabel, detection: Detection, tolerance_s: float) -> bool:
    if detection.device_id != label.device_id:
        return False
    if label.metric is not None and detection.metric is not None and label.metric != detection.metric:
        return False
    return label.start <= detection.trigger_ts <= label.end + tolerance_s


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _quantile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def score_detections(
    labels: Sequence[FaultLabel], detections: Sequence[Detection], *, tolerance_s: float = DEFAULT_TOLERANCE_S
) -> dict[str, object]:
    """The report (pure): per fault kind and overall."""
    matched_alarms: dict[int, set[str]] = defaultdict(set)
    per_kind: dict[str, dict[str, object]] = {}
    delays: dict[str, list[float]] = defaultdict(list)
    found: dict[str, int] = defaultdict(int)
    total: dict[str, int] = defaultdict(int)
    sources: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    first_latencies: dict[str, list[float]] = defaultdict(list)
    for label in labels:
        total[label.kind] += 1
        hits = [d for d in detections if _matches(label, d, tolerance_s)]
        for d in hits:
            matched_alarms[d.alarm_id].add(label.kind)
        if hits:
            first = min(hits, key=lambda d: d.trigger_ts)
            found[label.kind] += 1
            delays[label.kind].append(max(0.0, first.trigger_ts - label.start))
            sources[label.kind][first.source] += 1
            if first.latency_s is not None:
                first_latencies[label.kind].append(first.latency_s)
    false_alarms = [d for d in detections if d.alarm_id not in matched_alarms]
    for kind in sorted(total):
        series = {(lb.device_id, lb.metric) for lb in labels if lb.kind == kind}
        devices = {device for device, _ in series}
        true_positive = sum(1 for kinds in matched_alarms.values() if kind in kinds)
        # False alarms charged to a kind: those on the devices that carry a fault of this kind.
        charged = sum(1 for d in false_alarms if d.device_id in devices)
        precision = true_positive / (true_positive + charged) if true_positive + charged else None
        per_kind[kind] = {
            "labels": total[kind],
            "detected": found[kind],
            "recall": found[kind] / total[kind],
            "alarms_matched": true_positive,
            "false_alarms_on_these_devices": charged,
            "precision": precision,
            "median_delay_s": _median(delays[kind]),
            "first_detected_by": dict(sources[kind]),
            # Arrival → alarm (wall time) of the alarms that first detected each fault of this kind.
            "alarm_latency_s": {
                "count": len(first_latencies[kind]),
                "median": _median(first_latencies[kind]),
                "max": max(first_latencies[kind]) if first_latencies[kind] else None,
            },
        }
    latencies = [d.latency_s for d in detections if d.latency_s is not None]
    all_found = sum(found.values())
    all_total = sum(total.values())
    return {
        "labels": all_total,
        "alarms": len(detections),
        "tolerance_s": tolerance_s,
        "recall": all_found / all_total if all_total else None,
        "precision": (len(detections) - len(false_alarms)) / len(detections) if detections else None,
        "median_delay_s": _median([v for values in delays.values() for v in values]),
        "per_kind": per_kind,
        "alarm_latency_s": {
            "count": len(latencies),
            "median": _median(latencies),
            "p95": _quantile(latencies, 0.95),
            "max": max(latencies) if latencies else None,
            f"within_{LATENCY_TARGET_S:g}s": (
                sum(1 for v in latencies if v <= LATENCY_TARGET_S) / len(latencies) if latencies else None
            ),
        },
    }


def evaluate_labels(conn: Conn, labels_path: Path, *, tolerance_s: float = DEFAULT_TOLERANCE_S) -> dict[str, object]:
    """Score the alarms in the database against the labels file."""
    every = read_labels(labels_path)
    labels = [lb for lb in every if lb.kind not in NOT_SCORED_KINDS]
    if not labels:
        raise LabelsError(f"{labels_path}: no labels")
    start = min(lb.start for lb in labels) - LEAD_S
    end = max(lb.end for lb in labels) + tolerance_s
    report = score_detections(labels, load_detections(conn, start=start, end=end), tolerance_s=tolerance_s)
    skipped: dict[str, int] = defaultdict(int)
    for lb in every:
        if lb.kind in NOT_SCORED_KINDS:
            skipped[lb.kind] += 1
    report["not_scored"] = dict(skipped)
    return report


def format_report(report: dict[str, object]) -> str:
    def fmt(value: object, pattern: str = "{:.2f}") -> str:
        return "-" if value is None else pattern.format(value)

    lines = [f"{'fault kind':<22}{'labels':>8}{'recall':>8}{'precision':>11}{'median delay s':>16}"]
    per_kind = report["per_kind"]
    assert isinstance(per_kind, dict)
    for kind, row in per_kind.items():
        lines.append(
            f"{kind:<22}{row['labels']:>8}{fmt(row['recall']):>8}{fmt(row['precision']):>11}"
            f"{fmt(row['median_delay_s'], '{:.0f}'):>16}"
        )
    lines.append(
        f"{'all':<22}{report['labels']!s:>8}{fmt(report['recall']):>8}{fmt(report['precision']):>11}"
        f"{fmt(report['median_delay_s'], '{:.0f}'):>16}"
    )
    latency = report["alarm_latency_s"]
    assert isinstance(latency, dict)
    lines.append(
        f"alarm latency (arrival → alarm): median {fmt(latency['median'], '{:.3f}')} s, "
        f"p95 {fmt(latency['p95'], '{:.3f}')} s, max {fmt(latency['max'], '{:.3f}')} s over {latency['count']} alarms"
    )
    return "\n".join(lines)
