"""`ioc bench detection`: a simulated fleet with injected faults against a private center, scored against the
simulator's fault labels: per fault kind, recall and precision on incidents (one label is one incident),
detection delay (seconds and report intervals) and point-wise F1 of the anomalous state; alarm latency from
arrival.

In a fresh runtime folder it starts embedded PostgreSQL and Mosquitto (with device credentials), ingest workers,
the analytics job and the fleet; the scoring is `analytics.e2e`. Devices report at their types' own intervals,
faults match the field (`bench.field_faults`) and start only after `warmup_hours` (the detectors' learning
day: a device in the field runs for a while before it fails); the scored window is the `hours` after it. The
fleet runs on a scaled clock that starts `warmup_hours + hours` in the past, so it ends about now (ingest
refuses readings from the future); the job's clock is the same scaled clock, and silence is judged on reading
time (`AnalyticsJob._silence_now`). Rule alarms that the same fleet raises without faults (its fault-free twin,
replayed in-process) are the physics crossing a real threshold: they are counted apart, not as false alarms.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, LiteralString

from analytics.alarm_policy import DEFAULT_POLICY, DetectorAlarmPolicy
from analytics.e2e import DEFAULT_TOLERANCE_S, score_detections
from bench.field_faults import field_fault_spec
from core.lifecycle import running_in_thread

if TYPE_CHECKING:
    from rich.console import Group

    from analytics.job import AnalyticsJob
    from core.settings import Settings
    from devices.catalog import Catalog
    from firmware_sim.firmware import SimDevice
    from store.pool import Conn

_LOGGER = logging.getLogger(__name__)

DRAIN_TIMEOUT_S: Final = 120.0
READY_TIMEOUT_S: Final = 30.0

JobClock = Literal["simulation", "wall"]


@dataclass(frozen=True, slots=True)
class FleetRun:
    """One evaluation run: the fleet, its faults and the alarm policy under test."""

    devices: int = 60
    hours: float = 24.0
    warmup_hours: float = 24.0
    speed: float = 600.0
    # None: each type's own report interval.
    interval_s: float | None = None
    # None: faults that match the field (`bench.field_faults`); else a spec as for `ioc simulate --faults`.
    faults: str | None = None
    seed: int = 1
    policy: DetectorAlarmPolicy = DEFAULT_POLICY
    # "wall" reproduces the job before it followed the simulation's clock (for comparison only).
    job_clock: JobClock = "simulation"
    tolerance_s: float = DEFAULT_TOLERANCE_S
    poll_interval_s: float = 0.1


@dataclass(slots=True)
class RunProgress:
    """What the run is doing, for a progress display: phase and fraction of simulated time done."""

    phase: str = "starting"
    done: float = 0.0
    notes: dict[str, object] = field(default_factory=dict)


def _provision(database_url: str, devices: list[SimDevice], *, installed_s_ago: float) -> list[SimDevice]:
    """Register the fleet and give each device a secret (the broker only lets registered devices in). The fleet
    was installed `installed_s_ago` (before the simulated period begins): ingest refuses readings from before a
    device existed."""
    from devices.catalog import load_catalog
    from devices.provisioning import FleetDevice, provision_fleet
    from store.pool import connect

    with connect(database_url) as conn:
        secrets = provision_fleet(
            conn,
            [FleetDevice(d.device_id, d.type_code, d.province) for d in devices],
            catalog=load_catalog(),
            actor="ioc bench detection",
        )
        conn.execute(
            "UPDATE devices SET created_at = created_at - make_interval(secs => %s) WHERE device_id = ANY(%s)",
            (installed_s_ago, [d.device_id for d in devices]),
        )
        conn.commit()
    return [dataclasses.replace(d, password=secrets[d.device_id]) for d in devices]


def _scalar(database_url: str, query: LiteralString) -> int:
    from store.pool import connect

    with connect(database_url) as conn:
        row = conn.execute(query).fetchone()
    return 0 if row is None or row[0] is None else int(row[0])


def _wait_drained(database_url: str, job: AnalyticsJob, *, expected_rows: int, progress: RunProgress) -> int:
    """Wait until ingest has stored what the fleet sent and the job has read all of it; returns stored rows."""
    progress.phase = "draining"
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    stored, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now_stored = _scalar(database_url, "SELECT count(*) FROM readings")
        if now_stored != stored:
            stored, stable_since = now_stored, time.monotonic()
        read = job.totals["readings"] + job.totals["late"]
        if (stored >= expected_rows or time.monotonic() - stable_since > 5.0) and read >= stored:
            break
        time.sleep(0.2)
    else:
        _LOGGER.warning(
            "e2e: gave up waiting after %.0f s (%d of %d rows stored)", DRAIN_TIMEOUT_S, stored, expected_rows
        )
    # One more caught-up tick or two, so the silence check sees the end of the data.
    time.sleep(3 * job.config.poll_interval_s + 0.5)
    return stored


def run_fleet_evaluation(
    run: FleetRun,
    *,
    settings: Settings,
    root: Path,
    labels_out: Path | None = None,
    progress: RunProgress | None = None,
    keep: bool = False,
) -> dict[str, object]:
    """Run everything in `root` (wiped first, removed after unless `keep`) and return the report."""
    from analytics.job import AnalyticsJob
    from analytics.notify import Notifier
    from analytics.runner import job_config, notification_limiter
    from devices.access import sync_broker_access
    from devices.catalog import load_catalog
    from devices.schema import migrate_database
    from embedded.runtime import EmbeddedMosquitto, EmbeddedPostgres
    from firmware_sim.clock import ScaledClock
    from firmware_sim.faults import parse_fault_spec
    from firmware_sim.fleet import FleetConfig, FleetStats, run_fleet
    from firmware_sim.roster import build_devices
    from ingest.supervisor import IngestSupervisor, ingest_config
    from protocol.broker_url import parse_broker_url
    from store.pool import connect, open_pool

    progress = progress or RunProgress()
    catalog = load_catalog()
    duration_s = (run.warmup_hours + run.hours) * 3600.0
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    labels_path = root / "labels.jsonl"
    started = time.monotonic()
    try:
        with EmbeddedPostgres(root / "postgres") as pg, EmbeddedMosquitto(root / "mosquitto", auth=True) as mq:
            progress.phase = "provisioning"
            migrate_database(pg.url)
            devices = _provision(pg.url, build_devices(run.devices, prefix="e2e"), installed_s_ago=duration_s + 3600.0)
            with connect(pg.url) as conn:
                sync_broker_access(conn, mq.access_target())
            with IngestSupervisor(
                ingest_config(settings, database_url=pg.url, mqtt_url=mq.url),
                workers=settings.ingest_workers,
                metrics_dir=root / "metrics",
                log_level="WARNING",
            ) as supervisor:
                if not supervisor.wait_ready(READY_TIMEOUT_S):
                    _LOGGER.warning("e2e: ingest workers not subscribed after %.0f s", READY_TIMEOUT_S)
                # The simulation starts `warmup_hours + hours` ago and catches up with the present as it ends.
                clock = ScaledClock(time.time() - duration_s, speed=run.speed)
                measured_from = clock.start + run.warmup_hours * 3600.0
                start_after_ms = round(measured_from * 1000)
                if run.faults is None:
                    faults = field_fault_spec(catalog, start_after_ms=start_after_ms)
                else:
                    faults = dataclasses.replace(parse_fault_spec(run.faults), start_after_ms=start_after_ms)
                config = dataclasses.replace(
                    job_config(settings, name="e2e"), poll_interval_s=run.poll_interval_s, detector_policy=run.policy
                )
                simulated = run.job_clock == "simulation"
                with (
                    open_pool(pg.url, min_size=1, max_size=2, name="ioc-e2e-analytics") as pool,
                    Notifier(broker=parse_broker_url(mq.url), client_id="ioc-e2e-alerts") as notifier,
                ):
                    job = AnalyticsJob(
                        config,
                        pool=pool,
                        catalog=catalog,
                        notifier=notifier,
                        clock=clock.now if simulated else time.time,
                        silence_on_reading_time=simulated,
                        limiter=notification_limiter(settings),
                    )
                    job.restore()
                    with running_in_thread(job.run, name="e2e-analytics", join_timeout_s=60):
                        progress.phase = "simulating"
                        sim_start = clock.now()

                        def on_fleet(stats: FleetStats) -> None:
                            progress.done = min(1.0, (clock.now() - sim_start) / duration_s)
                            progress.notes = {"published": stats.published, "faults": sum(stats.faults.values())}

                        result = run_fleet(
                            FleetConfig(
                                broker=parse_broker_url(mq.device_url),
                                devices=devices,
                                seed=run.seed,
                                interval_s=run.interval_s,
                                faults=faults,
                                buffer_dir=root / "buffer",
                            ),
                            duration_s=duration_s,
                            clock=clock,
                            labels_path=labels_path,
                            on_progress=on_fleet,
                        )
                        progress.done = 1.0
                        stored = _wait_drained(pg.url, job, expected_rows=result.stats.expected_rows, progress=progress)
                progress.phase = "evaluating"
                with connect(pg.url) as conn:
                    report = _evaluate(
                        conn,
                        run,
                        labels_path,
                        measured_from=measured_from,
                        twin_start_s=result.start_ms / 1000,
                        catalog=catalog,
                        settings=settings,
                    )
                    by_source = _count_by(conn, "source", measured_from)
                    by_kind = _count_by(conn, "kind", measured_from)
                    anomalies = conn.execute("SELECT count(*) FROM anomalies").fetchone()
        if labels_out is not None:
            labels_out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(labels_path, labels_out)
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    device_days = run.devices * run.hours / 24.0
    report["run"] = {
        **{k: v for k, v in asdict(run).items() if k != "policy"},
        "detector_policy": asdict(run.policy),
        "simulated_s": duration_s,
        "wall_s": round(time.monotonic() - started, 1),
        "readings_expected": result.stats.expected_rows,
        "readings_stored": stored,
        "readings_scored": job.totals["readings"],
        "anomalies": 0 if anomalies is None else int(anomalies[0]),
        "alarms_by_source": by_source,
        "alarms_by_kind": by_kind,
        "detector_alarms_per_100_device_days": 100.0 * by_source.get("detector", 0) / device_days,
        "notifications_held_back": job.totals["held_back"],
        "faults_injected": dict(result.stats.faults),
    }
    return report


def _count_by(conn: Conn, column: Literal["source", "kind"], since: float) -> dict[str, int]:
    """Alarms raised by readings of the scored window, by `column`."""
    from psycopg import sql

    rows = conn.execute(
        sql.SQL(
            "SELECT {}, count(*) FROM alarms WHERE coalesce(trigger_reading_ts, first_reading_ts) >= to_timestamp(%s) "
            "GROUP BY 1"
        ).format(sql.Identifier(column)),
        (since,),
    ).fetchall()
    return {str(k): int(v) for k, v in rows}


def _evaluate(
    conn: Conn,
    run: FleetRun,
    labels_path: Path,
    *,
    measured_from: float,
    twin_start_s: float,
    catalog: Catalog,
    settings: Settings,
) -> dict[str, object]:
    """Incidents and point-wise agreement of the scored window against the labels, with the rule alarms that the
    fleet's fault-free twin raises too counted apart."""
    from analytics.e2e import NOT_SCORED_KINDS, load_detections, load_points, read_labels, score_points
    from analytics.runner import job_config
    from bench.detection_replay import (
        TWIN_TOLERANCE_S,
        ReplayRun,
        incident_details,
        legitimate_alarms,
        twin_rule_alarms,
    )

    labels = [lb for lb in read_labels(labels_path) if lb.kind not in NOT_SCORED_KINDS]
    end = max([lb.end + run.tolerance_s for lb in labels] + [time.time()])
    detections = load_detections(conn, start=measured_from, end=end)
    intervals: dict[str, float] = {}
    for device_id, type_code, own in conn.execute("SELECT device_id, type_code, report_interval_s FROM devices"):
        dtype = catalog.get(str(type_code))
        if own is not None:
            intervals[str(device_id)] = float(own)
        elif dtype is not None:
            intervals[str(device_id)] = dtype.report_interval_s
    twin = twin_rule_alarms(
        ReplayRun(
            devices=run.devices, warmup_hours=run.warmup_hours, hours=run.hours, seed=run.seed, start_s=twin_start_s
        ),
        config=dataclasses.replace(job_config(settings, name="twin"), detector_policy=run.policy),
        catalog=catalog,
    )
    legitimate = legitimate_alarms(
        ((d.alarm_id, d.device_id, d.cause, d.trigger_ts) for d in detections if d.source == "rule"),
        twin,
        tolerance_s=TWIN_TOLERANCE_S,
    )
    report = score_detections(
        labels,
        detections,
        tolerance_s=run.tolerance_s,
        intervals_s=intervals,
        incident_of={d.alarm_id: d.incident_id for d in detections if d.incident_id is not None},
        legitimate=legitimate,
    )
    onsets = {
        int(alarm_id): str(onset or "")
        for alarm_id, onset in conn.execute("SELECT id, details->>'onset' FROM alarms WHERE source = 'detector'")
    }
    report["details"] = incident_details(
        labels, detections, tolerance_s=run.tolerance_s, legitimate=legitimate, onsets=onsets, intervals_s=intervals
    )
    flagged, readings = load_points(conn, start=measured_from, end=end)
    report["points"] = score_points(labels, flagged=flagged, readings=readings)
    report["measured_from"] = measured_from
    report["twin_rule_alarms"] = len(twin)
    return report


