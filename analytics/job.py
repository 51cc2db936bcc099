"""The streaming analytics job: new readings by watermark → detector and rules per series → anomalies → alarms.

Two halves. `StreamScorer` is pure (rows and the caller's clock in, anomaly rows and alarm operations out) and
owns the state per (device, metric). `AnalyticsJob` owns the I/O: the watermark, reading batches, writing
anomalies and alarms, saving and restoring state, notifications.

Which readings are "new": the job reads by `readings.ingest_xid`, the id of the ingest transaction that wrote
the row (migration 0003), up to the snapshot's xmin. Every transaction with an id below xmin has finished, so
nothing can still commit below the watermark: a late commit, an out-of-order reading and a store-and-forward
backfill all arrive with a fresh transaction id and are read exactly once, whatever their reading time. Per
series, readings are fed in reading-time order within a batch; a reading older than what its series has
already seen is counted as late and not fed (the series' state has moved past it).

State and watermark are saved together (every `state_save_interval_s` and at stop), so a restart resumes from a
consistent pair; readings processed after the last save are processed again after a crash, which anomalies
absorb (unique per series and reading time) and alarms count as repeats.
"""

from __future__ import annotations

import io
import itertools
import logging
import pickle
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from operator import itemgetter
from typing import Final, Literal, Protocol, cast

import psycopg

from analytics.alarm_policy import EVERY_ANOMALY, DetectorAlarmGate, DetectorAlarmPolicy, device_gap_open
from analytics.alarms import (
    Alarm,
    AlarmSignal,
    clear_cause,
    escalate_due,
    open_alarms,
    raise_alarm,
    repeat_alarm,
)
from analytics.notify import AlarmEvent, Notifier
from analytics.rules import DeviceSilence, RuleEngine, RuleEvent, SeriesRules
from core.errors import StorageError
from devices.catalog import Catalog, Severity
from store.pool import Conn, Pool

_LOGGER = logging.getLogger(__name__)

DETECTOR_NAME: Final = "univariate"
STATE_FORMAT: Final = 1
XID_SPAN_START: Final = 4096
XID_SPAN_MAX: Final = 1 << 40
RETRY_DELAY_MAX_S: Final = 5.0

# A fetched reading: device, metric, reading time, value, quality, received time (both epoch seconds).
Row = tuple[str, str, float, float, int, float]


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    type_code: str
    province: str
    sector: str


@dataclass(frozen=True, slots=True)
class JobConfig:
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


class Detector(Protocol):
    def update(self, t: float, x: float) -> float: ...


# --- the production detector, used through whatever state API it offers --------------------------------------


def new_detector() -> Detector:
    from analytics.detectors.univariate import UnivariateDetector

    return UnivariateDetector()


def detector_threshold() -> float:
    """The production detector's alert threshold on its (0, 1) score."""
    from analytics.detectors.univariate import DetectorConfig

    return float(DetectorConfig().threshold)


def dump_detector(detector: Detector) -> object:
    """The production detector saves its learned state as plain values; any other detector is pickled whole."""
    state_dict = getattr(detector, "state_dict", None)
    if callable(state_dict):
        return ("state_dict", state_dict())
    return ("object", detector)


def load_detector(saved: object) -> Detector:
    if not isinstance(saved, tuple) or len(saved) != 2:
        raise TypeError("saved detector is not a (tag, payload) pair")
    tag: object = saved[0]
    payload: object = saved[1]
    if tag == "state_dict" and isinstance(payload, Mapping):
        from analytics.detectors.univariate import UnivariateDetector

        return UnivariateDetector.from_state(payload)
    if tag == "object" and callable(getattr(payload, "update", None)):
        return cast(Detector, payload)
    raise TypeError(f"unknown saved detector form {tag!r}")


# --- pure scoring -------------------------------------------------------------------------------------------


