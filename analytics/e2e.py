"""End-to-end detection measured against ground truth: the simulator's fault labels (JSONL) versus the alarms
the live job raised in the database.

A label is one injected fault: `{"device": …, "metric": … | null, "kind": …, "start": …, "end": …}` (`device_id`
is accepted for `device`; times are ISO 8601 or epoch seconds/milliseconds). An alarm detects a label when it is
on the same device (and metric, unless either is device-wide) and the reading that raised it lies in
[start, end + tolerance]. One label is one incident. Reported per fault kind: recall, precision, median detection
delay (reading time from fault start to the raising reading, in seconds and in the device's report intervals);
and, over all alarms, the alarm latency from the raising reading's arrival at the center to the alarm's raise in
wall time (`details.raised_wall_s - trigger_received_at`).

Point-wise (`score_points`): every reading of a faulted metric inside a label's [start, end] should carry the
detector's anomalous state (`is_anomaly`, the `anomalies` rows) and no other reading should: precision, recall
and F1 over readings, per kind and overall. Faults of whole messages (a dropout has no readings) are scored on
incidents only.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
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


SeriesPoint = tuple[str, str, float]  # (device_id, metric, reading time in epoch seconds)


@dataclass(frozen=True, slots=True)
class Detection:
    alarm_id: int
    device_id: str
    metric: str | None
    source: str
    cause: str
    trigger_ts: float
    latency_s: float | None
    # The first alarm of the incident this one joined (None: it leads its own).
    incident_id: int | None = None


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
        "- extract(epoch FROM trigger_received_at)::float8, incident_id FROM alarms "
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
            incident_id=None if r[7] is None else int(r[7]),
        )
        for r in rows
    ]


def load_points(conn: Conn, *, start: float, end: float) -> tuple[set[SeriesPoint], list[SeriesPoint]]:
    """The anomalous readings (`anomalies`) and every reading, with reading times in [start, end]."""
    flagged = conn.execute(
        "SELECT DISTINCT device_id, metric, extract(epoch FROM ts)::float8 FROM anomalies "
        "WHERE ts BETWEEN to_timestamp(%s) AND to_timestamp(%s)",
        (start, end),
    ).fetchall()
    readings = conn.execute(
        "SELECT device_id, metric, extract(epoch FROM ts)::float8 FROM readings "
        "WHERE ts BETWEEN to_timestamp(%s) AND to_timestamp(%s)",
        (start, end),
    ).fetchall()
    return {(str(d), str(m), float(t)) for d, m, t in flagged}, [(str(d), str(m), float(t)) for d, m, t in readings]


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
    labels: Sequence[FaultLabel],
    detections: Sequence[Detection],
    *,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    intervals_s: Mapping[str, float] | None = None,
    incident_of: Mapping[int, int] | None = None,
    legitimate: Collection[int] = (),
) -> dict[str, object]:
    """The report (pure): per fault kind and overall. `intervals_s` (device → report interval) adds the delays in
    report intervals. `incident_of` (alarm id → the id of its incident's first alarm) scores precision on
    incidents: an incident is true when any of its alarms detects a label (an alarm missing from it leads its
    own incident). `legitimate`: ids of alarms that the same fleet raises without faults too (a real threshold
    crossed by the physics): when they detect no label they are counted apart, neither true nor false."""
    intervals_s = intervals_s or {}
    incident_of = incident_of or {}
    legitimate = set(legitimate)
    delays_in_intervals: dict[str, list[float]] = defaultdict(list)
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
            interval = intervals_s.get(label.device_id)
            if interval:
                delays_in_intervals[label.kind].append(max(0.0, first.trigger_ts - label.start) / interval)
            sources[label.kind][first.source] += 1
            if first.latency_s is not None:
                first_latencies[label.kind].append(first.latency_s)
    # Incidents: alarms grouped under their first alarm; an incident carries the kinds its alarms detected.
    leaders = {d.alarm_id: d for d in detections}
    incident_kinds: dict[int, set[str]] = defaultdict(set)
    incident_device: dict[int, str] = {}
    for d in detections:
        leader = incident_of.get(d.alarm_id, d.incident_id if d.incident_id is not None else d.alarm_id)
        if leader not in leaders:
            leader = d.alarm_id  # its incident began before the scored range: it counts on its own
        incident_kinds[leader] |= matched_alarms.get(d.alarm_id, set())
        incident_device.setdefault(leader, leaders[leader].device_id)
    # An incident whose alarms detect nothing but include a legitimate one is the physics, not a false alarm.
    incident_members: dict[int, list[int]] = defaultdict(list)
    for d in detections:
        leader = incident_of.get(d.alarm_id, d.incident_id if d.incident_id is not None else d.alarm_id)
        incident_members[leader if leader in incident_kinds else d.alarm_id].append(d.alarm_id)
    explained = {
        leader
        for leader, kinds in incident_kinds.items()
        if not kinds and any(a in legitimate for a in incident_members[leader])
    }
    for leader in explained:
        del incident_kinds[leader]
    false_incidents = [leader for leader, kinds in incident_kinds.items() if not kinds]
    false_alarms = [d for d in detections if d.alarm_id not in matched_alarms and d.alarm_id not in legitimate]
    for kind in sorted(total):
        series = {(lb.device_id, lb.metric) for lb in labels if lb.kind == kind}
        devices = {device for device, _ in series}
        true_positive = sum(1 for kinds in incident_kinds.values() if kind in kinds)
        # False incidents charged to a kind: those on the devices that carry a fault of this kind.
        charged = sum(1 for leader in false_incidents if incident_device[leader] in devices)
        precision = true_positive / (true_positive + charged) if true_positive + charged else None
        per_kind[kind] = {
            "labels": total[kind],
            "detected": found[kind],
            "recall": found[kind] / total[kind],
            "incidents_matched": true_positive,
            "false_incidents_on_these_devices": charged,
            "precision": precision,
            "median_delay_s": _median(delays[kind]),
            "median_delay_intervals": _median(delays_in_intervals[kind]),
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
        "incidents": len(incident_kinds),
        "false_incidents": len(false_incidents),
        "false_incidents_by_source": {
            source: sum(1 for leader in false_incidents if leaders[leader].source == source)
            for source in sorted({d.source for d in detections})
        },
        "legitimate_incidents": len(explained),
        "false_alarms": len(false_alarms),
        "tolerance_s": tolerance_s,
        "recall": all_found / all_total if all_total else None,
        "precision": (len(incident_kinds) - len(false_incidents)) / len(incident_kinds) if incident_kinds else None,
        "median_delay_s": _median([v for values in delays.values() for v in values]),
        "median_delay_intervals": _median([v for values in delays_in_intervals.values() for v in values]),
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


def _f1(tp: int, fp: int, fn: int) -> dict[str, object]:
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


def score_points(
    labels: Sequence[FaultLabel], *, flagged: Collection[SeriesPoint], readings: Iterable[SeriesPoint]
) -> dict[str, object]:
    """Point-wise agreement of the anomalous state (`flagged` readings) with the labelled spans of metric faults,
    over every stored reading (`readings`). Per kind, false positives are the flagged readings outside every span
    on the series that carry a fault of that kind."""
    spans: dict[tuple[str, str], list[tuple[float, float, str]]] = defaultdict(list)
    for label in labels:
        if label.metric is not None:
            spans[(label.device_id, label.metric)].append((label.start, label.end, label.kind))
    flagged_set = set(flagged)
    tp: dict[str, int] = defaultdict(int)
    fn: dict[str, int] = defaultdict(int)
    fp_on: dict[tuple[str, str], int] = defaultdict(int)
    fp_total = 0
    for device_id, metric, ts in readings:
        key = (device_id, metric)
        is_flagged = (device_id, metric, ts) in flagged_set
        kinds = [kind for start, end, kind in spans.get(key, ()) if start <= ts <= end]
        if kinds:
            for kind in set(kinds):
                if is_flagged:
                    tp[kind] += 1
                else:
                    fn[kind] += 1
        elif is_flagged:
            fp_total += 1
            fp_on[key] += 1
    per_kind: dict[str, object] = {}
    for kind in sorted({kind for series in spans.values() for _, _, kind in series}):
        series = {key for key, items in spans.items() if any(k == kind for _, _, k in items)}
        per_kind[kind] = _f1(tp[kind], sum(fp_on[key] for key in series), fn[kind])
    return {**_f1(sum(tp.values()), fp_total, sum(fn.values())), "per_kind": per_kind}


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
