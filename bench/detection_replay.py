"""`ioc bench detection --in-process`: the fleet, faults and scoring of `ioc bench detection` without broker,
database or ingest. Firmware samples go straight into the analytics job's pure scorer (`StreamScorer`) in ticks
of simulated time, as the job would read them, and its alarm operations into `AlarmBook`, an in-memory copy of
the lifecycle `analytics.alarms` keeps in SQL. A 60-device day takes seconds instead of minutes, which is what
developing a detector needs; the figures of record come from the full pipeline (`bench.detection`).

What the network would do is emulated: a sample lost to a dropout never arrives; samples taken while a device is
offline arrive, in order, at its first sample after the outage (store-and-forward); a skewed clock's timestamps
are used as sent; duplicates, reordering and malformed payloads are absorbed by ingest and are left out here.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from analytics.e2e import (
    DEFAULT_TOLERANCE_S,
    NOT_SCORED_KINDS,
    Detection,
    FaultLabel,
    _matches,  # the scoring's own label-to-alarm match, so the details agree with the figures
    score_detections,
    score_points,
)
from analytics.scoring import AlarmOp, DeviceInfo, JobConfig, StreamScorer
from bench.field_faults import field_fault_spec
from devices.catalog import Catalog, load_catalog
from firmware_sim.faults import FaultSpec
from firmware_sim.firmware import FirmwareDevice, SimDevice
from firmware_sim.roster import build_devices
from store.analytics import FetchedReading

# The job reads a batch about this often in simulated time (a 0.1 s poll at 240x is 24 s).
DEFAULT_TICK_S: Final = 30.0
# 2026-11-01 00:00 Vietnam time: a fixed start keeps runs comparable (the season shapes the physics).
DEFAULT_START_S: Final = 1_793_466_000.0
# A rule alarm the fault-free twin raised within this long of the run's is the same legitimate alarm.
TWIN_TOLERANCE_S: Final = 900.0


@dataclass(frozen=True, slots=True)
class ReplayRun:
    """One in-process run: the fleet, how long it learns fault-free, how long it is scored, and its seed."""

    devices: int = 60
    warmup_hours: float = 24.0
    hours: float = 24.0
    seed: int = 1
    faults: bool = True
    tick_s: float = DEFAULT_TICK_S
    start_s: float = DEFAULT_START_S
    tolerance_s: float = DEFAULT_TOLERANCE_S


@dataclass(slots=True)
class BookAlarm:
    """One alarm as the alarms table would hold it."""

    id: int
    device_id: str
    metric: str | None
    source: str
    kind: str
    cause: str
    trigger_ts: float
    first_ts: float
    occurrences: int
    incident: int
    detail: str = ""
    cleared_ts: float | None = None
    clear_reason: str | None = None


@dataclass(slots=True)
class AlarmBook:
    """The alarms table's lifecycle in memory: one open alarm per (device, metric, cause); raise opens one or
    counts repeats on the open one, repeat counts on an open one, clear closes it."""

    alarms: list[BookAlarm] = field(default_factory=list)
    open: dict[tuple[str, str | None, str], BookAlarm] = field(default_factory=dict)
    latest: dict[tuple[str, str | None, str], BookAlarm] = field(default_factory=dict)

    def apply(self, op: AlarmOp, *, now: float) -> None:
        signal = op.signal
        key = (signal.device_id, signal.metric, signal.cause)
        current = self.open.get(key)
        if op.op == "clear":
            if current is not None:
                current.cleared_ts = now
                current.clear_reason = op.reason
                del self.open[key]
            return
        if current is not None:
            current.occurrences += signal.occurrences
            return
        if op.op == "repeat":
            return
        trigger = signal.trigger_ts or signal.first_ts
        leader = self.latest.get(op.joins) if op.joins is not None else None
        alarm = BookAlarm(
            id=len(self.alarms) + 1,
            device_id=signal.device_id,
            metric=signal.metric,
            source=signal.source,
            kind=signal.kind,
            cause=signal.cause,
            trigger_ts=trigger.timestamp(),
            first_ts=signal.first_ts.timestamp(),
            occurrences=signal.occurrences,
            incident=len(self.alarms) + 1 if leader is None else leader.incident,
            detail=str(signal.details.get("onset", "")),
        )
        self.alarms.append(alarm)
        self.open[key] = alarm
        self.latest[key] = alarm


@dataclass(slots=True)
class FleetData:
    """What the fleet sent, in arrival order, and the truth about it."""

    arrivals: list[tuple[float, FetchedReading]]
    labels: list[FaultLabel]
    devices: list[SimDevice]


def simulate_fleet(run: ReplayRun, catalog: Catalog, spec: FaultSpec) -> FleetData:
    """Every reading the fleet sends over the run, with its arrival time at the center (epoch seconds)."""
    devices = build_devices(run.devices, prefix="e2e")
    start_ms = round(run.start_s * 1000)
    end_ms = start_ms + round((run.warmup_hours + run.hours) * 3_600_000)
    firmwares = [FirmwareDevice(device=d, seed=run.seed, start_ms=start_ms, faults=spec) for d in devices]
    ranges = {
        (dtype.code, m.name): (m.min, m.max) for dtype in catalog for m in dtype.metrics
    }  # ingest flags out-of-range values (quality 1)
    arrivals: list[tuple[float, FetchedReading]] = []
    labels: list[FaultLabel] = []
    held: dict[int, list[tuple[int, Mapping[str, float]]]] = {}
    heap = [(fw.next_ms, i) for i, fw in enumerate(firmwares)]
    heapq.heapify(heap)

    def send(device: SimDevice, ts_ms: int, readings: Mapping[str, float], arrival_s: float) -> None:
        for metric, value in readings.items():
            low, high = ranges[(device.type_code, metric)]
            quality = 0 if low <= value <= high else 1
            arrivals.append((arrival_s, (device.device_id, metric, ts_ms / 1000, value, quality, arrival_s)))

    while heap and heap[0][0] < end_ms:
        now_ms, index = heapq.heappop(heap)
        firmware = firmwares[index]
        sample = firmware.step()
        heapq.heappush(heap, (firmware.next_ms, index))
        labels += _convert(sample.labels)
        device = firmware.device
        if sample.offline:
            held.setdefault(index, []).extend((m.ts_ms, m.readings) for m in sample.messages if m.raw is None)
            continue
        arrival = now_ms / 1000
        for ts_ms, readings in held.pop(index, ()):
            send(device, ts_ms, readings, arrival)
        seen: set[int] = set()
        for message in sample.messages:
            if message.raw is not None or message.seq in seen:
                continue  # quarantined, or a duplicate ingest absorbs
            seen.add(message.seq)
            send(device, message.ts_ms, message.readings, arrival)
    for index, firmware in enumerate(firmwares):
        labels += _convert(firmware.finish().labels)
        for ts_ms, readings in held.pop(index, ()):
            send(firmware.device, ts_ms, readings, end_ms / 1000)
    arrivals.sort(key=lambda item: item[0])
    return FleetData(arrivals=arrivals, labels=labels, devices=devices)


def _convert(labels: Sequence[object]) -> list[FaultLabel]:
    out = []
    for label in labels:
        metric = getattr(label, "metric")  # noqa: B009 - firmware labels, converted without importing their type
        out.append(
            FaultLabel(
                device_id=getattr(label, "device_id"),  # noqa: B009
                metric=None if metric == "*" else metric,
                kind=getattr(label, "kind"),  # noqa: B009
                start=getattr(label, "start_ms") / 1000,  # noqa: B009
                end=getattr(label, "end_ms") / 1000,  # noqa: B009
            )
        )
    return out


def _score_fleet(
    run: ReplayRun, fleet: FleetData, *, config: JobConfig, catalog: Catalog, book: AlarmBook
) -> set[tuple[str, str, float]]:
    """Score the fleet's readings in ticks as the job would; alarms go into `book`; returns the anomalous points."""
    from analytics.detector_state import new_detector, new_joint_detector

    infos = {d.device_id: DeviceInfo(d.type_code, d.province, d.sector) for d in fleet.devices}
    scorer = StreamScorer(catalog, config, detector_factory=new_detector, joint_factory=new_joint_detector)
    flagged: set[tuple[str, str, float]] = set()
    arrivals = fleet.arrivals
    position = 0
    tick_end = run.start_s + run.tick_s
    end_s = run.start_s + (run.warmup_hours + run.hours) * 3600
    newest = float("-inf")
    while tick_end <= end_s + run.tick_s:
        batch: list[FetchedReading] = []
        while position < len(arrivals) and arrivals[position][0] < tick_end:
            batch.append(arrivals[position][1])
            position += 1
        batch.sort(key=lambda r: (r[0], r[1], r[2]))
        outcome = scorer.score(batch, infos)
        newest = max(newest, outcome.max_ts)
        for op in outcome.ops:
            book.apply(op, now=tick_end)
        flagged.update((a.device_id, a.metric, a.ts) for a in outcome.anomalies)
        if newest > float("-inf"):
            for op in scorer.check_silent(min(tick_end, newest), infos):
                book.apply(op, now=tick_end)
        tick_end += run.tick_s
    return flagged


