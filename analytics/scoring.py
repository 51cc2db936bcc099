"""The analytics job's pure half: detector and rule state per (device, metric) series; readings in, anomaly rows
and alarm operations out. No database, no wall clock: the caller passes readings, devices and its own `now`."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Final, Literal

from analytics.alarm_policy import EVERY_ANOMALY, DetectorAlarmGate, DetectorAlarmPolicy, device_gap_open
from analytics.alarms import Alarm, AlarmSignal
from analytics.detector_state import Detector, SeriesState, detector_threshold
from analytics.rules import RuleEngine, RuleEvent, SeriesRules
from devices.catalog import Catalog, Severity
from store.analytics import AnomalyRow, FetchedReading

# The detector alarms' kind and cause, and the detector named on anomaly rows.
DETECTOR_NAME: Final = "univariate"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What scoring needs of a device: its type (rules) and where it is (the alarm's scope)."""

    type_code: str
    province: str
    sector: str


@dataclass(frozen=True, slots=True)
class JobConfig:
    """The analytics job's settings: its polling and saving (read by the job) and alarm behaviour (read by the
    scorer)."""

    name: str = "analytics"
    # Readings per batch the job aims for (the xid span read per tick adapts to it).
    batch_target_rows: int = 50_000
    poll_interval_s: float = 0.2
    state_save_interval_s: float = 60.0
    # A detector alarm clears after this much reading time without an anomalous score on its series.
    anomaly_quiet_s: float = 600.0
    # An alarm left active (unacknowledged) this long moves up one severity level, and again after as long.
    escalate_after_s: float = 900.0
    detector_severity: Severity = "minor"
    # None: the detector's own default threshold.
    detector_threshold: float | None = None
    # Which anomalies raise detector alarms (all anomalies are written either way). The default here raises on
    # every anomaly, as the scorer's unit tests expect; entry points pass `Settings`' policy (`job_config`).
    detector_policy: DetectorAlarmPolicy = EVERY_ANOMALY


class _Series:
    """One (device, metric) series: its detector, rules, alarm gate and how far it has read."""

    __slots__ = ("detector", "detector_open", "dirty", "gate", "last_anomaly_ts", "last_ts", "rules")

    def __init__(self, detector: Detector, rules: SeriesRules) -> None:
        self.detector = detector
        self.rules = rules
        self.gate = DetectorAlarmGate()
        self.last_ts = float("-inf")
        self.last_anomaly_ts = float("-inf")
        self.detector_open = False
        self.dirty = False

    def saved_state(self) -> SeriesState:
        return SeriesState(
            detector=self.detector,
            rules=self.rules.dump(),
            gate=self.gate.dump(),
            last_ts=self.last_ts,
            last_anomaly_ts=self.last_anomaly_ts,
        )


OpKind = Literal["raise", "repeat", "clear"]


@dataclass(frozen=True, slots=True)
class AlarmOp:
    """One change the job makes to the alarms table, in order per cause."""

    op: OpKind
    signal: AlarmSignal
    reason: str = ""


@dataclass(slots=True)
class BatchOutcome:
    readings: int = 0
    late: int = 0
    unknown: int = 0
    max_ts: float = float("-inf")
    anomalies: list[AnomalyRow] = field(default_factory=list)
    ops: list[AlarmOp] = field(default_factory=list)


