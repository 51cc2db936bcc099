"""`ioc bench …`: the benchmarks and evaluation harnesses of `bench/`, each with a JSON result."""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from core.settings import Settings

if TYPE_CHECKING:
    from analytics.alarm_policy import DetectorAlarmPolicy
    from bench.detection import FleetRun


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser("bench", help="benchmarks with JSON results")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    ingest = bench_sub.add_parser("ingest", help="end-to-end ingest benchmark")
    ingest.add_argument("--seconds", type=float, default=60.0, help="how long to publish")
    ingest.add_argument("--json", dest="json_path", type=Path, default=None, help="write the result here")
    ingest.add_argument("--workers", type=int, default=2, help="ingest worker processes")
    ingest.add_argument("--publishers", type=int, default=2, help="load-generator processes")
    ingest.add_argument("--devices", type=int, default=1000, help="devices to provision and publish as")
    ingest.add_argument("--rate", type=float, default=0.0, help="messages/s in total; 0 = as fast as possible")
    ingest.add_argument("--drain-timeout", type=float, default=120.0, help="give up waiting for commits after this")
    ingest.set_defaults(func=cmd_ingest_bench)

    scaleout = bench_sub.add_parser(
        "scaleout",
        help="ingest workers on a 3-node NATS JetStream cluster; the stream's leader node is killed mid-run",
    )
    scaleout.add_argument("--seconds", type=float, default=30.0, help="how long the fleet publishes")
    scaleout.add_argument("--devices", type=int, default=50, help="devices, one MQTT connection each")
    scaleout.add_argument("--rate", type=float, default=20.0, help="messages/s per device")
    scaleout.add_argument("--workers", type=int, default=2, help="ingest worker processes")
    scaleout.add_argument("--kill-after", type=float, default=10.0, help="seconds until the leader node is killed")
    scaleout.add_argument("--json", dest="json_path", type=Path, default=None, help="write the result here")
    scaleout.set_defaults(func=cmd_scaleout_bench)

    national = bench_sub.add_parser(
        "national", help="national load from our measured figures: 34 provinces x devices x rate (no services)"
    )
    national.add_argument("--provinces", type=int, default=34, help="provinces feeding the national center")
    national.add_argument("--devices-per-province", type=int, default=20_000, help="devices in each province")
    national.add_argument("--interval-s", type=float, default=60.0, help="seconds between a device's messages")
    national.add_argument("--readings-per-message", type=float, default=5.0, help="readings (metrics) in one message")
    national.add_argument("--measured", type=Path, action="append", default=[], help="bench JSON results to use")
    national.add_argument("--json", dest="json_path", type=Path, default=None, help="write the result here")
    national.set_defaults(func=cmd_national_bench)

    detection = bench_sub.add_parser(
        "detection",
        help="a simulated fleet with injected faults through a private center, scored per fault kind",
        description="Starts embedded PostgreSQL and Mosquitto in a fresh runtime folder, ingest, the analytics job "
        "and a simulated fleet on a sped-up clock; faults that match the field start after a fault-free learning "
        "period. Then scores the alarms against the fleet's fault labels per fault kind: recall and precision on "
        "incidents, detection delay (seconds, report intervals), point-wise F1 of the anomalous state, and alarm "
        "latency (arrival → alarm). --in-process runs the same fleet, faults and scoring without broker or "
        "database (seconds instead of minutes; for developing detectors).",
    )
    detection.add_argument("--devices", type=int, default=60, help="simulated devices (default 60)")
    detection.add_argument("--hours", type=float, default=24.0, help="simulated hours scored (after the warm-up)")
    detection.add_argument(
        "--warmup-hours", type=float, default=24.0, help="fault-free simulated hours first (the detectors learn)"
    )
    detection.add_argument("--speed", type=float, default=600.0, help="simulated seconds per real second")
    detection.add_argument(
        "--interval", type=float, default=None, help="report interval of every device, seconds (default: its type's)"
    )
    detection.add_argument(
        "--faults",
        default=None,
        help="fault spec as for `ioc simulate --faults`; default: faults that match the field; 'none': no faults",
    )
    detection.add_argument("--seed", type=int, default=1, help="seed of the fleet and its faults (default 1)")
    detection.add_argument(
        "--in-process", action="store_true", help="no broker, database or ingest: firmware straight into the scorer"
    )
    detection.add_argument("--json", type=Path, default=None, help="write the report here")
    detection.add_argument("--labels-out", type=Path, default=None, help="keep the fault labels (JSONL) here")
    detection.add_argument("--tolerance-s", type=float, default=None, help="detections this late still count")
    detection.add_argument(
        "--runtime-dir", type=Path, default=None, help="default: a fresh folder under the runtime dir"
    )
    detection.add_argument("--keep", action="store_true", help="keep the runtime folder (database, broker log, labels)")
    policy = detection.add_argument_group("detector alarm policy (default: the IOC_DETECTOR_ALARM_* settings)")
    policy.add_argument("--every-anomaly", action="store_true", help="every detector anomaly raises (no policy)")
    policy.add_argument("--learn-points", type=int, default=None, help="a series' first points raise no alarm")
    policy.add_argument("--high-score", type=float, default=None, help="a score this high raises at once")
    policy.add_argument("--persist", default=None, metavar="K/M", help="K anomalous points within the last M")
    policy.add_argument("--device-gap-s", type=float, default=None, help="reading time between a device's alarms")
    detection.add_argument(
        "--job-clock",
        choices=("simulation", "wall"),
        default="simulation",
        help="wall: the job ignores the simulation's clock (to compare with the behaviour before)",
    )
    detection.set_defaults(func=cmd_detection_bench)

    analytics = bench_sub.add_parser(
        "analytics", help="readings per second through the analytics job's scoring (detector + rules), no database"
    )
    analytics.add_argument("--devices", type=int, default=2000, help="simulated vaccine fridges (5 metrics each)")
    analytics.add_argument("--points", type=int, default=100, help="readings per device and metric")
    analytics.add_argument("--json", type=Path, default=None, help="write the result here")
    analytics.add_argument(
        "--lag",
        action="store_true",
        help="the live job against a private database fed at --rate messages/s: commit → scored lag p50/p99",
    )
    analytics.add_argument("--rate", type=float, default=5000.0, help="--lag: messages/s (5 readings each)")
    analytics.add_argument(
        "--seconds", type=float, default=180.0, help="--lag: how long to feed (the first 120 s are not measured)"
    )
    analytics.add_argument("--lag-devices", type=int, default=5000, help="--lag: devices the messages come from")
    analytics.set_defaults(func=cmd_analytics_bench)

    access = bench_sub.add_parser(
        "access", help="broker access control: start-up, reload and cut-off of a removed device, for N devices"
    )
    access.add_argument("--devices", type=int, default=100_000, help="devices in the password file")
    access.add_argument("--per-user", action="store_true", help="per-device ACL blocks instead of %%u patterns")
    access.add_argument("--json", type=Path, default=None, help="write the result here")
    access.set_defaults(func=cmd_access_bench)

    api = bench_sub.add_parser(
        "api",
        help="the API's main queries on a seeded history with concurrent clients, and a large CSV export's memory",
    )
    api.add_argument("--devices", type=int, default=1000, help="devices (3 metrics, one reading a minute)")
    api.add_argument("--days", type=float, default=7.0, help="days of history to seed")
    api.add_argument("--clients", type=int, default=8, help="concurrent clients")
    api.add_argument("--requests", type=int, default=400, help="requests per query kind")
    api.add_argument("--export-rows", type=int, default=10_000_000, help="rows in the CSV export measured")
    api.add_argument("--workers", type=int, default=2, help="API processes (ioc api --workers)")
    api.add_argument(
        "--history",
        type=Path,
        default=None,
        help="keep the seeded database in this folder and reuse it when it holds the same devices and days",
    )
    api.add_argument("--json", type=Path, default=None, help="write the result here")
    api.set_defaults(func=cmd_api_bench)

    fleet = bench_sub.add_parser(
        "fleet", help="N simulated devices on their own connections through a private center, every message accounted"
    )
    fleet.add_argument("--devices", type=int, default=10_000, help="simulated devices")
    fleet.add_argument("--interval", type=float, default=10.0, help="seconds between a device's reports")
    fleet.add_argument("--duration", type=float, default=300.0, help="seconds to simulate")
    fleet.add_argument("--faults", default="malformed:0.0005,duplicate:0.001", help="as for `ioc simulate --faults`")
    fleet.add_argument("--workers", type=int, default=2, help="ingest worker processes")
    fleet.add_argument("--json", type=Path, default=None, help="write the result here")
    fleet.set_defaults(func=cmd_fleet_bench)

    storage = bench_sub.add_parser(
        "storage", help="bytes per device-year of raw readings and of the one-minute and one-hour rollups"
    )
    storage.add_argument("--devices", type=int, default=200, help="devices (default 200)")
    storage.add_argument("--metrics", type=int, default=3, help="metrics per device (default 3)")
    storage.add_argument("--days", type=float, default=7.0, help="days of history to write (default 7)")
    storage.add_argument("--interval", type=int, default=60, help="seconds between a series' readings (default 60)")
    storage.add_argument("--json", type=Path, default=None, help="write the result here")
    storage.set_defaults(func=cmd_storage_bench)


