"""A small `ioc bench detection`: 8 simulated devices, 20 simulated minutes at 240x, through a private center
(embedded broker with device credentials, database, ingest, the analytics job with the live alarm policy).
Checks the report's shape and that injected spikes or level shifts raise alarms within 5 s of arrival;
precision is reported, not asserted (a 20-minute fleet is too small to say much about it)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from analytics.e2e import LATENCY_TARGET_S
from analytics.runner import detector_policy
from bench.detection import FleetRun, render_report, run_fleet_evaluation
from core.settings import REPO_ROOT, Settings

REPORT = REPO_ROOT / ".runtime" / "reports" / "analytics_fleet_small.json"


def test_small_fleet_with_faults_is_scored_per_kind_and_alarms_come_within_5_s(
    runtime_root: Path, tmp_path: Path
) -> None:
    settings = Settings(runtime_dir=runtime_root)
    run = FleetRun(
        devices=8,
        hours=10 / 60,
        # Faults after 10 minutes of learning; the detectors raise alarms from the start (no learning day).
        warmup_hours=10 / 60,
        speed=240.0,
        # 2 s reports: 600 points per series, most of them past the detector's 100-reading warm-up.
        interval_s=2.0,
        faults="spike:0.004,level_shift:0.003,stuck:0.001,dropout:0.001",
        seed=3,
        policy=dataclasses.replace(detector_policy(settings), learn_s=0.0),
    )
    labels = tmp_path / "labels.jsonl"
    report = run_fleet_evaluation(run, settings=settings, root=runtime_root / "fleet-e2e", labels_out=labels)

    assert {
        "labels",
        "alarms",
        "incidents",
        "recall",
        "precision",
        "median_delay_s",
        "median_delay_intervals",
        "per_kind",
        "points",
        "alarm_latency_s",
        "run",
    } <= set(report)
    run_info = report["run"]
    assert isinstance(run_info, dict)
    # Everything the fleet sent was stored and scored.
    assert run_info["readings_stored"] == run_info["readings_expected"] > 0
    assert run_info["readings_scored"] == run_info["readings_stored"]
    per_kind = report["per_kind"]
    assert isinstance(per_kind, dict)
    written = [json.loads(line) for line in labels.read_text().splitlines()]
    assert sum(row["labels"] for row in per_kind.values()) == report["labels"] == len(written) > 0
    for row in per_kind.values():
        assert {"labels", "detected", "recall", "precision", "median_delay_s", "alarm_latency_s"} <= set(row)
        assert 0.0 <= row["recall"] <= 1.0

    # At least one spike or level shift found, and its alarm raised within 5 s of the reading's arrival.
    found = [per_kind[k] for k in ("spike", "level_shift") if k in per_kind and per_kind[k]["detected"]]
    assert found, f"no spike or level shift detected: {per_kind}"
    fastest = min(row["alarm_latency_s"]["max"] for row in found if row["alarm_latency_s"]["count"])
    assert 0.0 <= fastest < LATENCY_TARGET_S

    # No silent alarm on a healthy fleet whose clock runs 240x faster than the wall (the job follows it).
    assert "silent" not in run_info["alarms_by_kind"]

    render_report(report)  # the table renders from the report alone
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(report, indent=2) + "\n")