def _dt(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


class _Pending:
    """Occurrences of one cause gathered while a batch is scored, flushed as one alarm operation."""

    __slots__ = ("count", "event", "first_ts", "last_ts", "raises", "received_at", "score", "trigger_ts", "value")

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


class StreamScorer:
    """Detector and rule state for a fleet; `score(rows, devices)` turns readings into anomalies and alarm ops."""

    def __init__(self, catalog: Catalog, config: JobConfig, *, detector_factory: Callable[[], Detector]) -> None:
        self.config = config
        self.rules = RuleEngine(catalog)
        self.series: dict[tuple[str, str], _Series] = {}
        self.threshold = config.detector_threshold if config.detector_threshold is not None else detector_threshold()
        self._new_detector = detector_factory
        self._open_marks: dict[tuple[str, str], list[Alarm]] = {}
        # Reading time of each device's last new detector alarm (the policy's device gap). Not saved: after a
        # restart at most one alarm comes early.
        self._device_raised: dict[str, float] = {}

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
        for alarm in self._open_marks.pop(key, ()):
            self._apply_open(found, alarm)
        self.series[key] = found
        return found

    def note_open_alarm(self, alarm: Alarm, info: DeviceInfo) -> None:
        """An alarm still open from before a restart: the state that would clear it must know it is active."""
        if alarm.metric is None:
            silence = self.rules.silence(alarm.device_id, info.type_code)
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
            series.last_anomaly_ts = max(series.last_anomaly_ts, alarm.last_reading_ts.timestamp())
            return
        for state in series.rules.states:
            if state.cause == alarm.cause:
                state.load_active(alarm.first_reading_ts.timestamp())

    def seed_silence(self, device_id: str, info: DeviceInfo, last_seen: float) -> None:
        silence = self.rules.silence(device_id, info.type_code)
        if silence is not None and (silence.last_seen is None or last_seen > silence.last_seen):
            silence.last_seen = last_seen

    def pending_keys(self, rows: Iterable[FetchedReading]) -> set[tuple[str, str]]:
        """Series among `rows` that are not in memory yet (their saved state should be loaded first)."""
        series = self.series
        return {(r[0], r[1]) for r in rows if (r[0], r[1]) not in series}

    # scoring ----------------------------------------------------------------------------------------------
    def score(self, rows: Sequence[FetchedReading], devices: Mapping[str, DeviceInfo]) -> BatchOutcome:
        """Score readings sorted by (device, metric, reading time). Pure: no I/O, no clock."""
        out = BatchOutcome()
        threshold = self.threshold
        quiet_s = self.config.anomaly_quiet_s
        policy = self.config.detector_policy
        device_raised = self._device_raised
        anomalies = out.anomalies
        for (device_id, metric), group in itertools.groupby(rows, key=itemgetter(0, 1)):
            info = devices.get(device_id)
            if info is None:
                out.unknown += sum(1 for _ in group)
                continue
            series = self.get_series(device_id, metric, info)
            update = series.detector.update
            gate_step = series.gate.step
            step = series.rules.step
            has_rules = bool(series.rules.states)
            pending: dict[str, _Pending] = {}
            detector: _Pending | None = None
            last_ts = series.last_ts
            last_anomaly = series.last_anomaly_ts
            is_open = series.detector_open
            count = 0
            for _, _, ts, x, quality, received in group:
                if ts <= last_ts:
                    out.late += 1
                    continue
                last_ts = ts
                count += 1
                if quality == 0:
                    # Physically impossible values (quality 1) would wreck a learned baseline; rules still see them.
                    s = update(ts, x)
                    anomalous = s >= threshold
                    admitted = gate_step(policy, score=s, anomalous=anomalous)
                    if anomalous:
                        anomalies.append(AnomalyRow(ts, device_id, metric, x, s, received))
                        last_anomaly = ts
                        # A new alarm needs the policy's consent (and the device's gap); an open one counts every
                        # anomaly as a repeat.
                        if (
                            not is_open
                            and admitted
                            and device_gap_open(policy, last_raise_ts=device_raised.get(device_id), ts=ts)
                        ):
                            device_raised[device_id] = ts
                            is_open = True
                        if is_open:
                            if detector is None:
                                detector = _Pending(ts=ts, since=ts, raises=True, value=x, score=s)
                                detector.received_at = received
                            else:
                                detector.count += 1
                                detector.last_ts = ts
                                detector.value = x
                                detector.score = max(s, detector.score or 0.0)
                    elif is_open and ts - last_anomaly >= quiet_s:
                        if detector is not None:
                            out.ops.append(self._detector_op("raise", device_id, metric, info, detector))
                            detector = None
                        out.ops.append(
                            AlarmOp(
                                "clear",
                                self._detector_signal(device_id, metric, info, ts=ts, since=last_anomaly),
                                reason="quiet",
                            )
                        )
                        is_open = False
                if has_rules:
                    events = step(ts, x)
                    if events:
                        for event in events:
                            self._rule_event(event, info, pending, out.ops, received)
            series.last_ts = last_ts
            series.last_anomaly_ts = last_anomaly
            series.detector_open = is_open
            if count:
                series.dirty = True
                out.readings += count
                out.max_ts = max(out.max_ts, last_ts)
                silence = self.rules.silence(device_id, info.type_code)
                if silence is not None:
                    back = silence.seen(last_ts)
                    if back is not None:
                        self._rule_event(back, info, pending, out.ops, None)
            if detector is not None:
                out.ops.append(self._detector_op("raise", device_id, metric, info, detector))
            for gathered in pending.values():
                assert gathered.event is not None, "pending rule causes are gathered from their events"
                out.ops.append(_rule_op(gathered.event, info, gathered))
        return out

    def check_silent(self, now: float, devices: Mapping[str, DeviceInfo]) -> list[AlarmOp]:
        ops: list[AlarmOp] = []
        for event in self.rules.check_silent(now):
            info = devices.get(event.device_id)
            if info is None:
                continue
            gathered = _Pending(ts=event.ts, since=event.since, raises=True, value=None, score=None, event=event)
            ops.append(_rule_op(event, info, gathered))
        return ops

    # alarm operations -------------------------------------------------------------------------------------
    def _rule_event(
        self,
        event: RuleEvent,
        info: DeviceInfo,
        pending: dict[str, _Pending],
        ops: list[AlarmOp],
        received: float | None,
    ) -> None:
        key = event.cause
        gathered = pending.get(key)
        if event.state == "clear":
            if gathered is not None:
                ops.append(_rule_op(event, info, pending.pop(key)))
            # The alarms table finds what to clear by device, metric and cause; the rest of the signal is not read.
            ended = _Pending(ts=event.ts, since=event.since, raises=False, value=event.value, score=None)
            ops.append(AlarmOp("clear", _rule_signal(event, info, ended), reason="condition_ended"))
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
        self, device_id: str, metric: str, info: DeviceInfo, *, ts: float, since: float
    ) -> AlarmSignal:
        return AlarmSignal(
            device_id=device_id,
            metric=metric,
            source="detector",
            kind=DETECTOR_NAME,
            cause=DETECTOR_NAME,
            province=info.province,
            sector=info.sector,
            severity=self.config.detector_severity,
            message=f"{metric}: readings unlike this device's learned baseline",
            first_ts=_dt(since),
            last_ts=_dt(ts),
            occurrences=1,
            value=None,
            score=None,
            received_at=None,
        )

    def _detector_op(self, op: OpKind, device_id: str, metric: str, info: DeviceInfo, gathered: _Pending) -> AlarmOp:
        signal = AlarmSignal(
            device_id=device_id,
            metric=metric,
            source="detector",
            kind=DETECTOR_NAME,
            cause=DETECTOR_NAME,
            province=info.province,
            sector=info.sector,
            severity=self.config.detector_severity,
            message=f"{metric}: readings unlike this device's learned baseline (score {gathered.score or 0:.3f})",
            first_ts=_dt(gathered.first_ts),
            last_ts=_dt(gathered.last_ts),
            occurrences=gathered.count,
            value=gathered.value,
            score=gathered.score,
            received_at=None if gathered.received_at is None else _dt(gathered.received_at),
            trigger_ts=_dt(gathered.trigger_ts),
            details={"threshold": self.threshold},
        )
        return AlarmOp(op, signal)


def _rule_signal(event: RuleEvent, info: DeviceInfo, gathered: _Pending) -> AlarmSignal:
    """The alarm signal of `event`'s rule cause over the occurrences `gathered` in this batch."""
    rule = event.rule
    return AlarmSignal(
        device_id=event.device_id,
        metric=event.metric,
        source="rule",
        kind=rule.kind,
        cause=event.cause,
        province=info.province,
        sector=info.sector,
        severity=rule.severity,
        message=rule.message,
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