def twin_rule_alarms(run: ReplayRun, *, config: JobConfig, catalog: Catalog) -> list[BookAlarm]:
    """The rule alarms the same fleet (same seed, devices and start) raises without faults: the physics crossing
    a real threshold, which a run with faults raises too without being wrong."""
    clean = replace(run, faults=False)
    book = AlarmBook()
    _score_fleet(clean, simulate_fleet(clean, catalog, FaultSpec()), config=config, catalog=catalog, book=book)
    return [a for a in book.alarms if a.source == "rule"]


def legitimate_alarms(
    alarms: Iterable[tuple[int, str, str, float]], twin: Sequence[BookAlarm], *, tolerance_s: float
) -> set[int]:
    """Ids among `alarms` (id, device, cause, trigger time) that the fault-free twin raised too: same device and
    cause, triggered within `tolerance_s`."""
    by_cause: dict[tuple[str, str], list[float]] = {}
    for alarm in twin:
        by_cause.setdefault((alarm.device_id, alarm.cause), []).append(alarm.trigger_ts)
    found = set()
    for alarm_id, device_id, cause, trigger_ts in alarms:
        if any(abs(t - trigger_ts) <= tolerance_s for t in by_cause.get((device_id, cause), ())):
            found.add(alarm_id)
    return found


