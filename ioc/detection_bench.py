"""`ioc bench detection`: a simulated fleet with injected faults through a private center (embedded broker and
database, ingest, the analytics job), scored per fault kind against the fleet's labels. Wiring of every part,
so it lives in `ioc/`, which may import them all."""

from __future__ import annotations

import argparse
import json
import threading
from typing import TYPE_CHECKING

from analytics.live_commands import detector_policy

if TYPE_CHECKING:
    from rich.console import Group

    from analytics.alarm_policy import DetectorAlarmPolicy
    from core.settings import Settings


def _e2e_policy(args: argparse.Namespace, settings: Settings) -> DetectorAlarmPolicy:
    import dataclasses

    from analytics.alarm_policy import EVERY_ANOMALY

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
    from core.settings import Settings
    from ioc.fleet_eval import DEFAULT_FAULTS, FleetRun, RunProgress, run_fleet_evaluation

    settings = Settings()
    try:
        run = FleetRun(
            devices=args.devices,
            hours=args.hours,
            speed=args.speed,
            interval_s=args.interval,
            faults=DEFAULT_FAULTS if args.faults is None else args.faults,
            seed=args.seed,
            policy=_e2e_policy(args, settings),
            job_clock=args.job_clock,
            tolerance_s=DEFAULT_TOLERANCE_S if args.tolerance_s is None else args.tolerance_s,
        )
    except ValueError as exc:
        raise SystemExit(f"ioc bench detection: {exc}") from exc
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
    console.print(render_e2e_report(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        console.print(f"report written to {args.json}")
    return 0


def render_e2e_report(report: dict[str, object]) -> Group:
    """The report as a rich table: per fault kind, overall, then alarm latency."""
    from rich.console import Group
    from rich.table import Table

    def num(value: object, pattern: str = "{:.2f}") -> str:
        return "-" if value is None else pattern.format(value)

    run = report.get("run", {})
    assert isinstance(run, dict)
    table = Table(
        title=f"fleet e2e: {run.get('devices')} devices, {run.get('hours')} h simulated at {run.get('speed')}x, "
        f"seed {run.get('seed')}"
    )
    for name in ("fault kind", "labels", "detected", "recall", "precision", "median delay s", "first found by"):
        table.add_column(name, justify="left" if name in ("fault kind", "first found by") else "right")
    per_kind = report["per_kind"]
    assert isinstance(per_kind, dict)
    for kind, row in per_kind.items():
        by = ", ".join(f"{k} {v}" for k, v in sorted(row["first_detected_by"].items()))
        table.add_row(
            kind,
            str(row["labels"]),
            str(row["detected"]),
            num(row["recall"]),
            num(row["precision"]),
            num(row["median_delay_s"], "{:.0f}"),
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
        f"{report['alarms']} alarms",
    )
    latency = report["alarm_latency_s"]
    assert isinstance(latency, dict)
    lines: list[Table | str] = [
        table,
        f"alarm latency (reading arrival → alarm, wall time): median {num(latency['median'], '{:.2f}')} s, "
        f"p95 {num(latency['p95'], '{:.2f}')} s, max {num(latency['max'], '{:.2f}')} s over {latency['count']} alarms",
        f"alarms by source {run.get('alarms_by_source')}, anomalies recorded {run.get('anomalies')}, "
        f"wall {run.get('wall_s')} s",
    ]
    return Group(*lines)
