"""The streaming analytics job's loop: new readings by watermark → `StreamScorer` → anomalies and alarms in the
database → notifications; detector, joint and rule state saved and restored with the watermark.

The scoring itself is pure (`analytics.scoring`); this module owns the I/O around it, through `store.analytics`,
`store.maintenance` and `analytics.alarms`: the watermark, reading batches, the maintenance windows the scorer
suppresses with, writing anomalies and alarms (linking an alarm to its incident, marking flapping ones),
reminding silent devices' alarms until acknowledged, saving and restoring state, and notifications: only an
incident's first alarm is notified, within the per-device, per-type and per-province limits
(`analytics.flood`).

Which readings are "new": the job reads by `readings.ingest_xid`, the id of the ingest transaction that wrote
the row (migration 0003), up to the snapshot's xmin. Every transaction with an id below xmin has finished, so
nothing can still commit below the watermark: a late commit, an out-of-order reading and a store-and-forward
backfill all arrive with a fresh transaction id and are read exactly once, whatever their reading time. Per
series, readings are fed in reading-time order within a batch; a reading older than what its series has
already seen is counted as late and not fed (the series' state has moved past it).

State and watermark are saved together (every `state_save_interval_s` and at stop), so a restart resumes from a
consistent pair; readings processed after the last save are processed again after a crash, which anomalies
absorb (unique per series and reading time) and alarms count as repeats. The pair is dumped between ticks and
written on a thread of its own while the ticks go on (`run`).

Lag: a reading waits for the tick after its commit and then for that tick to end. Ticks follow one another
without a wait while the job is behind, and a batch stays near `batch_target_rows` (the xid span read adapts to
the readings per xid), so a backlog is scored and committed in steps rather than held back in one long tick.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from operator import itemgetter
from typing import Final

import psycopg

from analytics.alarms import (
    clear_cause,
    escalate_due,
    link_incident,
    mark_flapping,
    open_alarms,
    raise_alarm,
    remind_due,
    repeat_alarm,
)
from analytics.detector_state import (
    JOINT_KEY_PREFIX,
    Detector,
    SavedStateError,
    dump_joint_state,
    dump_series_state,
    joint_key,
    load_joint_state,
    load_series_state,
    new_detector,
    new_joint_detector,
)
from analytics.flood import NotificationLimiter
from analytics.maintenance import MaintenanceIndex, Window
from analytics.notify import AlarmEvent, Notifier
from analytics.scoring import AlarmOp, DeviceInfo, JobConfig, JointModel, StreamScorer
from core.errors import StorageError
from devices.catalog import Catalog
from store.analytics import (
    RegisteredDevice,
    current_xid,
    fetch_active_devices,
    fetch_devices,
    fetch_readings,
    fetch_series_states,
    insert_anomalies,
    read_watermark,
    save_series_states,
    save_watermark,
    snapshot_xmin,
)
from store.maintenance import windows_ending_after
from store.pool import Conn, Pool

_LOGGER = logging.getLogger(__name__)

XID_SPAN_START: Final = 4096
XID_SPAN_MAX: Final = 1 << 40
RETRY_DELAY_MAX_S: Final = 5.0
# Maintenance windows are read again this often (wall time).
MAINTENANCE_REFRESH_S: Final = 30.0
# Alarm kinds that are reminded while active and unacknowledged.
REMINDED_KINDS: Final = ("silent",)
# A fetched reading's series: (device_id, metric).
_SERIES_KEY: Final = itemgetter(0, 1)


def device_info(device: RegisteredDevice) -> DeviceInfo:
    return DeviceInfo(device.type_code, device.province, device.sector, device.report_interval_s, device.site)


@dataclass(frozen=True, slots=True)
class _StateSnapshot:
    """Dumped series and joint states (device, key, bytes) and the watermark and reading time they belong to."""

    states: list[tuple[str, str, bytes]]
    series_keys: list[tuple[str, str]]
    joint_keys: list[tuple[str, tuple[str, ...]]]
    watermark: int
    reading_ts: float | None


@dataclass(frozen=True, slots=True)
class TickStats:
    readings: int
    late: int
    anomalies: int
    raised: int
    repeated: int
    cleared: int
    escalated: int
    reminded: int
    suppressed: int
    held_back: int
    watermark: int
    caught_up: bool
    # Wall seconds of the tick's phases, and the job thread's CPU seconds in each (less than wall when the
    # thread waits for the database or for a core).
    fetch_s: float
    score_s: float
    write_s: float
    fetch_cpu_s: float = 0.0
    score_cpu_s: float = 0.0
    write_cpu_s: float = 0.0
    # The whole tick in wall seconds, notifications included.
    tick_s: float = 0.0


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
        joint_factory: Callable[[Sequence[str]], JointModel] = new_joint_detector,
        limiter: NotificationLimiter | None = None,
    ) -> None:
        """`clock`: the job's now (epoch seconds) for silence, escalation and alarm times; a simulated fleet
        passes its own clock. `silence_on_reading_time`: judge silence against the newest reading time the job
        has read (capped by `clock`) instead of against `clock` alone — see `_silence_now`."""
        self.config = config
        self._pool = pool
        self._notifier = notifier
        self._clock = clock
        self._silence_on_reading_time = silence_on_reading_time
        self.scorer = StreamScorer(catalog, config, detector_factory=detector_factory, joint_factory=joint_factory)
        self._limiter = limiter if limiter is not None else NotificationLimiter()
        self._devices: dict[str, DeviceInfo] = {}
        self._missing_states: set[tuple[str, str]] = set()
        self._maintenance = MaintenanceIndex()
        self._maintenance_read_at = float("-inf")
        self.watermark = 0
        self._span = XID_SPAN_START
        # State saves so far, and the wall seconds the job's thread spent on them (dumping; writing too, unless
        # `run` writes in the background).
        self.saves = 0
        self.save_s = 0.0
        # The transaction of a state save running beside the ticks: it writes no readings, so ticks read past it.
        self._saving_xid: int | None = None
        self._restored = False
        self.last_reading_ts: float | None = None
        self.totals: dict[str, int] = dict.fromkeys(
            (
                "readings",
                "late",
                "anomalies",
                "raised",
                "repeated",
                "cleared",
                "escalated",
                "reminded",
                "suppressed",
                "held_back",
            ),
            0,
        )

    # start and stop ----------------------------------------------------------------------------------------
    def restore(self) -> None:
        """Watermark, device registry, last-seen times and open alarms; series state loads lazily."""
        with self._pool.connection() as conn:
            saved = read_watermark(conn, self.config.name)
            self.watermark = saved if saved is not None else 0
            active = fetch_active_devices(conn)
            for device, last_seen in active:
                info = device_info(device)
                self._devices[device.device_id] = info
                if last_seen is not None:
                    self.scorer.seed_silence(device.device_id, info, last_seen)
            for alarm in open_alarms(conn):
                owner = self._devices.get(alarm.device_id)
                if owner is not None:
                    self.scorer.note_open_alarm(alarm, owner)
        self._restored = True
        _LOGGER.info(
            "analytics job %s resumes at ingest xid %s with %d devices", self.config.name, self.watermark, len(active)
        )

    def run(self, stop: threading.Event, *, on_tick: Callable[[TickStats], None] | None = None) -> None:
        """Tick until `stop` is set; saves state on the way out. Database trouble is logged and retried.

        Ticks start at most every `poll_interval_s` while the job is caught up, and back to back while it is not
        or while a tick takes longer than that: a long tick is not followed by a poll's wait on top.
        `on_tick` sees each tick's figures (the lag benchmark).

        Periodic saves are dumped between ticks but written on a thread of their own (on a second connection of
        the pool) while the ticks go on: writing every series' state takes long enough to hold scoring up
        otherwise. One write at a time, so saves land in order; the last one, at stop, is written here."""
        if not self._restored:
            self.restore()
        last_save = time.monotonic()
        delay = self.config.poll_interval_s
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.config.name}-save") as saver:
            writing: tuple[Future[None], _StateSnapshot] | None = None
            while not stop.is_set():
                began = time.monotonic()
                try:
                    stats = self.tick()
                    if on_tick is not None:
                        on_tick(stats)
                    if writing is not None and writing[0].done():
                        self._settle_write(*writing)
                        writing = None
                    if writing is None and time.monotonic() - last_save >= self.config.state_save_interval_s:
                        snapshot = self._snapshot_state()
                        writing = (saver.submit(self._write_state, snapshot), snapshot)
                        last_save = time.monotonic()
                except (psycopg.Error, StorageError) as exc:
                    _LOGGER.warning("analytics tick failed, retrying in %.1f s: %s", delay, exc)
                    stop.wait(delay)
                    delay = min(delay * 2, RETRY_DELAY_MAX_S)
                    continue
                delay = self.config.poll_interval_s
                if stats.caught_up:
                    stop.wait(max(0.0, self.config.poll_interval_s - (time.monotonic() - began)))
            if writing is not None:
                wait_futures([writing[0]])
                self._settle_write(*writing)
        try:
            self.save()
        except (psycopg.Error, StorageError) as exc:
            _LOGGER.warning("analytics state not saved at stop: %s", exc)

    def _settle_write(self, future: Future[None], snapshot: _StateSnapshot) -> None:
        """A finished background write: if it failed, its state goes with the next save."""
        exc = future.exception()
        if exc is None:
            return
        self._mark_unsaved(snapshot)
        if not isinstance(exc, (psycopg.Error, StorageError)):
            raise exc
        _LOGGER.warning("analytics state not saved, trying again with the next save: %s", exc)

    # one step ---------------------------------------------------------------------------------------------
    def tick(self) -> TickStats:
        """Read the next batch, score it, write anomalies and alarms in one transaction, then notify."""
        if not self._restored:
            self.restore()
        tick_began = time.perf_counter()
        events: list[AlarmEvent] = []
        counts = dict.fromkeys(("raised", "repeated", "cleared", "escalated", "reminded"), 0)
        with self._pool.connection() as conn:
            started = time.perf_counter()
            started_cpu = time.thread_time()
            high = snapshot_xmin(conn, ignoring=self._saving_xid)
            upper = min(high, self.watermark + self._span)
            rows = fetch_readings(conn, low_xid=self.watermark, high_xid=upper) if upper > self.watermark else []
            self._adapt_span(len(rows), span=upper - self.watermark)
            # The batch's series, one key per run of rows (C-level grouping; rows come sorted by series), and
            # its devices: per-row Python work here was a tenth of the tick's fetch phase.
            series_keys = {key for key, _ in itertools.groupby(rows, key=_SERIES_KEY)}
            device_ids = {device_id for device_id, _ in series_keys}
            self._learn_devices(conn, device_ids)
            self._load_states(conn, series_keys, device_ids)
            now = self._clock()
            self._refresh_maintenance(conn, now)
            fetched = time.perf_counter()
            fetched_cpu = time.thread_time()
            outcome = self.scorer.score(rows, self._devices, maintenance=self._maintenance)
            caught_up = upper >= high
            if outcome.max_ts > float("-inf"):
                self.last_reading_ts = max(self.last_reading_ts or outcome.max_ts, outcome.max_ts)
            ops = outcome.ops
            silence_now = self._silence_now(now)
            if caught_up and silence_now is not None:
                # Silence is judged against the clock only once the backlog is read; before that, every device
                # would look silent.
                ops = [*ops, *self.scorer.check_silent(silence_now, self._devices, maintenance=self._maintenance)]
            scored = time.perf_counter()
            scored_cpu = time.thread_time()
            insert_anomalies(conn, outcome.anomalies)
            now_dt = datetime.fromtimestamp(now, UTC)
            wall = time.time()
            for op in ops:
                self._apply(conn, op, now_dt, events, counts, wall=wall)
            for alarm in escalate_due(conn, after_s=self.config.escalate_after_s, now=now_dt):
                counts["escalated"] += 1
                events.append(AlarmEvent("escalated", alarm, now_dt))
            if caught_up:
                for alarm in remind_due(conn, kinds=REMINDED_KINDS, every_s=self.config.silence_reminder_s, now=now_dt):
                    counts["reminded"] += 1
                    events.append(AlarmEvent("reminder", alarm, now_dt))
            conn.commit()
            written = time.perf_counter()
            written_cpu = time.thread_time()
        self.watermark = max(self.watermark, upper)
        held_back = self._limiter.held_back
        if events:
            events = self._limiter.admit(events, now=now, where=self._where)
        held_back = self._limiter.held_back - held_back
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
            reminded=counts["reminded"],
            suppressed=outcome.suppressed,
            held_back=held_back,
            watermark=self.watermark,
            caught_up=caught_up,
            fetch_s=fetched - started,
            score_s=scored - fetched,
            write_s=written - scored,
            fetch_cpu_s=fetched_cpu - started_cpu,
            score_cpu_s=scored_cpu - fetched_cpu,
            write_cpu_s=written_cpu - scored_cpu,
            tick_s=time.perf_counter() - tick_began,
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

    def _where(self, event: AlarmEvent) -> tuple[str, str, str]:
        """(device, type, province) of an event, for the notification limits."""
        alarm = event.alarm
        info = self._devices.get(alarm.device_id)
        return alarm.device_id, info.type_code if info is not None else "?", alarm.province

    def _refresh_maintenance(self, conn: Conn, now: float) -> None:
        """The maintenance windows that still matter, read again every `MAINTENANCE_REFRESH_S` of wall time.
        Windows are judged on reading time; a day back covers readings that arrive late."""
        wall = time.monotonic()
        if wall - self._maintenance_read_at < MAINTENANCE_REFRESH_S:
            return
        self._maintenance_read_at = wall
        since = datetime.fromtimestamp(min(now, self.last_reading_ts or now) - 86_400.0, UTC)
        self._maintenance = MaintenanceIndex(
            Window(
                start=w.starts_at.timestamp(),
                end=w.ends_at.timestamp(),
                device_id=w.device_id,
                site=w.site,
                province=w.province,
                sector=w.sector,
            )
            for w in windows_ending_after(conn, since)
        )

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
                incident = link_incident(conn, alarm.id, leader=op.joins) if op.joins is not None else None
                if op.flapping:
                    mark_flapping(conn, device_id=signal.device_id, metric=signal.metric, cause=signal.cause)
                if incident is None:
                    # Only an incident's first alarm is notified; the others are linked to it.
                    events.append(AlarmEvent("raised", alarm, now))
            else:
                counts["repeated"] += 1
        elif op.op == "repeat":
            if op.flapping:
                mark_flapping(conn, device_id=signal.device_id, metric=signal.metric, cause=signal.cause)
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

    def _adapt_span(self, fetched: int, *, span: int) -> None:
        """The xid span of the next read, from the density of readings per xid in the span just read.

        Transaction ids are not dense in readings (other transactions use ids too). A batch near the target
        keeps a backlog (after a stall, a restart) from being read as one huge batch: that would hold every
        reading in it back until the whole batch is scored and committed; the next batch already waits. While
        batches are small the span may grow, at most doubling per tick."""
        target = self.config.batch_target_rows
        if fetched <= 0 or span <= 0:
            self._span = min(XID_SPAN_MAX, self._span * 2)
            return
        wanted = max(1, span * target // fetched)
        self._span = min(XID_SPAN_MAX, wanted, 2 * max(self._span, span))

    def _learn_devices(self, conn: Conn, device_ids: set[str]) -> None:
        unknown = device_ids - self._devices.keys()
        if not unknown:
            return
        for device in fetch_devices(conn, unknown):
            self._devices[device.device_id] = device_info(device)

    def _load_states(self, conn: Conn, series_keys: set[tuple[str, str]], device_ids: set[str]) -> None:
        keys = self.scorer.pending_keys(series_keys)
        # The joint detectors of devices not seen since the start, saved under a pseudo-metric per metric set.
        for device_id in device_ids:
            info = self._devices.get(device_id)
            if info is None:
                continue
            for metrics in self.scorer.joint_sets(info.type_code):
                if (device_id, metrics) not in self.scorer.joints:
                    keys.add((device_id, joint_key(metrics)))
        keys -= self._missing_states
        if not keys:
            return
        for device_id, metric, blob in fetch_series_states(conn, job=self.config.name, keys=keys):
            info = self._devices.get(device_id)
            if info is None:
                continue
            if metric.startswith(JOINT_KEY_PREFIX):
                self._load_joint(device_id, metric, blob)
                continue
            try:
                saved = load_series_state(blob)
            except SavedStateError as exc:
                _LOGGER.warning("saved state of %s/%s not usable (%s): starting afresh", device_id, metric, exc)
                saved = None
            self.scorer.get_series(device_id, metric, info, saved=saved)
        # Series with no saved state start fresh on first sight; do not ask again.
        self._missing_states |= keys

    def _load_joint(self, device_id: str, key: str, blob: bytes) -> None:
        try:
            joint = load_joint_state(blob)
        except SavedStateError as exc:
            _LOGGER.warning("saved joint state of %s (%s) not usable (%s): starting afresh", device_id, key, exc)
            return
        if joint is not None and joint_key(joint.metrics) == key:
            self.scorer.get_joint(device_id, joint.metrics, saved=joint)

    def save(self) -> int:
        """Save changed series and joint state and the watermark in one transaction; returns how many."""
        snapshot = self._snapshot_state()
        began = time.perf_counter()
        try:
            self._write_state(snapshot)
        except BaseException:
            self._mark_unsaved(snapshot)
            raise
        finally:
            self.save_s += time.perf_counter() - began
        return len(snapshot.states)

    def _snapshot_state(self) -> _StateSnapshot:
        """The changed state, dumped, with the watermark it belongs to; marked saved (`_mark_unsaved` undoes that
        if the write fails). On the job's thread, between ticks: dumping reads what scoring changes."""
        began = time.perf_counter()
        scorer = self.scorer
        dirty = [(key, s) for key, s in scorer.series.items() if s.dirty]
        joints = [(key, scorer.joints[key]) for key in scorer.dirty_joints if key in scorer.joints]
        states = [
            *((device_id, metric, dump_series_state(series.saved_state())) for (device_id, metric), series in dirty),
            *((device_id, joint_key(metrics), dump_joint_state(joint)) for (device_id, metrics), joint in joints),
        ]
        for _, series in dirty:
            series.dirty = False
        scorer.dirty_joints.clear()
        self.save_s += time.perf_counter() - began
        return _StateSnapshot(
            states=states,
            series_keys=[key for key, _ in dirty],
            joint_keys=[key for key, _ in joints],
            watermark=self.watermark,
            reading_ts=self.last_reading_ts,
        )

    def _write_state(self, snapshot: _StateSnapshot) -> None:
        """Write a snapshot in one transaction of its own; safe on another thread than the job's (it reads only
        the snapshot). While it runs, the job's ticks read past its transaction (`_saving_xid`)."""
        with self._pool.connection() as conn:
            self._saving_xid = current_xid(conn)
            try:
                if snapshot.states:
                    save_series_states(conn, job=self.config.name, states=snapshot.states)
                save_watermark(
                    conn, job=self.config.name, ingest_xid=snapshot.watermark, reading_ts=snapshot.reading_ts
                )
                conn.commit()
            finally:
                self._saving_xid = None
        self.saves += 1

    def _mark_unsaved(self, snapshot: _StateSnapshot) -> None:
        """A snapshot whose write failed: its series and joints are saved with the next one (on the job's
        thread). A later save must not carry a newer watermark without them."""
        for key in snapshot.series_keys:
            series = self.scorer.series.get(key)
            if series is not None:
                series.dirty = True
        self.scorer.dirty_joints.update(key for key in snapshot.joint_keys if key in self.scorer.joints)
