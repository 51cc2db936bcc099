"""The per-incident details of `ioc bench detection`: which labels no alarm detected and which alarms detected
no label, matched exactly as the scoring matches them."""

from __future__ import annotations

from analytics.e2e import Detection, FaultLabel
from bench.detection_replay import incident_details


def test_details_name_the_missed_labels_and_the_unexplained_alarms() -> None:
    labels = [
        FaultLabel("d1", "flow", "slow_leak", start=1000.0, end=1600.0),
        FaultLabel("d2", "temp", "spike", start=5000.0, end=5000.0),
    ]
    detections = [
        Detection(1, "d2", "temp", "detector", "anomaly", trigger_ts=5000.0, latency_s=None),  # detects the spike
        Detection(2, "d1", "level", "detector", "anomaly", trigger_ts=9000.0, latency_s=None),  # detects nothing
        Detection(3, "d3", "temp", "rule", "threshold_above", trigger_ts=200.0, latency_s=None),  # the twin's too
    ]
    details = incident_details(
        labels,
        detections,
        tolerance_s=900.0,
        legitimate={3},
        onsets={2: "jump"},
        intervals_s={"d1": 60.0},
    )
    assert details["missed"] == [
        {"device_id": "d1", "metric": "flow", "kind": "slow_leak", "start": 1000.0, "end": 1600.0, "intervals": 11.0}
    ]
    assert [(a["alarm_id"], a["onset"], a["metric"]) for a in details["false"]] == [(2, "jump", "level")]