def render_report(report: dict[str, object]) -> Group:
    """The report as a rich table: per fault kind (incidents, delay, point-wise F1), overall, then alarms."""
    from rich.console import Group
    from rich.table import Table

    def num(value: object, pattern: str = "{:.2f}") -> str:
        return "-" if value is None else pattern.format(value)

    run = report.get("run", {})
    assert isinstance(run, dict)
    table = Table(
        title=f"fleet detection ({run.get('mode', 'full pipeline')}): {run.get('devices')} devices, "
        f"{run.get('hours')} h scored after {run.get('warmup_hours')} h learning, seed {run.get('seed')}"
    )
    columns = ("fault kind", "labels", "detected", "recall", "precision", "delay s", "delay intervals", "point F1")
    for name in (*columns, "first found by"):
        table.add_column(name, justify="left" if name in ("fault kind", "first found by") else "right")
    per_kind = report["per_kind"]
    points = report.get("points", {})
    assert isinstance(per_kind, dict) and isinstance(points, dict)
    point_kinds = points.get("per_kind", {})
    assert isinstance(point_kinds, dict)
    for kind, row in per_kind.items():
        by = ", ".join(f"{k} {v}" for k, v in sorted(row["first_detected_by"].items()))
        table.add_row(
            kind,
            str(row["labels"]),
            str(row["detected"]),
            num(row["recall"]),
            num(row["precision"]),
            num(row["median_delay_s"], "{:.0f}"),
            num(row.get("median_delay_intervals"), "{:.1f}"),
            num(point_kinds.get(kind, {}).get("f1")),
            by,
        )
    table.add_section()
    table.add_row(
        "all",
        str(report["labels"]),
        "",
        num(report["recall"]),
        num(report["precision"]),
        num(report["median_delay_s"], "{:.0f}"),
        num(report.get("median_delay_intervals"), "{:.1f}"),
        num(points.get("f1")),
        f"{report.get('incidents')} incidents, {report['alarms']} alarms",
    )
    latency = report["alarm_latency_s"]
    assert isinstance(latency, dict)
    lines: list[Table | str] = [
        table,
        f"false incidents {report.get('false_incidents')} by source {report.get('false_incidents_by_source')}; "
        f"legitimate rule incidents (the fault-free twin raises them too) {report.get('legitimate_incidents')}",
        f"alarm latency (reading arrival → alarm, wall time): median {num(latency['median'], '{:.2f}')} s, "
        f"p95 {num(latency['p95'], '{:.2f}')} s, max {num(latency['max'], '{:.2f}')} s over {latency['count']} alarms",
        f"alarms by source {run.get('alarms_by_source')}, detector alarms per 100 device-days "
        f"{num(run.get('detector_alarms_per_100_device_days'), '{:.1f}')}, wall {run.get('wall_s')} s",
    ]
    details = report.get("details")
    if isinstance(details, dict):
        false_by_onset: dict[str, int] = {}
        for alarm in details.get("false", []):
            key = f"{alarm['source']}:{alarm['onset'] or alarm['cause']}"
            false_by_onset[key] = false_by_onset.get(key, 0) + 1
        lines.append(
            f"details (JSON 'details'): {len(details.get('missed', []))} labels missed, false alarms by onset "
            f"{dict(sorted(false_by_onset.items()))}"
        )
    return Group(*lines)
