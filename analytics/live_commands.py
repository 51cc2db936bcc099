"""`ioc analytics …`: the live side of analytics — run the streaming job, evaluate it on labelled faults,
benchmark its throughput. (`ioc detect` and `ioc eval nab` live in `analytics.commands`.)"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from analytics.alarm_policy import DetectorAlarmPolicy
    from analytics.job import JobConfig
    from core.settings import Settings
    from ioc.services import ServiceUrls

_LOGGER = logging.getLogger(__name__)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    group = sub.add_parser("analytics", help="the streaming anomaly and alarm job")
    group_sub = group.add_subparsers(dest="analytics_command", required=True)

    run = group_sub.add_parser("run", help="run the streaming job: readings → anomalies → alarms → notifications")
    run.add_argument("--name", default="analytics", help="job name (its watermark and saved state)")
    run.set_defaults(func=cmd_run)

    evaluate = group_sub.add_parser(
        "evaluate", help="precision, recall and detection delay per fault kind against a labels JSONL file"
    )
    evaluate.add_argument("--labels", type=Path, required=True, help="JSONL: device, metric, kind, start, end")
    evaluate.add_argument("--json", type=Path, default=None, help="write the report here")
    evaluate.add_argument("--tolerance-s", type=float, default=None, help="detections this late still count")
    evaluate.set_defaults(func=cmd_evaluate)

    bench = group_sub.add_parser("bench", help="readings per second through the job (scoring and the full tick)")
    bench.add_argument("--devices", type=int, default=2000)
    bench.add_argument("--points", type=int, default=100, help="readings per device and metric")
    bench.add_argument("--json", type=Path, default=None)
    bench.set_defaults(func=cmd_bench)


def job_config(settings: Settings, *, name: str = "analytics") -> JobConfig:
    from analytics.job import JobConfig

    return JobConfig(
        name=name,
        state_save_interval_s=settings.analytics_state_save_s,
        anomaly_quiet_s=settings.anomaly_quiet_s,
        escalate_after_s=settings.alarm_escalate_after_s,
        detector_policy=detector_policy(settings),
    )


def detector_policy(settings: Settings) -> DetectorAlarmPolicy:
    from analytics.alarm_policy import DetectorAlarmPolicy

    return DetectorAlarmPolicy(
        learn_points=settings.detector_alarm_learn_points,
        high_score=settings.detector_alarm_high_score,
        persist_points=settings.detector_alarm_persist_points,
        persist_window=settings.detector_alarm_persist_window,
        device_gap_s=settings.detector_alarm_device_gap_s,
    )


def run_job(settings: Settings, urls: ServiceUrls, stop: threading.Event, *, name: str = "analytics") -> None:
    """The job with its own pool and alerts MQTT client until `stop` is set (for `ioc analytics run`, `ioc up`)."""
    from analytics.job import AnalyticsJob
    from analytics.notify import Notifier
    from devices.catalog import load_catalog
    from protocol.broker_url import parse_broker_url
    from store.pool import open_pool

    config = job_config(settings, name=name)
    with (
        open_pool(urls.database_url, min_size=1, max_size=2, name=f"ioc-{name}") as pool,
        Notifier(
            broker=parse_broker_url(urls.mqtt_url),
            webhooks=settings.alarm_webhooks,
            client_id=f"ioc-{name}-alerts",
        ) as notifier,
    ):
        AnalyticsJob(config, pool=pool, catalog=load_catalog(), notifier=notifier).run(stop)


def cmd_run(args: argparse.Namespace) -> int:
    from core.settings import Settings
    from devices.schema import migrate_database
    from ioc.services import center_services

    settings = Settings()
    with center_services(settings) as urls:
        migrate_database(urls.database_url)
        stop = threading.Event()
        print(f"analytics job {args.name} running against {urls.mqtt_url} (Ctrl-C stops it)", flush=True)
        try:
            run_job(settings, urls, stop, name=args.name)
        except KeyboardInterrupt:
            stop.set()
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from analytics.e2e import DEFAULT_TOLERANCE_S, evaluate_labels, format_report
    from core.settings import Settings
    from ioc.services import center_services
    from store.pool import connect

    settings = Settings()
    with center_services(settings) as urls, connect(urls.database_url) as conn:
        report = evaluate_labels(
            conn, args.labels, tolerance_s=args.tolerance_s if args.tolerance_s is not None else DEFAULT_TOLERANCE_S
        )
    print(format_report(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"report written to {args.json}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    result = bench_job(devices=args.devices, points=args.points)
    print(json.dumps(result, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


def _synthetic_rows(
    devices: int, points: int, *, seed: int
) -> tuple[list[tuple[str, str, float, float, int, float]], int]:
    """Readings of `devices` vaccine fridges (5 metrics each), one per 60 s, with a few excursions."""
    import random

    from devices.catalog import load_catalog

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


def bench_job(*, devices: int, points: int, seed: int = 7) -> dict[str, object]:
    """Scoring throughput of the job's pure half (detector + rules per reading), no database."""
    import time

    from analytics.job import DeviceInfo, JobConfig, StreamScorer, new_detector
    from devices.catalog import load_catalog

    rows, metrics = _synthetic_rows(devices, points, seed=seed)
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    scorer = StreamScorer(load_catalog(), JobConfig(), detector_factory=new_detector)
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
        "what": "analytics job scoring (detector + rules), one core, no database",
        "readings": len(rows),
        "series": devices * metrics,
        "batches": len(batches),
        "seconds": round(elapsed, 3),
        "readings_per_s": round(len(rows) / elapsed),
        "anomalies": anomalies,
        "alarm_ops": ops,
    }


@contextlib.contextmanager
def analytics_running(settings: Settings, urls: ServiceUrls) -> Iterator[threading.Thread]:
    """The job on a thread of this process, with its own pool and MQTT client (`ioc up`, `ioc demo`)."""
    stop = threading.Event()
    thread = threading.Thread(target=run_job, args=(settings, urls, stop), name="analytics-job", daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(timeout=30)