class _Series:
    __slots__ = ("detector", "detector_open", "dirty", "gate", "last_anomaly_ts", "last_ts", "rules")

    def __init__(self, detector: Detector, rules: SeriesRules) -> None:
        self.detector = detector
        self.rules = rules
        self.gate = DetectorAlarmGate()
        self.last_ts = float("-inf")
        self.last_anomaly_ts = float("-inf")
        self.detector_open = False
        self.dirty = False


OpKind = Literal["raise", "repeat", "clear"]


@dataclass(frozen=True, slots=True)
class AlarmOp:
    """One change the job makes to the alarms table, in order per cause."""

    op: OpKind
    signal: AlarmSignal
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AnomalyRow:
    ts: float
    device_id: str
    metric: str
    value: float
    score: float
    received_at: float


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
        self.catalog = catalog
        self.rules = RuleEngine(catalog)
        self.series: dict[tuple[str, str], _Series] = {}
        self.threshold = config.detector_threshold if config.detector_threshold is not None else detector_threshold()
        self._new_detector = detector_factory
        self._open_marks: dict[tuple[str, str], list[Alarm]] = {}
        # Reading time of each device's last new detector alarm (the policy's device gap). Not saved: after a
        # restart at most one alarm comes early.
        self._device_raised: dict[str, float] = {}

    # state ------------------------------------------------------------------------------------------------
    def get_series(self, device_id: str, metric: str, info: DeviceInfo, saved: bytes | None = None) -> _Series:
        key = (device_id, metric)
        found = self.series.get(key)
        if found is not None:
            return found
        rules = self.rules.series(device_id, info.type_code, metric)
        detector: Detector | None = None
        series_state: Mapping[str, object] = {}
        if saved is not None:
            try:
                blob = pickle.loads(saved)  # noqa: S301 - written only by this job into its own table
                if blob.get("format") == STATE_FORMAT:
                    detector = load_detector(blob["detector"])
                    series_state = blob
            except (pickle.UnpicklingError, AttributeError, TypeError, ValueError, KeyError, EOFError) as exc:
                _LOGGER.warning("saved state of %s/%s not usable (%s): starting afresh", device_id, metric, exc)
                detector = None
                series_state = {}
        found = _Series(detector if detector is not None else self._new_detector(), rules)
        if series_state:
            rules_state = series_state.get("rules")
            if isinstance(rules_state, Mapping):
                rules.load(rules_state)
            found.last_ts = float(series_state.get("last_ts", found.last_ts))  # type: ignore[arg-type]
            found.last_anomaly_ts = float(series_state.get("last_anomaly_ts", found.last_anomaly_ts))  # type: ignore[arg-type]
            gate_state = series_state.get("gate")
            if isinstance(gate_state, Mapping):
                found.gate.load(gate_state)
        for alarm in self._open_marks.pop(key, ()):
            self._apply_open(found, alarm)
        self.series[key] = found
        return found

    def dump_series(self, series: _Series) -> bytes:
        blob = {
            "format": STATE_FORMAT,
            "detector": dump_detector(series.detector),
            "rules": series.rules.dump(),
            "last_ts": series.last_ts,
            "last_anomaly_ts": series.last_anomaly_ts,
            "gate": series.gate.dump(),
        }
        return pickle.dumps(blob, protocol=pickle.HIGHEST_PROTOCOL)

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

    def pending_keys(self, rows: Iterable[Row]) -> set[tuple[str, str]]:
        """Series among `rows` that are not in memory yet (their saved state should be loaded first)."""
        series = self.series
        return {(r[0], r[1]) for r in rows if (r[0], r[1]) not in series}

    # scoring ----------------------------------------------------------------------------------------------
    def score(self, rows: Sequence[Row], devices: Mapping[str, DeviceInfo]) -> BatchOutcome:
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
            for cause, gathered in pending.items():
                out.ops.append(self._rule_op(device_id, metric, cause, info, gathered))
        return out

    def check_silent(self, now: float, devices: Mapping[str, DeviceInfo]) -> list[AlarmOp]:
        ops: list[AlarmOp] = []
        for event in self.rules.check_silent(now):
            info = devices.get(event.device_id)
            if info is None:
                continue
            gathered = _Pending(ts=event.ts, since=event.since, raises=True, value=None, score=None, event=event)
            ops.append(self._rule_op(event.device_id, None, event.cause, info, gathered))
        return ops

    def silences(self) -> Iterable[DeviceSilence]:
        return self.rules.silences()

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
                ops.append(self._rule_op(event.device_id, event.metric, key, info, pending.pop(key), rule_event=event))
            signal = self._rule_signal(event.device_id, event.metric, key, info, event=event)
            ops.append(AlarmOp("clear", signal, reason="condition_ended"))
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

    def _rule_op(
        self,
        device_id: str,
        metric: str | None,
        cause: str,
        info: DeviceInfo,
        gathered: _Pending,
        *,
        rule_event: RuleEvent | None = None,
    ) -> AlarmOp:
        event = rule_event or gathered.event
        assert event is not None
        signal = AlarmSignal(
            device_id=device_id,
            metric=metric,
            source="rule",
            kind=event.rule.kind,
            cause=cause,
            province=info.province,
            sector=info.sector,
            severity=event.rule.severity,
            message=event.rule.message,
            first_ts=_dt(gathered.first_ts),
            last_ts=_dt(gathered.last_ts),
            occurrences=gathered.count,
            value=gathered.value,
            score=None,
            received_at=None if gathered.received_at is None else _dt(gathered.received_at),
            trigger_ts=_dt(gathered.trigger_ts),
            details={"rule": {"kind": event.rule.kind, "value": event.rule.value, "duration_s": event.rule.duration_s}},
        )
        return AlarmOp("raise" if gathered.raises else "repeat", signal)

    def _rule_signal(
        self, device_id: str, metric: str | None, cause: str, info: DeviceInfo, *, event: RuleEvent
    ) -> AlarmSignal:
        return AlarmSignal(
            device_id=device_id,
            metric=metric,
            source="rule",
            kind=event.rule.kind,
            cause=cause,
            province=info.province,
            sector=info.sector,
            severity=event.rule.severity,
            message=event.rule.message,
            first_ts=_dt(event.since),
            last_ts=_dt(event.ts),
            occurrences=1,
            value=event.value,
            score=None,
            received_at=None,
        )

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


