"""The analytics job's pure half: detector, joint and rule state per device and series; readings in, anomaly rows
and alarm operations out. No database, no wall clock: the caller passes readings, devices and its own `now`.

Per reading, a series is anomalous while its per-metric detector's state is (`is_anomaly`), or while its device's
joint detector blames it for leaving the relation to the device's other metrics, or when the value is physically
impossible. A detector alarm follows that state: raised at the onset (once the series has learnt for the
policy's `learn_s`), counting anomalous readings as occurrences, cleared after `anomaly_quiet_s` of reading time
without one. Flood control happens here too, as data on the operations:
- incidents: an alarm raised on a device within `group_window_s` of its previous one joins that alarm's incident,
  and so does a silent device within that window of another silent device of its province (a network or power
  outage): the job links it to the incident's first alarm and notifies only that one;
- flapping: an alarm raised again `flap_count` times within `flap_window_s` is flapping: its clears wait until it
  has been quiet for the whole window, so it stays one alarm instead of a string of them;
- maintenance: no alarm is raised for a device inside a maintenance window (`MaintenanceWindows`).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from operator import itemgetter
from typing import Final, Literal, Protocol

from analytics.alarm_policy import EVERY_ANOMALY, DetectorAlarmGate, DetectorAlarmPolicy, device_gap_open
from analytics.alarms import Alarm, AlarmSignal
from analytics.detector_state import Detector, SeriesState, detector_threshold
from analytics.rules import RuleEngine, RuleEvent, SeriesRules
from devices.catalog import Catalog, Severity
from store.analytics import AnomalyRow, FetchedReading

# The cause of detector alarms (one open alarm per series whichever detector saw it first) and the detectors
# named on anomaly rows and as the alarm's kind.
DETECTOR_CAUSE: Final = "detector"
UNIVARIATE: Final = "univariate"
JOINT: Final = "joint"
# Kept for the tables' readers: the detector named on anomaly rows before joint detection existed.
DETECTOR_NAME: Final = UNIVARIATE
# The score of a reading outside its metric's physical range (quality 1): anomalous whatever was learnt.
IMPOSSIBLE_SCORE: Final = 0.999
# A metric's repeat is a rest when at least this share of the device's other metrics (and two) repeat at once.
REST_SHARE: Final = 0.6
# Why a detector state began, for the alarm's message.
ONSET_TEXT: Final[Mapping[str, str]] = {
    "jump": "a step far beyond any it has made",
    "volatile": "readings suddenly erratic",
    "out_of_range": "far outside the range it has shown",
    "stuck": "the same reading over and over",
    "new_state": "a state it has never reported",
    "break": "no longer follows the device's other metrics",
    "leak": "drifting away from the device's other metrics",
    "impossible": "a physically impossible value",
}


class JointModel(Protocol):
    """What the scorer needs of a device's joint detector (`analytics.detectors.joint.JointDetector`)."""

    metrics: tuple[str, ...]
    anomalous: bool
    onset: str

    @property
    def metric(self) -> str | None: ...

    def update(self, values: Sequence[float], ts: float) -> bool: ...


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What scoring needs of a device: its type (rules), where it is (the alarm's scope, maintenance windows)
    and its own report interval when it was set apart from its type's."""

    type_code: str
    province: str
    sector: str
    report_interval_s: float | None = None
    site: str | None = None


@dataclass(frozen=True, slots=True)
class JobConfig:
    """The analytics job's settings: its polling and saving (read by the job) and alarm behaviour (read by the
    scorer)."""

    name: str = "analytics"
    # Readings per batch the job aims for (the xid span read per tick adapts to it).
    batch_target_rows: int = 50_000
    poll_interval_s: float = 0.2
    state_save_interval_s: float = 60.0
    # A detector alarm clears after this much reading time without an anomalous reading on its series.
    anomaly_quiet_s: float = 600.0
    # An alarm left active (unacknowledged) this long moves up one severity level, and again after as long.
    escalate_after_s: float = 900.0
    detector_severity: Severity = "minor"
    # None: the detector's own default threshold (for detectors without an anomalous state).
    detector_threshold: float | None = None
    # Which anomalies raise detector alarms (all anomalies are written either way). The default here raises on
    # every anomaly, as the scorer's unit tests expect; entry points pass `Settings`' policy (`job_config`).
    detector_policy: DetectorAlarmPolicy = EVERY_ANOMALY
    # Joint detection of each device's metrics beside the per-metric detector.
    joint: bool = True
    # A device is silent after this many of its report intervals without a reading (or its silent rule's
    # duration, if that comes first); None: the rule's duration only.
    silence_reports: float | None = 2.5
    # Silent alarms are notified again this often until acknowledged or the device is back (read by the job).
    silence_reminder_s: float = 3600.0
    # Alarms raised within this much reading time of an earlier one of the same device (or, for silence, of the
    # same province) form one incident.
    group_window_s: float = 1800.0
    # Raised this many times within `flap_window_s`: flapping, cleared only after a whole window of quiet.
    flap_count: int = 3
    flap_window_s: float = 3600.0


class MaintenanceWindows(Protocol):
    """Planned work: whether a device is inside a maintenance window at a reading time."""

    def covers(self, device_id: str, info: DeviceInfo, ts: float) -> bool: ...


class _NoMaintenance:
    def covers(self, device_id: str, info: DeviceInfo, ts: float) -> bool:
        return False


NO_MAINTENANCE: Final = _NoMaintenance()


class _Series:
    """One (device, metric) series: its detector, rules, alarm gate and how far it has read."""

    __slots__ = (
        "detector",
        "detector_cause",
        "detector_open",
        "dirty",
        "gate",
        "last_anomaly_ts",
        "last_ts",
        "rules",
        "stateful",
    )

    def __init__(self, detector: Detector, rules: SeriesRules) -> None:
        self.detector = detector
        self.rules = rules
        self.gate = DetectorAlarmGate()
        self.last_ts = float("-inf")
        self.last_anomaly_ts = float("-inf")
        self.detector_open = False
        self.detector_cause = DETECTOR_CAUSE
        self.dirty = False
        # A detector with an anomalous state (the production one) is anomalous while that state lasts; any other
        # is anomalous at or above the threshold.
        self.stateful = hasattr(type(detector), "anomalous")

    def saved_state(self) -> SeriesState:
        return SeriesState(
            detector=self.detector,
            rules=self.rules.dump(),
            gate=self.gate.dump(),
            last_ts=self.last_ts,
            last_anomaly_ts=self.last_anomaly_ts,
        )


OpKind = Literal["raise", "repeat", "clear"]
AlarmKey = tuple[str, str | None, str]  # (device_id, metric, cause): one open alarm per key


@dataclass(frozen=True, slots=True)
class AlarmOp:
    """One change the job makes to the alarms table, in order per cause. A raise may name the alarm whose
    incident it joins (`joins`: that alarm's key), and whether it is flapping."""

    op: OpKind
    signal: AlarmSignal
    reason: str = ""
    joins: AlarmKey | None = None
    flapping: bool = False

    @property
    def key(self) -> AlarmKey:
        return (self.signal.device_id, self.signal.metric, self.signal.cause)


@dataclass(slots=True)
class BatchOutcome:
    readings: int = 0
    late: int = 0
    unknown: int = 0
    max_ts: float = float("-inf")
    anomalies: list[AnomalyRow] = field(default_factory=list)
    ops: list[AlarmOp] = field(default_factory=list)
    # Raises dropped because the device was inside a maintenance window.
    suppressed: int = 0


def _dt(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


class _Pending:
    """Occurrences of one cause gathered while a batch is scored, flushed as one alarm operation."""

    __slots__ = (
        "count",
        "detail",
        "event",
        "first_ts",
        "kind",
        "last_ts",
        "raises",
        "received_at",
        "score",
        "trigger_ts",
        "value",
    )

    def __init__(
        self,
        *,
        ts: float,
        since: float,
        raises: bool,
        value: float | None,
        score: float | None,
        event: RuleEvent | None = None,
    ) -> None:
        self.event = event
        self.first_ts = since
        self.last_ts = ts
        self.count = 1
        self.raises = raises
        self.value = value
        self.score = score
        self.received_at: float | None = None
        self.trigger_ts = ts
        self.kind = UNIVARIATE
        self.detail = ""


@dataclass(slots=True)
class _Incident:
    """The first alarm of an open incident and the reading time of the latest alarm that joined it."""

    leader: AlarmKey
    last_ts: float


@dataclass(slots=True)
class _Flap:
    """Recent raise times of one alarm key, and a clear held back while it flaps."""

    raises: deque[float] = field(default_factory=deque)
    held_clear: AlarmOp | None = None
    held_since: float = 0.0


class StreamScorer:
    """Detector, joint and rule state for a fleet; `score(rows, devices)` turns readings into anomalies and
    alarm ops."""

    def __init__(
        self,
        catalog: Catalog,
        config: JobConfig,
        *,
        detector_factory: Callable[[], Detector],
        joint_factory: Callable[[Sequence[str]], JointModel] | None = None,
    ) -> None:
        self.config = config
        self.catalog = catalog
        self.rules = RuleEngine(catalog, overdue_reports=config.silence_reports)
        self.series: dict[tuple[str, str], _Series] = {}
        self.joints: dict[tuple[str, tuple[str, ...]], JointModel] = {}
        self.dirty_joints: set[tuple[str, tuple[str, ...]]] = set()
        self.threshold = config.detector_threshold if config.detector_threshold is not None else detector_threshold()
        self._new_detector = detector_factory
        self._new_joint = joint_factory if config.joint else None
        self._joint_sets: dict[str, list[tuple[str, ...]]] = {}
        self._open_marks: dict[tuple[str, str], list[Alarm]] = {}
        # Reading time of each device's last new detector alarm (the policy's device gap). Not saved: after a
        # restart at most one alarm comes early.
        self._device_raised: dict[str, float] = {}
        self._incidents: dict[str, _Incident] = {}
        self._flaps: dict[AlarmKey, _Flap] = {}
        # Alarms whose raise a maintenance window held back while their condition went on.
        self._suppressed: set[AlarmKey] = set()

    # state ------------------------------------------------------------------------------------------------
    def get_series(self, device_id: str, metric: str, info: DeviceInfo, *, saved: SeriesState | None = None) -> _Series:
        """The series in memory; else a new one, from `saved` state when the caller has it."""
        key = (device_id, metric)
        found = self.series.get(key)
        if found is not None:
            return found
        rules = self.rules.series(device_id, info.type_code, metric)
        found = _Series(saved.detector if saved is not None else self._new_detector(), rules)
        if saved is not None:
            if saved.rules is not None:
                rules.load(saved.rules)
            found.last_ts = saved.last_ts
            found.last_anomaly_ts = saved.last_anomaly_ts
            if saved.gate is not None:
                found.gate.load(saved.gate)
        self._declare_normal_steps(found.detector, info.type_code, metric)
        for alarm in self._open_marks.pop(key, ()):
            self._apply_open(found, alarm)
        self.series[key] = found
        return found

    def _declare_normal_steps(self, detector: Detector, type_code: str, metric: str) -> None:
        """Tell a detector that can take it which sudden steps its metric's type calls normal (catalog)."""
        declare = getattr(detector, "declare_normal_steps", None)
        dtype = self.catalog.get(type_code)
        spec = None if dtype is None else dtype.metric(metric)
        if callable(declare) and spec is not None and spec.normal_steps is not None:
            declare(spec.normal_steps)

    def joint_sets(self, type_code: str) -> list[tuple[str, ...]]:
        """The metric sets a device of this type is watched on jointly (none without a joint factory)."""
        if self._new_joint is None:
            return []
        found = self._joint_sets.get(type_code)
        if found is None:
            from analytics.detectors.joint import joint_metrics

            dtype = self.catalog.get(type_code)
            found = [] if dtype is None else joint_metrics(dtype.metric_names, {m.name: m.group for m in dtype.metrics})
            self._joint_sets[type_code] = found
        return found

    def get_joint(self, device_id: str, metrics: tuple[str, ...], *, saved: JointModel | None = None) -> JointModel:
        key = (device_id, metrics)
        found = self.joints.get(key)
        if found is None:
            assert self._new_joint is not None, "joint detection is off"
            found = saved if saved is not None and saved.metrics == metrics else self._new_joint(metrics)
            self.joints[key] = found
        return found

    def note_open_alarm(self, alarm: Alarm, info: DeviceInfo) -> None:
        """An alarm still open from before a restart: the state that would clear it must know it is active."""
        if alarm.metric is None:
            silence = self.rules.silence(alarm.device_id, info.type_code, report_interval_s=info.report_interval_s)
            if silence is not None and alarm.kind == "silent":
                silence.active = True
            return
        key = (alarm.device_id, alarm.metric)
        series = self.series.get(key)
        if series is None:
            self._open_marks.setdefault(key, []).append(alarm)
        else:
            self._apply_open(series, alarm)

    @staticmethod
    def _apply_open(series: _Series, alarm: Alarm) -> None:
        if alarm.source == "detector":
            series.detector_open = True
            series.detector_cause = alarm.cause  # an alarm raised by an older version may carry another cause
            series.last_anomaly_ts = max(series.last_anomaly_ts, alarm.last_reading_ts.timestamp())
            return
        for state in series.rules.states:
            if state.cause == alarm.cause:
                state.load_active(alarm.first_reading_ts.timestamp())

    def seed_silence(self, device_id: str, info: DeviceInfo, last_seen: float) -> None:
        silence = self.rules.silence(device_id, info.type_code, report_interval_s=info.report_interval_s)
        if silence is not None and (silence.last_seen is None or last_seen > silence.last_seen):
            silence.last_seen = last_seen

    def pending_keys(self, keys: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Series among `keys` (device, metric) that are not in memory yet (their saved state should be loaded
        first)."""
        series = self.series
        return {key for key in keys if key not in series}

    # scoring ----------------------------------------------------------------------------------------------
    def score(
        self,
        rows: Sequence[FetchedReading],
        devices: Mapping[str, DeviceInfo],
        *,
        maintenance: MaintenanceWindows = NO_MAINTENANCE,
    ) -> BatchOutcome:
        """Score readings sorted by (device, metric, reading time). Pure: no I/O, no clock."""
        out = BatchOutcome()
        for device_id, device_rows in itertools.groupby(rows, key=itemgetter(0)):
            info = devices.get(device_id)
            if info is None:
                out.unknown += sum(1 for _ in device_rows)
                continue
            self._score_device(device_id, info, list(device_rows), out, maintenance)
        return out

    def _score_device(
        self,
        device_id: str,
        info: DeviceInfo,
        rows: list[FetchedReading],
        out: BatchOutcome,
        maintenance: MaintenanceWindows,
    ) -> None:
        threshold = self.threshold

        def emit(op: AlarmOp, ts: float) -> None:
            self._emit(out, op, info, maintenance, ts)

        groups = [(metric, list(group)) for metric, group in itertools.groupby(rows, key=itemgetter(1))]
        resting = self._resting(device_id, info, groups)
        # Per metric: the new readings in order, with their score and per-metric state.
        scored: dict[str, list[tuple[float, float, int, float, float, bool]]] = {}
        for metric, group in groups:
            series = self.get_series(device_id, metric, info)
            update = series.detector.update
            stateful = series.stateful
            detector = series.detector
            last_ts = series.last_ts
            points = []
            for _, _, ts, x, quality, received in group:
                if ts <= last_ts:
                    out.late += 1
                    continue
                last_ts = ts
                if quality == 0:
                    if stateful:
                        s = update(ts, x, resting=(metric, ts) in resting)  # type: ignore[call-arg]
                        anomalous = detector.anomalous  # type: ignore[attr-defined]
                    else:
                        s = update(ts, x)
                        anomalous = s >= threshold
                else:
                    # Physically impossible (quality 1): anomalous in itself; it would wreck a learned baseline, so
                    # the detector does not see it (rules do).
                    s, anomalous = IMPOSSIBLE_SCORE, True
                points.append((ts, x, quality, received, s, anomalous))
            if points:
                scored[metric] = points
        if not scored:
            return
        blamed = self._joint_blame(device_id, info, scored)
        pending: dict[str, _Pending] = {}
        for metric, points in scored.items():
            self._alarm_series(device_id, metric, info, points, blamed.get(metric, {}), pending, out, maintenance, emit)
        silence = self.rules.silence(device_id, info.type_code, report_interval_s=info.report_interval_s)
        if silence is not None:
            back = silence.seen(max(points[-1][0] for points in scored.values()))
            if back is not None:
                self._rule_event(back, info, pending, emit, None)
        for gathered in pending.values():
            assert gathered.event is not None, "pending rule causes are gathered from their events"
            self._emit(out, _rule_op(gathered.event, info, gathered), info, maintenance, gathered.trigger_ts)

    def _resting(
        self, device_id: str, info: DeviceInfo, groups: list[tuple[str, list[FetchedReading]]]
    ) -> set[tuple[str, float]]:
        """(metric, reading time) at which the rest of the device rests too: most of its other metrics repeat
        their previous value at once (a parked bus, a switched-off machine), so this metric is not stuck alone."""
        if len(groups) < 3:
            return set()
        repeated: dict[float, set[str]] = {}
        for metric, group in groups:
            series = self.get_series(device_id, metric, info)
            previous = getattr(getattr(series.detector, "fault", None), "prev", None)
            for _, _, ts, x, _, _ in group:
                if x == previous:
                    repeated.setdefault(ts, set()).add(metric)
                previous = x
        if all(len(metrics) < 3 for metrics in repeated.values()):
            # The usual case: no three metrics repeat at once (a rest needs at least that), so nothing rests.
            return set()
        present: dict[float, int] = {}
        for _, group in groups:
            for reading in group:
                ts = reading[2]
                present[ts] = present.get(ts, 0) + 1
        out = set()
        for ts, metrics in repeated.items():
            others = present[ts] - 1
            for metric in metrics:
                if len(metrics) - 1 >= max(2.0, REST_SHARE * others):
                    out.add((metric, ts))
        return out

    def _joint_blame(
        self, device_id: str, info: DeviceInfo, scored: Mapping[str, list[tuple[float, float, int, float, float, bool]]]
    ) -> dict[str, dict[float, str]]:
        """Feed the device's joint detectors the rows (reading times at which every metric of a set has a good
        reading) and return, per metric, the reading times at which a joint state blamed it (and its onset)."""
        blamed: dict[str, dict[float, str]] = {}
        for metrics in self.joint_sets(info.type_code):
            sets = []
            for metric in metrics:
                points = scored.get(metric)
                if points is None:
                    break
                sets.append(points)
            if len(sets) < len(metrics):
                continue
            joint = self.get_joint(device_id, metrics)
            rows = _joint_rows(sets)
            if not rows:
                continue
            self.dirty_joints.add((device_id, metrics))
            update = joint.update
            for ts, values in rows:
                if update(values, ts):
                    blamed_metric = joint.metric
                    if blamed_metric is not None:
                        blamed.setdefault(blamed_metric, {})[ts] = joint.onset
        return blamed

    def _alarm_series(  # noqa: PLR0917 - the scorer's inner loop, private
        self,
        device_id: str,
        metric: str,
        info: DeviceInfo,
        points: list[tuple[float, float, int, float, float, bool]],
        blamed: Mapping[float, str],
        pending: dict[str, _Pending],
        out: BatchOutcome,
        maintenance: MaintenanceWindows,
        emit: Callable[[AlarmOp, float], None],
    ) -> None:
        series = self.series[(device_id, metric)]
        policy = self.config.detector_policy
        quiet_s = self.config.anomaly_quiet_s
        device_raised = self._device_raised
        anomalies = out.anomalies
        gate_step = series.gate.step
        step = series.rules.step
        has_rules = bool(series.rules.states)
        detector_obj = series.detector
        gathered: _Pending | None = None
        last_anomaly = series.last_anomaly_ts
        is_open = series.detector_open
        key = (device_id, metric, series.detector_cause)
        for ts, x, quality, received, s, own in points:
            joint_onset = blamed.get(ts)
            kind, anomalous, onset = UNIVARIATE, own, ""
            if own:
                onset = "impossible" if quality else getattr(getattr(detector_obj, "fault", None), "onset", "")
            elif joint_onset is not None:
                anomalous, kind, onset = True, JOINT, joint_onset
            admitted = gate_step(policy, score=s, anomalous=anomalous, ts=ts)
            if anomalous:
                anomalies.append(AnomalyRow(ts, device_id, metric, x, s, received, kind))
                last_anomaly = ts
                onset_now = (
                    not is_open
                    and admitted
                    and device_gap_open(policy, last_raise_ts=device_raised.get(device_id), ts=ts)
                )
                if onset_now and maintenance.covers(device_id, info, ts):
                    out.suppressed += 1
                elif onset_now:
                    device_raised[device_id] = ts
                    is_open = True
                    if gathered is not None:  # a repeat gathered before an unflushed clear: flush it first
                        self._emit(out, self._detector_op(device_id, metric, info, gathered), info, maintenance, ts)
                    gathered = _Pending(ts=ts, since=ts, raises=True, value=x, score=s)
                    gathered.received_at = received
                    gathered.kind, gathered.detail = kind, onset
                elif is_open:
                    if gathered is None:
                        gathered = _Pending(ts=ts, since=ts, raises=False, value=x, score=s)
                        gathered.kind, gathered.detail = kind, onset
                    else:
                        gathered.count += 1
                        gathered.last_ts = ts
                        gathered.value = x
                        gathered.score = max(s, gathered.score or 0.0)
            elif is_open and ts - last_anomaly >= self._quiet_for(
                key, quiet_s, pending=gathered is not None and gathered.raises
            ):
                if gathered is not None:
                    self._emit(out, self._detector_op(device_id, metric, info, gathered), info, maintenance, ts)
                    gathered = None
                clear = AlarmOp(
                    "clear",
                    self._detector_signal(device_id, metric, info, ts=ts, since=last_anomaly, cause=key[2]),
                    reason="quiet",
                )
                out.ops.append(clear)  # a flapping one has waited its whole flap window (`_quiet_for`)
                is_open = False
            if has_rules:
                events = step(ts, x)
                if events:
                    for event in events:
                        self._rule_event(event, info, pending, emit, received)
        series.last_ts = points[-1][0]
        series.last_anomaly_ts = last_anomaly
        series.detector_open = is_open
        series.dirty = True
        out.readings += len(points)
        out.max_ts = max(out.max_ts, points[-1][0])
        if gathered is not None:
            self._emit(
                out, self._detector_op(device_id, metric, info, gathered), info, maintenance, gathered.trigger_ts
            )

    def _quiet_for(self, key: AlarmKey, quiet_s: float, *, pending: bool) -> float:
        """How long an alarm must be quiet before it clears: a flapping one waits a whole flap window. `pending`:
        its latest raise is gathered but not emitted yet (it counts)."""
        flap = self._flaps.get(key)
        raises = (len(flap.raises) if flap is not None else 0) + int(pending)
        if raises >= self.config.flap_count:
            return max(quiet_s, self.config.flap_window_s)
        return quiet_s

    def check_silent(
        self, now: float, devices: Mapping[str, DeviceInfo], *, maintenance: MaintenanceWindows = NO_MAINTENANCE
    ) -> list[AlarmOp]:
        """Silent devices at the job's clock `now`, and clears held back from flapping alarms that are due."""
        out = BatchOutcome()
        for event in self.rules.check_silent(now):
            info = devices.get(event.device_id)
            if info is None:
                continue
            gathered = _Pending(ts=event.ts, since=event.since, raises=True, value=None, score=None, event=event)
            self._emit(out, _rule_op(event, info, gathered), info, maintenance, event.ts)
        for flap in self._flaps.values():
            held = flap.held_clear
            if held is not None and now - flap.held_since >= self.config.flap_window_s:
                flap.held_clear = None
                out.ops.append(held)
        return out.ops

    # alarm operations -------------------------------------------------------------------------------------
    def _emit(
        self, out: BatchOutcome, op: AlarmOp, info: DeviceInfo, maintenance: MaintenanceWindows, ts: float
    ) -> None:
        """Append `op` with flood control applied: maintenance, flapping, incidents."""
        signal = op.signal
        key = op.key
        if op.op == "repeat" and key in self._suppressed:
            # Its raise was held back by maintenance: once the window is over, the condition still holding raises.
            if maintenance.covers(signal.device_id, info, ts):
                return
            op = replace(op, op="raise")
        if op.op != "raise":
            if op.op == "clear":
                self._suppressed.discard(key)
            out.ops.append(op)
            return
        if maintenance.covers(signal.device_id, info, ts):
            out.suppressed += 1
            self._suppressed.add(key)
            return
        self._suppressed.discard(key)
        cfg = self.config
        flap = self._flaps.get(key)
        if flap is None:
            flap = self._flaps[key] = _Flap()
        while flap.raises and ts - flap.raises[0] > cfg.flap_window_s:
            flap.raises.popleft()
        flap.raises.append(ts)
        flapping = len(flap.raises) >= cfg.flap_count
        if flap.held_clear is not None:
            # Raised again while its clear was held back: it never cleared, this is a repeat.
            flap.held_clear = None
            out.ops.append(AlarmOp("repeat", signal, flapping=True))
            return
        group = f"outage:{signal.province}" if signal.kind == "silent" else f"device:{signal.device_id}"
        incident = self._incidents.get(group)
        joins = None
        if incident is not None and ts - incident.last_ts <= cfg.group_window_s and incident.leader != key:
            joins = incident.leader
            incident.last_ts = ts
        else:
            self._incidents[group] = _Incident(leader=key, last_ts=ts)
        out.ops.append(AlarmOp("raise", signal, joins=joins, flapping=flapping))

    def hold_clear(self, op: AlarmOp, now: float) -> bool:
        """A flapping alarm's clear is held back (True) until it has been quiet for a flap window."""
        flap = self._flaps.get(op.key)
        if op.op != "clear" or flap is None or len(flap.raises) < self.config.flap_count:
            return False
        flap.held_clear = op
        flap.held_since = now
        return True

    def _rule_event(
        self,
        event: RuleEvent,
        info: DeviceInfo,
        pending: dict[str, _Pending],
        emit: Callable[[AlarmOp, float], None],
        received: float | None,
    ) -> None:
        key = event.cause
        gathered = pending.get(key)
        if event.state == "clear":
            if gathered is not None:
                flushed = pending.pop(key)
                emit(_rule_op(event, info, flushed), flushed.trigger_ts)
            # The alarms table finds what to clear by device, metric and cause; the rest of the signal is not read.
            ended = _Pending(ts=event.ts, since=event.since, raises=False, value=event.value, score=None)
            clear = AlarmOp("clear", _rule_signal(event, info, ended), reason="condition_ended")
            if not self.hold_clear(clear, event.ts):
                emit(clear, event.ts)
            return
        if gathered is None:
            gathered = pending[key] = _Pending(
                ts=event.ts, since=event.since, raises=event.state == "hit", value=event.value, score=None, event=event
            )
            gathered.received_at = received
        else:
            gathered.count += 1
            gathered.last_ts = event.ts
            gathered.value = event.value
            if event.state == "hit" and not gathered.raises:
                gathered.raises = True
                gathered.first_ts = event.since
                gathered.trigger_ts = event.ts
                gathered.received_at = received

    def _detector_signal(
        self, device_id: str, metric: str, info: DeviceInfo, *, ts: float, since: float, cause: str = DETECTOR_CAUSE
    ) -> AlarmSignal:
        return AlarmSignal(
            device_id=device_id,
            metric=metric,
            source="detector",
            kind=UNIVARIATE,
            cause=cause,
            province=info.province,
            sector=info.sector,
            severity=self.config.detector_severity,
            message=f"{metric}: readings unlike this device's learned normal",
            first_ts=_dt(since),
            last_ts=_dt(ts),
            occurrences=1,
            value=None,
            score=None,
            received_at=None,
        )

    def _detector_op(self, device_id: str, metric: str, info: DeviceInfo, gathered: _Pending) -> AlarmOp:
        series = self.series[(device_id, metric)]
        why = ONSET_TEXT.get(gathered.detail, "readings unlike its learned normal")
        signal = AlarmSignal(
            device_id=device_id,
            metric=metric,
            source="detector",
            kind=gathered.kind,
            cause=series.detector_cause,
            province=info.province,
            sector=info.sector,
            severity=self.config.detector_severity,
            message=f"{metric}: {why}",
            first_ts=_dt(gathered.first_ts),
            last_ts=_dt(gathered.last_ts),
            occurrences=gathered.count,
            value=gathered.value,
            score=gathered.score,
            received_at=None if gathered.received_at is None else _dt(gathered.received_at),
            trigger_ts=_dt(gathered.trigger_ts),
            details={"onset": gathered.detail, "detector": gathered.kind},
        )
        return AlarmOp("raise" if gathered.raises else "repeat", signal)


def _joint_rows(
    sets: Sequence[list[tuple[float, float, int, float, float, bool]]],
) -> list[tuple[float, list[float]]]:
    """The rows of a joint metric set, in reading-time order: the reading times at which every metric of the set
    has a good (quality 0) reading, with those values. Each metric's points are in increasing reading time."""
    # The usual case, on the job's hot path: one message carried every metric, so every good reading lines up.
    times = [p[0] for p in sets[0]]
    if all([p[0] for p in points] == times for points in sets[1:]) and all(
        p[2] == 0 for points in sets for p in points
    ):
        return [(row[0][0], [p[1] for p in row]) for row in zip(*sets, strict=True)]
    columns = [{p[0]: p[1] for p in points if p[2] == 0} for points in sets]
    common = set(columns[0]).intersection(*columns[1:])
    return [(ts, [column[ts] for column in columns]) for ts in sorted(common)]


def _rule_signal(event: RuleEvent, info: DeviceInfo, gathered: _Pending) -> AlarmSignal:
    """The alarm signal of `event`'s rule cause over the occurrences `gathered` in this batch."""
    rule = event.rule
    message = rule.message
    if rule.kind == "silent":
        silent_min = max(0.0, (event.ts - event.since) / 60)
        message = f"No report for {silent_min:.0f} min: device offline, out of coverage or without power"
    return AlarmSignal(
        device_id=event.device_id,
        metric=event.metric,
        source="rule",
        kind=rule.kind,
        cause=event.cause,
        province=info.province,
        sector=info.sector,
        severity=rule.severity,
        message=message,
        first_ts=_dt(gathered.first_ts),
        last_ts=_dt(gathered.last_ts),
        occurrences=gathered.count,
        value=gathered.value,
        score=None,
        received_at=None if gathered.received_at is None else _dt(gathered.received_at),
        trigger_ts=_dt(gathered.trigger_ts),
        details={"rule": {"kind": rule.kind, "value": rule.value, "duration_s": rule.duration_s}},
    )


def _rule_op(event: RuleEvent, info: DeviceInfo, gathered: _Pending) -> AlarmOp:
    return AlarmOp("raise" if gathered.raises else "repeat", _rule_signal(event, info, gathered))
