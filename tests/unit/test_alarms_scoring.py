"""The job's pure half: readings → anomaly rows and alarm operations; and the end-to-end report's arithmetic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from analytics.detector_state import dump_series_state, load_series_state
from analytics.e2e import Detection, LabelsError, read_labels, score_detections
from analytics.scoring import DeviceInfo, JobConfig, StreamScorer
from devices.catalog import load_catalog
from store.analytics import FetchedReading

FRIDGE = DeviceInfo("vaccine_fridge", "can-tho", "health")


class SpikeDetector:
    """Scores 0.9 above 100, else 0.1: enough to drive the alarm logic without learning anything."""

    def update(self, t: float, x: float) -> float:
        return 0.9 if x > 100 else 0.1


def _scorer(**config: object) -> StreamScorer:
    return StreamScorer(load_catalog(), JobConfig(detector_threshold=0.5, **config), detector_factory=SpikeDetector)  # type: ignore[arg-type]


def _rows(device: str, metric: str, points: list[tuple[float, float]]) -> list[FetchedReading]:
    return [(device, metric, t, x, 0, t + 0.5) for t, x in points]


def test_fridge_excursion_becomes_one_raise_with_repeats_then_a_clear() -> None:
    scorer = _scorer()
    temps = [(i * 60.0, 9.0 if 2 <= i <= 15 else 5.0) for i in range(18)]
    out = scorer.score(_rows("fr-1", "temperature", temps), {"fr-1": FRIDGE})
    assert out.readings == 18 and out.late == 0
    ops = [(op.op, op.signal.cause) for op in out.ops]
    assert ops == [("raise", "threshold_above@8"), ("clear", "threshold_above@8")]
    raised = out.ops[0].signal
    assert raised.first_ts.timestamp() == 120.0  # condition start: the alarm links from here
    assert raised.trigger_ts is not None and raised.trigger_ts.timestamp() == 720.0  # 10 min later: the raise
    assert raised.last_ts.timestamp() == 900.0
    assert raised.occurrences == 4  # the hit and three more readings while it held
    assert raised.received_at is not None and raised.received_at.timestamp() == 720.5
    assert (raised.severity, raised.province, raised.source) == ("critical", "can-tho", "rule")


def test_a_condition_spanning_batches_raises_once_then_repeats() -> None:
    scorer = _scorer()
    first = scorer.score(_rows("fr-1", "temperature", [(i * 60.0, 9.0) for i in range(12)]), {"fr-1": FRIDGE})
    second = scorer.score(_rows("fr-1", "temperature", [(i * 60.0, 9.0) for i in range(12, 15)]), {"fr-1": FRIDGE})
    assert [op.op for op in first.ops] == ["raise"]
    assert [(op.op, op.signal.occurrences) for op in second.ops] == [("repeat", 3)]


def test_detector_alarm_clears_after_a_quiet_period_of_reading_time() -> None:
    scorer = _scorer(anomaly_quiet_s=300.0)
    points = [(0.0, 5.0), (60.0, 500.0), (120.0, 500.0), (180.0, 5.0), (300.0, 5.0), (360.0, 5.0), (420.0, 5.0)]
    out = scorer.score(_rows("fr-1", "battery_v", points), {"fr-1": FRIDGE})
    assert [(a.ts, a.score) for a in out.anomalies] == [(60.0, 0.9), (120.0, 0.9)]
    ops = [(op.op, op.signal.source, op.reason) for op in out.ops]
    assert ops == [("raise", "detector", ""), ("clear", "detector", "quiet")]
    assert out.ops[0].signal.occurrences == 2
    assert out.ops[1].signal.last_ts.timestamp() == 420.0  # 300 s after the last anomalous reading


def test_late_and_unknown_readings_are_counted_not_scored() -> None:
    scorer = _scorer()
    scorer.score(_rows("fr-1", "temperature", [(600.0, 5.0)]), {"fr-1": FRIDGE})
    out = scorer.score(
        _rows("fr-1", "temperature", [(300.0, 50.0), (660.0, 5.0)]) + _rows("ghost", "temperature", [(1.0, 1.0)]),
        {"fr-1": FRIDGE},
    )
    assert (out.readings, out.late, out.unknown) == (1, 1, 1)


def test_state_dump_restores_the_detector_and_rules() -> None:
    scorer = _scorer()
    scorer.score(_rows("fr-1", "temperature", [(i * 60.0, 9.0) for i in range(5)]), {"fr-1": FRIDGE})
    blob = dump_series_state(scorer.series[("fr-1", "temperature")].saved_state())
    again = _scorer()
    again.get_series("fr-1", "temperature", FRIDGE, saved=load_series_state(blob))
    out = again.score(_rows("fr-1", "temperature", [(i * 60.0, 9.0) for i in range(5, 11)]), {"fr-1": FRIDGE})
    # The duration kept counting across the restart: 10 min after the first warm reading at t=0.
    assert [(op.op, op.signal.trigger_ts.timestamp() if op.signal.trigger_ts else None) for op in out.ops] == [
        ("raise", 600.0)
    ]


def test_silent_check_raises_for_a_seeded_device() -> None:
    scorer = _scorer()
    scorer.seed_silence("fr-1", FRIDGE, 1000.0)
    assert scorer.check_silent(1000.0 + 900.0, {"fr-1": FRIDGE}) == []
    ops = scorer.check_silent(1000.0 + 901.0, {"fr-1": FRIDGE})
    assert [(op.op, op.signal.cause, op.signal.metric) for op in ops] == [("raise", "silent", None)]


def test_report_counts_recall_precision_and_delay_per_kind(tmp_path: Path) -> None:
    labels_file = tmp_path / "labels.jsonl"
    labels_file.write_text(
        "\n".join(
            json.dumps(x)
            for x in [
                {"device": "a", "metric": "temperature", "kind": "spike", "start": 1000, "end": 1060},
                {"device_id": "b", "metric": "temperature", "kind": "spike", "start": 2000, "end": 2060},
                {"device": "c", "metric": None, "kind": "dropout", "start": "1970-01-01T00:50:00Z", "end": 3600},
            ]
        )
        + "\n"
    )
    labels = read_labels(labels_file)
    assert labels[2].start == 3000.0 and labels[2].end == 3600.0
    detections = [
        Detection(1, "a", "temperature", "detector", "univariate", 1030.0, 0.2),
        Detection(2, "c", None, "rule", "silent", 3500.0, 1.0),
        Detection(3, "a", "temperature", "detector", "univariate", 9000.0, 0.4),  # nothing there: false alarm
    ]
    report = score_detections(labels, detections, tolerance_s=100.0)
    spike = report["per_kind"]["spike"]  # type: ignore[index]
    assert (spike["labels"], spike["detected"], spike["recall"], spike["median_delay_s"]) == (2, 1, 0.5, 30.0)
    assert spike["precision"] == 0.5  # one matched, one false alarm on device a
    dropout = report["per_kind"]["dropout"]  # type: ignore[index]
    assert (dropout["recall"], dropout["precision"], dropout["median_delay_s"]) == (1.0, 1.0, 500.0)
    assert report["precision"] == pytest.approx(2 / 3)
    assert report["alarm_latency_s"]["max"] == 1.0  # type: ignore[index]


def test_bad_label_lines_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"device": "a", "kind": "spike", "start": 10, "end": 5}\n')
    with pytest.raises(LabelsError, match=r"bad.jsonl:1: 'end' is before 'start'"):
        read_labels(bad)