# --- the job: I/O around the scorer --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TickStats:
    readings: int
    late: int
    anomalies: int
    raised: int
    repeated: int
    cleared: int
    escalated: int
    watermark: int
    caught_up: bool
    fetch_s: float
    score_s: float
    write_s: float


_FETCH_SQL: Final = (
    "SELECT device_id, metric, extract(epoch FROM ts)::float8, value, quality, "
    "extract(epoch FROM received_at)::float8 FROM readings "
    "WHERE ingest_xid >= %s AND ingest_xid < %s ORDER BY device_id, metric, ts"
)


def read_watermark(conn: Conn, job: str) -> int | None:
    row = conn.execute("SELECT ingest_xid FROM job_watermarks WHERE job = %s", (job,)).fetchone()
    return None if row is None else int(row[0])


def snapshot_xmin(conn: Conn) -> int:
    """Every transaction with a smaller id has committed or aborted: readings below it can no longer appear."""
    row = conn.execute("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint").fetchone()
    assert row is not None
    return int(row[0])


def fetch_readings(conn: Conn, *, low_xid: int, high_xid: int) -> list[Row]:
    """Readings written by transactions with ids in [low_xid, high_xid), by (device, metric, reading time)."""
    # Binary results: floats and ints arrive without text parsing (about 30 % faster on large batches).
    with conn.cursor(binary=True) as cur:
        return cur.execute(_FETCH_SQL, (low_xid, high_xid)).fetchall()