def incident_details(
    labels: Sequence[FaultLabel],
    detections: Sequence[Detection],
    *,
    tolerance_s: float,
    legitimate: Collection[int],
    onsets: Mapping[int, str],
    intervals_s: Mapping[str, float],
) -> dict[str, list[dict[str, object]]]:
    """What to look at when a kind falls short: the labels no alarm detected (with their length in report
    intervals) and the alarms that detected no label and that the fault-free twin does not explain (with the onset
    the state gave, from `onsets`: alarm id → onset). Matching is the scoring's own (`analytics.e2e`)."""
    matched: set[int] = set()
    missed: list[dict[str, object]] = []
    for label in labels:
        hits = [d.alarm_id for d in detections if _matches(label, d, tolerance_s)]
        matched.update(hits)
        if not hits:
            interval = intervals_s.get(label.device_id)
            missed.append(
                {
                    "device_id": label.device_id,
                    "metric": label.metric,
                    "kind": label.kind,
                    "start": label.start,
                    "end": label.end,
                    "intervals": None if not interval else round((label.end - label.start) / interval + 1, 1),
                }
            )
    false: list[dict[str, object]] = [
        {
            "alarm_id": d.alarm_id,
            "device_id": d.device_id,
            "metric": d.metric,
            "source": d.source,
            "cause": d.cause,
            "onset": onsets.get(d.alarm_id, ""),
            "trigger_ts": d.trigger_ts,
        }
        for d in detections
        if d.alarm_id not in matched and d.alarm_id not in legitimate
    ]
    return {"missed": missed, "false": false}