def _e2e_policy(args: argparse.Namespace, settings: Settings) -> DetectorAlarmPolicy:
    import dataclasses

    from analytics.alarm_policy import EVERY_ANOMALY
    from analytics.runner import detector_policy

    if args.every_anomaly:
        return EVERY_ANOMALY
    policy = detector_policy(settings)
    changes: dict[str, object] = {}
    if args.learn_points is not None:
        changes["learn_points"] = args.learn_points
    if args.high_score is not None:
        changes["high_score"] = args.high_score
    if args.device_gap_s is not None:
        changes["device_gap_s"] = args.device_gap_s
    if args.persist is not None:
        k, _, m = args.persist.partition("/")
        changes["persist_points"], changes["persist_window"] = int(k), int(m or k)
    return dataclasses.replace(policy, **changes)  # type: ignore[arg-type]


def cmd_detection_bench(args: argparse.Namespace) -> int:
    import os

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from analytics.e2e import DEFAULT_TOLERANCE_S
    from bench.detection import FleetRun, RunProgress, render_report, run_fleet_evaluation

    settings = Settings()
    no_faults = args.faults is not None and args.faults.strip().lower() in ("none", "")
    try:
        run = FleetRun(
            devices=args.devices,
            hours=args.hours,
            warmup_hours=args.warmup_hours,
            speed=args.speed,
            interval_s=args.interval,
            faults="" if no_faults else args.faults,
            seed=args.seed,
            policy=_e2e_policy(args, settings),
            job_clock=args.job_clock,
            tolerance_s=DEFAULT_TOLERANCE_S if args.tolerance_s is None else args.tolerance_s,
        )
    except ValueError as exc:
        raise SystemExit(f"ioc bench detection: {exc}") from exc
    if args.in_process:
        return _detection_in_process(args, run, settings, no_faults=no_faults)
    root = args.runtime_dir or settings.runtime_dir / f"e2e-{os.getpid()}"
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # the table stays readable in a log or a pipe
    state = RunProgress()
    result: dict[str, object] = {}

    def work() -> None:
        result.update(
            run_fleet_evaluation(
                run, settings=settings, root=root, labels_out=args.labels_out, progress=state, keep=args.keep
            )
        )

    worker = threading.Thread(target=work, name="e2e", daemon=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=1.0)
        worker.start()
        while worker.is_alive():
            worker.join(0.25)
            notes = " ".join(f"{k} {v}" for k, v in state.notes.items())
            bar.update(task, completed=state.done, description=f"{state.phase} {notes}".strip())
    if not result:
        return 1
    console.print(render_report(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        console.print(f"report written to {args.json}")
    return 0


def _detection_in_process(args: argparse.Namespace, run: FleetRun, settings: Settings, *, no_faults: bool) -> int:
    """`ioc bench detection --in-process`: the same fleet and scoring without services."""
    import dataclasses

    from rich.console import Console

    from analytics.runner import job_config
    from bench.detection import render_report
    from bench.detection_replay import ReplayRun, run_replay

    if args.faults is not None and not no_faults:
        raise SystemExit("ioc bench detection: --in-process runs the field faults or none (--faults none)")
    replay = ReplayRun(
        devices=run.devices,
        warmup_hours=run.warmup_hours,
        hours=run.hours,
        seed=run.seed,
        faults=not no_faults,
        tolerance_s=run.tolerance_s,
    )
    config = dataclasses.replace(job_config(settings, name="replay"), detector_policy=run.policy)
    result = run_replay(replay, config=config)
    console = Console() if Console().is_terminal else Console(width=140)
    if not no_faults:
        console.print(render_report(result))
    console.print_json(data=result["run"])
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        console.print(f"report written to {args.json}")
    return 0


def cmd_ingest_bench(args: argparse.Namespace) -> int:
    from bench.ingest import IngestBenchConfig, run_ingest_bench

    config = IngestBenchConfig(
        seconds=args.seconds,
        workers=args.workers,
        publishers=args.publishers,
        devices=args.devices,
        rate=args.rate,
        drain_timeout_s=args.drain_timeout,
    )
    result = run_ingest_bench(config, settings=Settings())
    _write_json(result, args.json_path)
    return 0 if result["lost"] == 0 and result["duplicates"] == 0 else 1


def cmd_scaleout_bench(args: argparse.Namespace) -> int:
    from bench.scaleout import ScaleoutBenchConfig, run_scaleout_bench

    config = ScaleoutBenchConfig(
        seconds=args.seconds,
        devices=args.devices,
        rate_per_device=args.rate,
        workers=args.workers,
        kill_after_s=args.kill_after,
    )
    result = run_scaleout_bench(config, settings=Settings())
    _write_json(result, args.json_path)
    return 0 if result["lost"] == 0 and result["duplicate_rows_stored"] == 0 else 1


def cmd_national_bench(args: argparse.Namespace) -> int:
    from bench.national import NationalLoad, simulate_national_load

    load = NationalLoad(
        provinces=args.provinces,
        devices_per_province=args.devices_per_province,
        interval_s=args.interval_s,
        readings_per_message=args.readings_per_message,
    )
    _write_json(simulate_national_load(load, measured=args.measured), args.json_path)
    return 0


def _write_json(result: object, path: Path | None) -> None:
    text = json.dumps(result, indent=2)
    print(text)
    if path is not None:
        path.write_text(text + "\n", encoding="utf-8")


def cmd_analytics_bench(args: argparse.Namespace) -> int:
    if args.lag:
        from bench.analytics_lag import LagBenchConfig, run_lag_bench

        config = LagBenchConfig(devices=args.lag_devices, messages_per_s=args.rate, seconds=args.seconds)
        _write_json(run_lag_bench(config, runtime_dir=Settings().runtime_dir), args.json)
        return 0
    from bench.analytics_job import bench_scoring

    _write_json(bench_scoring(devices=args.devices, points=args.points), args.json)
    return 0


def cmd_access_bench(args: argparse.Namespace) -> int:
    from bench.broker_access import measure

    _write_json(measure(args.devices, per_user=args.per_user), args.json)
    return 0


def cmd_fleet_bench(args: argparse.Namespace) -> int:
    from bench.fleet import run_fleet_bench

    result = run_fleet_bench(
        devices=args.devices,
        interval_s=args.interval,
        duration_s=args.duration,
        faults=args.faults,
        workers=args.workers,
        runtime_dir=Settings().runtime_dir,
    )
    _write_json(result, args.json)
    return 0 if result["accounted"] else 1


def cmd_api_bench(args: argparse.Namespace) -> int:
    from bench.api import ApiBenchConfig, run_api_bench

    config = ApiBenchConfig(
        devices=args.devices,
        days=args.days,
        clients=args.clients,
        requests=args.requests,
        export_rows=args.export_rows,
        workers=args.workers,
    )
    try:
        result = run_api_bench(config, runtime_dir=Settings().runtime_dir, history_dir=args.history)
    except ValueError as exc:
        raise SystemExit(f"ioc bench api: {exc}") from exc
    _write_json(result, args.json)
    return 0


def cmd_storage_bench(args: argparse.Namespace) -> int:
    from bench.storage import StorageBenchConfig, run_storage_bench

    config = StorageBenchConfig(devices=args.devices, metrics=args.metrics, days=args.days, interval_s=args.interval)
    try:
        result = run_storage_bench(config, runtime_dir=Settings().runtime_dir)
    except ValueError as exc:
        raise SystemExit(f"ioc bench storage: {exc}") from exc
    _write_json(result, args.json)
    return 0