def insert_anomalies(conn: Conn, rows: Sequence[AnomalyRow], *, detector: str) -> int:
    if not rows:
        return 0
    cur = conn.execute(
        "INSERT INTO anomalies (ts, device_id, metric, value, score, detector, received_at) "
        "SELECT to_timestamp(t), d, m, v, s, %s, to_timestamp(r) FROM unnest("
        "%s::float8[], %s::text[], %s::text[], %s::float8[], %s::float8[], %s::float8[]) AS u(t, d, m, v, s, r) "
        "ON CONFLICT DO NOTHING",
        (
            detector,
            [r.ts for r in rows],
            [r.device_id for r in rows],
            [r.metric for r in rows],
            [r.value for r in rows],
            [r.score for r in rows],
            [r.received_at for r in rows],
        ),
    )
    return cur.rowcount


class AnalyticsJob:
    """Owns nothing it did not open: the pool and the notifier come from the entry point."""

    def __init__(
        self,
        config: JobConfig,
        *,
        pool: Pool,
        catalog: Catalog,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
        silence_on_reading_time: bool = False,
        detector_factory: Callable[[], Detector] = new_detector,
    ) -> None:
        """`clock`: the job's now (epoch seconds) for silence, escalation and alarm times; a simulated fleet
        passes its own clock. `silence_on_reading_time`: judge silence against the newest reading time the job
        has read (capped by `clock`) instead of against `clock` alone — see `_silence_now`."""
        self.config = config
        self._pool = pool
        self._notifier = notifier
        self._clock = clock
        self._silence_on_reading_time = silence_on_reading_time
        self.scorer = StreamScorer(catalog, config, detector_factory=detector_factory)
        self._devices: dict[str, DeviceInfo] = {}
        self._missing_states: set[tuple[str, str]] = set()
        self.watermark = 0
        self._span = XID_SPAN_START
        self._restored = False
        self.last_reading_ts: float | None = None
        self.totals: dict[str, int] = dict.fromkeys(
            ("readings", "late", "anomalies", "raised", "repeated", "cleared", "escalated"), 0
        )

    # start and stop ----------------------------------------------------------------------------------------
    def restore(self) -> None:
        """Watermark, device registry, last-seen times and open alarms; series state loads lazily."""
        with self._pool.connection() as conn:
            saved = read_watermark(conn, self.config.name)
            self.watermark = saved if saved is not None else 0
            rows = conn.execute(
                "SELECT d.device_id, d.type_code, d.province, d.sector, extract(epoch FROM max(l.ts))::float8 "
                "FROM devices d LEFT JOIN device_latest l USING (device_id) WHERE d.status = 'active' "
                "GROUP BY d.device_id"
            ).fetchall()
            for device_id, type_code, province, sector, last_seen in rows:
                info = DeviceInfo(type_code, province, sector)
                self._devices[device_id] = info
                if last_seen is not None:
                    self.scorer.seed_silence(device_id, info, float(last_seen))
            for alarm in open_alarms(conn):
                owner = self._devices.get(alarm.device_id)
                if owner is not None:
                    self.scorer.note_open_alarm(alarm, owner)
        self._restored = True
        _LOGGER.info(
            "analytics job %s resumes at ingest xid %s with %d devices", self.config.name, self.watermark, len(rows)
        )

    def run(self, stop: threading.Event) -> None:
        """Tick until `stop` is set; saves state on the way out. Database trouble is logged and retried."""
        if not self._restored:
            self.restore()
        last_save = time.monotonic()
        delay = self.config.poll_interval_s
        while not stop.is_set():
            try:
                stats = self.tick()
                if time.monotonic() - last_save >= self.config.state_save_interval_s:
                    self.save()
                    last_save = time.monotonic()
            except (psycopg.Error, StorageError) as exc:
                _LOGGER.warning("analytics tick failed, retrying in %.1f s: %s", delay, exc)
                stop.wait(delay)
                delay = min(delay * 2, RETRY_DELAY_MAX_S)
                continue
            delay = self.config.poll_interval_s
            if stats.caught_up:
                stop.wait(self.config.poll_interval_s)
        try:
            self.save()
        except (psycopg.Error, StorageError) as exc:
            _LOGGER.warning("analytics state not saved at stop: %s", exc)

    # one step ---------------------------------------------------------------------------------------------
    def tick(self) -> TickStats:
        """Read the next batch, score it, write anomalies and alarms in one transaction, then notify."""
        if not self._restored:
            self.restore()
        events: list[AlarmEvent] = []
        counts = dict.fromkeys(("raised", "repeated", "cleared", "escalated"), 0)
        with self._pool.connection() as conn:
            started = time.perf_counter()
            high = snapshot_xmin(conn)
            upper = min(high, self.watermark + self._span)
            rows = fetch_readings(conn, low_xid=self.watermark, high_xid=upper) if upper > self.watermark else []
            self._adapt_span(len(rows))
            self._learn_devices(conn, rows)
            self._load_states(conn, rows)
            fetched = time.perf_counter()
            outcome = self.scorer.score(rows, self._devices)
            caught_up = upper >= high
            now = self._clock()
            if outcome.max_ts > float("-inf"):
                self.last_reading_ts = max(self.last_reading_ts or outcome.max_ts, outcome.max_ts)
            ops = outcome.ops
            silence_now = self._silence_now(now)
            if caught_up and silence_now is not None:
                # Silence is judged against the clock only once the backlog is read; before that, every device
                # would look silent.
                ops = [*ops, *self.scorer.check_silent(silence_now, self._devices)]
            scored = time.perf_counter()
            insert_anomalies(conn, outcome.anomalies, detector=DETECTOR_NAME)
            now_dt = _dt(now)
            wall = time.time()
            for op in ops:
                self._apply(conn, op, now_dt, events, counts, wall=wall)
            for alarm in escalate_due(conn, after_s=self.config.escalate_after_s, now=now_dt):
                counts["escalated"] += 1
                events.append(AlarmEvent("escalated", alarm, now_dt))
            conn.commit()
            written = time.perf_counter()
        self.watermark = max(self.watermark, upper)
        if self._notifier is not None and events:
            self._notifier.notify(events)
        stats = TickStats(
            readings=outcome.readings,
            late=outcome.late,
            anomalies=len(outcome.anomalies),
            raised=counts["raised"],
            repeated=counts["repeated"],
            cleared=counts["cleared"],
            escalated=counts["escalated"],
            watermark=self.watermark,
            caught_up=caught_up,
            fetch_s=fetched - started,
            score_s=scored - fetched,
            write_s=written - scored,
        )
        for name in self.totals:
            self.totals[name] += getattr(stats, name)
        return stats

    def _silence_now(self, now: float) -> float | None:
        """The time a device's silence is measured up to.

        Live (wall clock), `now`: a device is silent when the clock has moved on without it. For a simulated
        fleet sped up N times, the job's clock follows the simulation, but every pipeline delay (ingest batch,
        commit, this job's poll and tick) is stretched N times in simulated seconds: half a second of real
        delay is two simulated minutes at 240x, and the 5-minute silence of a fast-reporting device would fire
        on healthy devices. There silence is judged on reading time: against the newest reading the job has
        read from the fleet, which has been through the same pipeline as the silent device's would have. It
        is capped by `now` so a device whose clock runs ahead cannot make the others look silent; and a fleet
        that stops reporting as a whole raises no silence this way (the live mode still does).
        """
        if not self._silence_on_reading_time:
            return now
        if self.last_reading_ts is None:
            return None
        return min(now, self.last_reading_ts)

    def _apply(
        self, conn: Conn, op: AlarmOp, now: datetime, events: list[AlarmEvent], counts: dict[str, int], *, wall: float
    ) -> None:
        signal = op.signal
        if op.op == "raise":
            # The wall-clock moment of the raise, kept apart from the job's clock (which a simulation may scale):
            # alarm latency is measured from the reading's arrival, in wall time, to this.
            signal = replace(signal, details={**signal.details, "raised_wall_s": wall})
            alarm, created = raise_alarm(conn, signal, now=now)
            if created:
                counts["raised"] += 1
                events.append(AlarmEvent("raised", alarm, now))
            else:
                counts["repeated"] += 1
        elif op.op == "repeat":
            if repeat_alarm(conn, signal, now=now) is not None:
                counts["repeated"] += 1
        else:
            cleared = clear_cause(
                conn,
                device_id=signal.device_id,
                metric=signal.metric,
                cause=signal.cause,
                reason=op.reason,
                now=now,
            )
            if cleared is not None:
                counts["cleared"] += 1
                events.append(AlarmEvent("cleared", cleared, now))

    def _adapt_span(self, fetched: int) -> None:
        # Transaction ids are not dense in readings (other transactions use ids too): the span read per tick
        # grows while batches are small and shrinks when one overshoots the target.
        target = self.config.batch_target_rows
        if fetched > 2 * target:
            self._span = max(1, self._span // 2)
        elif fetched < target // 2:
            self._span = min(XID_SPAN_MAX, self._span * 2)

    def _learn_devices(self, conn: Conn, rows: Sequence[Row]) -> None:
        unknown = {r[0] for r in rows} - self._devices.keys()
        if not unknown:
            return
        found = conn.execute(
            "SELECT device_id, type_code, province, sector FROM devices WHERE device_id = ANY(%s)", (list(unknown),)
        ).fetchall()
        for device_id, type_code, province, sector in found:
            self._devices[device_id] = DeviceInfo(type_code, province, sector)

    def _load_states(self, conn: Conn, rows: Sequence[Row]) -> None:
        keys = self.scorer.pending_keys(rows) - self._missing_states
        if not keys:
            return
        devices, metrics = zip(*sorted(keys), strict=True)
        found = conn.execute(
            "SELECT s.device_id, s.metric, s.state FROM analytics_state s "
            "JOIN unnest(%s::text[], %s::text[]) AS k(d, m) ON s.device_id = k.d AND s.metric = k.m "
            "WHERE s.job = %s",
            (list(devices), list(metrics), self.config.name),
        ).fetchall()
        for device_id, metric, blob in found:
            info = self._devices.get(device_id)
            if info is not None:
                self.scorer.get_series(device_id, metric, info, saved=bytes(blob))
        # Series with no saved state start fresh on first sight; do not ask again.
        self._missing_states |= keys

    def save(self) -> int:
        """Save changed series state and the watermark in one transaction; returns how many series."""
        dirty = [(key, s) for key, s in self.scorer.series.items() if s.dirty]
        with self._pool.connection() as conn:
            if dirty:
                conn.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS analytics_state_stage "
                    "(device_id text, metric text, state bytea) ON COMMIT DELETE ROWS"
                )
                with (
                    conn.cursor() as cur,
                    cur.copy(
                        "COPY analytics_state_stage (device_id, metric, state) FROM STDIN (FORMAT BINARY)"
                    ) as copy,
                ):
                    copy.set_types(["text", "text", "bytea"])
                    for (device_id, metric), series in dirty:
                        copy.write_row((device_id, metric, self.scorer.dump_series(series)))
                conn.execute(
                    "INSERT INTO analytics_state (job, device_id, metric, state, updated_at) "
                    "SELECT %s, device_id, metric, state, now() FROM analytics_state_stage "
                    "ON CONFLICT (job, device_id, metric) DO UPDATE SET state = excluded.state, "
                    "updated_at = excluded.updated_at",
                    (self.config.name,),
                )
            conn.execute(
                "INSERT INTO job_watermarks (job, ingest_xid, reading_ts, updated_at) "
                "VALUES (%s, %s, to_timestamp(%s), now()) ON CONFLICT (job) DO UPDATE SET "
                "ingest_xid = excluded.ingest_xid, reading_ts = excluded.reading_ts, updated_at = now()",
                (self.config.name, self.watermark, self.last_reading_ts),
            )
            conn.commit()
        for _, series in dirty:
            series.dirty = False
        return len(dirty)


def pickle_size(blob: object) -> int:
    buffer = io.BytesIO()
    pickle.dump(blob, buffer, protocol=pickle.HIGHEST_PROTOCOL)
    return buffer.tell()