def run_replay(
    run: ReplayRun, *, config: JobConfig, catalog: Catalog | None = None, book: AlarmBook | None = None
) -> dict[str, object]:
    """Simulate, score in ticks as the job would, and report as `ioc bench detection` does (the alarms stay in
    `book` when one is given)."""
    catalog = catalog or load_catalog()
    started = time.perf_counter()
    start_after_ms = round((run.start_s + run.warmup_hours * 3600) * 1000)
    spec = field_fault_spec(catalog, start_after_ms=start_after_ms) if run.faults else FaultSpec()
    fleet = simulate_fleet(run, catalog, spec)
    simulated = time.perf_counter()
    book = book if book is not None else AlarmBook()
    flagged = _score_fleet(run, fleet, config=config, catalog=catalog, book=book)
    twin = twin_rule_alarms(run, config=config, catalog=catalog) if run.faults else []
    legitimate = legitimate_alarms(
        ((a.id, a.device_id, a.cause, a.trigger_ts) for a in book.alarms if a.source == "rule"),
        twin,
        tolerance_s=TWIN_TOLERANCE_S,
    )
    scored = time.perf_counter()
    return _report(
        run,
        fleet,
        book,
        flagged,
        catalog=catalog,
        legitimate=legitimate,
        timings=(simulated - started, scored - simulated),
    )


def _report(
    run: ReplayRun,
    fleet: FleetData,
    book: AlarmBook,
    flagged: set[tuple[str, str, float]],
    *,
    catalog: Catalog,
    legitimate: set[int],
    timings: tuple[float, float],
) -> dict[str, object]:
    measured_from = run.start_s + run.warmup_hours * 3600
    labels = [lb for lb in fleet.labels if lb.kind not in NOT_SCORED_KINDS]
    detections = [
        Detection(a.id, a.device_id, a.metric, a.source, a.cause, a.trigger_ts, None)
        for a in book.alarms
        if a.trigger_ts >= measured_from
    ]
    intervals = {}
    for device in fleet.devices:
        dtype = catalog.get(device.type_code)
        if dtype is not None:
            intervals[device.device_id] = dtype.report_interval_s
    report = score_detections(
        labels,
        detections,
        tolerance_s=run.tolerance_s,
        intervals_s=intervals,
        incident_of={a.id: a.incident for a in book.alarms},
        legitimate=legitimate,
    )
    report["details"] = incident_details(
        labels,
        detections,
        tolerance_s=run.tolerance_s,
        legitimate=legitimate,
        onsets={a.id: a.detail for a in book.alarms},
        intervals_s=intervals,
    )
    readings = [(r[0], r[1], r[2]) for _, r in fleet.arrivals if r[2] >= measured_from]
    report["points"] = score_points(labels, flagged={p for p in flagged if p[2] >= measured_from}, readings=readings)
    by_source: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    for alarm in book.alarms:
        if alarm.trigger_ts >= measured_from:
            by_source[alarm.source] = by_source.get(alarm.source, 0) + 1
            by_kind[alarm.kind] = by_kind.get(alarm.kind, 0) + 1
    device_days = run.devices * run.hours / 24
    report["run"] = {
        "mode": "in-process",
        "devices": run.devices,
        "warmup_hours": run.warmup_hours,
        "hours": run.hours,
        "seed": run.seed,
        "faults": run.faults,
        "readings": len(fleet.arrivals),
        "alarms_by_source": by_source,
        "alarms_by_kind": by_kind,
        "detector_alarms_per_100_device_days": 100 * by_source.get("detector", 0) / device_days
        if device_days
        else None,
        "simulate_s": round(timings[0], 1),
        "score_s": round(timings[1], 1),
    }
    return report
