"""The job's pure half: readings → anomaly rows and alarm operations; and the end-to-end report's arithmetic."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from analytics.detector_state import dump_series_state, load_series_state
from analytics.e2e import Detection, FaultLabel, LabelsError, read_labels, score_detections
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


def test_silent_check_raises_for_a_seeded_device_after_its_rule_duration_without_early_silence() -> None:
    scorer = _scorer(silence_reports=None)
    scorer.seed_silence("fr-1", FRIDGE, 1000.0)
    assert scorer.check_silent(1000.0 + 900.0, {"fr-1": FRIDGE}) == []
    ops = scorer.check_silent(1000.0 + 901.0, {"fr-1": FRIDGE})
    assert [(op.op, op.signal.cause, op.signal.metric) for op in ops] == [("raise", "silent", None)]


def test_a_device_is_silent_after_missing_two_and_a_half_report_intervals_before_its_rule_says_so() -> None:
    scorer = _scorer()  # silence_reports 2.5; the fridge reports every 300 s and its silent rule says 900 s
    scorer.seed_silence("fr-1", FRIDGE, 1000.0)
    assert scorer.check_silent(1000.0 + 750.0, {"fr-1": FRIDGE}) == []
    ops = scorer.check_silent(1000.0 + 751.0, {"fr-1": FRIDGE})
    assert [(op.op, op.signal.kind) for op in ops] == [("raise", "silent")]
    assert ops[0].signal.message.startswith("No report for 13 min")
    # A device whose own interval was set longer is judged on it (capped by the rule's duration).
    slow = DeviceInfo("vaccine_fridge", "can-tho", "health", report_interval_s=600.0)
    scorer.seed_silence("fr-2", slow, 1000.0)
    assert scorer.check_silent(1000.0 + 899.0, {"fr-2": slow}) == []
    assert len(scorer.check_silent(1000.0 + 901.0, {"fr-2": slow})) == 1


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


# flood control, joint blame and impossible values ----------------------------------------------------------------


class StateDetector:
    """Anomalous (in state) above 100: a stand-in with an anomalous state, like the production detector's."""

    def __init__(self) -> None:
        self.anomalous = False
        self.fault = self

    onset = "jump"

    def update(self, t: float, x: float, *, resting: bool = False) -> float:
        self.anomalous = x > 100
        return 0.9 if self.anomalous else 0.1


def _state_scorer(**config: object) -> StreamScorer:
    return StreamScorer(load_catalog(), JobConfig(**config), detector_factory=StateDetector)  # type: ignore[arg-type]


def test_a_detector_alarm_follows_the_state_one_alarm_with_an_occurrence_count() -> None:
    scorer = _state_scorer(anomaly_quiet_s=300.0)
    values = [5.0] * 3 + [500.0] * 6 + [5.0] * 10
    out = scorer.score(_rows("fr-1", "battery_v", [(60.0 * i, x) for i, x in enumerate(values)]), {"fr-1": FRIDGE})
    assert [(op.op, op.signal.source) for op in out.ops] == [("raise", "detector"), ("clear", "detector")]
    raised = out.ops[0].signal
    assert raised.occurrences == 6 and raised.trigger_ts is not None and raised.trigger_ts.timestamp() == 180.0
    assert raised.message == "battery_v: a step far beyond any it has made"
    assert [a.ts for a in out.anomalies] == [60.0 * i for i in range(3, 9)]


def test_a_physically_impossible_value_is_anomalous_without_the_detector() -> None:
    scorer = _state_scorer()
    rows = [("fr-1", "temperature", 60.0, 5.0, 0, 60.5), ("fr-1", "temperature", 120.0, 95.0, 1, 120.5)]
    out = scorer.score(rows, {"fr-1": FRIDGE})
    assert [(a.ts, a.score) for a in out.anomalies] == [(120.0, 0.999)]
    assert out.ops[0].signal.details["onset"] == "impossible"


def test_alarms_of_one_device_close_together_form_one_incident() -> None:
    scorer = _state_scorer(group_window_s=1800.0)
    out = scorer.score(
        _rows("fr-1", "battery_v", [(60.0, 500.0)]) + _rows("fr-1", "temperature", [(120.0, 500.0)]),
        {"fr-1": FRIDGE},
    )
    raises = [op for op in out.ops if op.op == "raise"]
    assert [(op.signal.metric, op.joins) for op in raises] == [
        ("battery_v", None),
        ("temperature", ("fr-1", "battery_v", "detector")),
    ]
    later = scorer.score(_rows("fr-1", "door_open", [(60.0 + 3600.0, 500.0)]), {"fr-1": FRIDGE})
    assert [op.joins for op in later.ops if op.op == "raise"] == [None]  # an hour later: a new incident


def test_a_provinces_devices_going_silent_at_once_are_one_outage_incident() -> None:
    scorer = _scorer()
    devices = {f"fr-{i}": FRIDGE for i in range(5)}
    for device in devices:
        scorer.seed_silence(device, FRIDGE, 1000.0)
    ops = scorer.check_silent(1000.0 + 800.0, devices)
    assert len(ops) == 5
    leader = ops[0].key
    assert ops[0].joins is None and all(op.joins == leader for op in ops[1:])


def test_an_alarm_raised_again_and_again_is_flapping_and_stays_one_alarm_until_quiet() -> None:
    scorer = _state_scorer(anomaly_quiet_s=60.0, flap_count=3, flap_window_s=3600.0)
    points = []
    for burst in range(5):  # anomalous for a minute, quiet for two, five times
        start = 600.0 * burst
        points += [(start, 500.0), (start + 60.0, 5.0), (start + 180.0, 5.0)]
    out = scorer.score(_rows("fr-1", "battery_v", points), {"fr-1": FRIDGE})
    kinds = [(op.op, op.flapping) for op in out.ops]
    # The third raise within the window flags it; from then on it stays open and counts the bursts as occurrences.
    assert kinds == [("raise", False), ("clear", False), ("raise", False), ("clear", False), ("raise", True)]
    assert out.ops[-1].signal.occurrences == 3
    quiet = scorer.score(_rows("fr-1", "battery_v", [(2400.0 + 3500.0, 5.0), (2400.0 + 3600.0, 5.0)]), {"fr-1": FRIDGE})
    assert [op.op for op in quiet.ops] == ["clear"]  # a whole flap window after its last anomaly


def test_maintenance_suppresses_alarms_of_the_devices_it_covers_only() -> None:
    from analytics.maintenance import MaintenanceIndex, Window

    scorer = _state_scorer()
    other = DeviceInfo("vaccine_fridge", "ha-noi", "health")
    windows = MaintenanceIndex([Window(start=0.0, end=1000.0, province="can-tho")])
    out = scorer.score(
        _rows("fr-1", "battery_v", [(60.0, 500.0)]) + _rows("fr-2", "battery_v", [(60.0, 500.0)]),
        {"fr-1": FRIDGE, "fr-2": other},
        maintenance=windows,
    )
    assert [op.signal.device_id for op in out.ops if op.op == "raise"] == ["fr-2"]
    assert out.suppressed == 1
    assert len(out.anomalies) == 2  # readings and anomalies are recorded either way
    after = scorer.score(
        _rows("fr-1", "battery_v", [(1200.0, 5.0), (1260.0, 500.0)]), {"fr-1": FRIDGE}, maintenance=windows
    )
    assert [op.op for op in after.ops] == ["raise"]


def test_a_joint_break_blamed_on_a_metric_raises_its_detector_alarm() -> None:
    class Blamer:
        """A joint stand-in that blames `battery_v` for every row after the first."""

        def __init__(self, metrics: Sequence[str]) -> None:
            self.metrics = tuple(metrics)
            self.anomalous = False
            self.onset = "break"
            self.rows = 0

        @property
        def metric(self) -> str | None:
            return "battery_v" if self.anomalous else None

        def update(self, values: Sequence[float], ts: float) -> bool:
            self.rows += 1
            self.anomalous = self.rows > 1
            return self.anomalous

    scorer = StreamScorer(load_catalog(), JobConfig(), detector_factory=StateDetector, joint_factory=Blamer)
    rows = []
    for metric in ("battery_v", "compressor_on", "door_open", "mains_on", "temperature"):
        rows += _rows(
            "fr-1",
            metric,
            [(60.0, 4.0 if metric == "battery_v" else 1.0), (120.0, 4.0 if metric == "battery_v" else 1.0)],
        )
    rows.sort()
    out = scorer.score(rows, {"fr-1": FRIDGE})
    assert [(a.metric, a.ts, a.detector) for a in out.anomalies] == [("battery_v", 120.0, "joint")]
    [raised] = [op for op in out.ops if op.op == "raise"]
    assert (raised.signal.kind, raised.signal.metric) == ("joint", "battery_v")
    assert raised.signal.message == "battery_v: no longer follows the device's other metrics"


def test_precision_is_on_incidents_and_legitimate_rule_alarms_are_counted_apart() -> None:
    labels = [FaultLabel("a", "flow", "level_shift", 1000.0, 1600.0)]
    detections = [
        Detection(1, "a", "flow", "detector", "detector", 1010.0, None),
        Detection(2, "a", "pressure", "detector", "detector", 1020.0, None, incident_id=1),  # same incident
        Detection(3, "b", None, "rule", "silent", 5000.0, None),  # false
        Detection(4, "a", "pm2_5", "rule", "threshold_above@50", 9000.0, None),  # the fault-free twin has it too
    ]
    report = score_detections(labels, detections, tolerance_s=60.0, legitimate={4})
    assert (report["incidents"], report["false_incidents"], report["legitimate_incidents"]) == (2, 1, 1)
    assert report["precision"] == 0.5 and report["recall"] == 1.0
    assert report["per_kind"]["level_shift"]["precision"] == 1.0  # type: ignore[index]


def test_steps_the_catalog_calls_normal_reach_the_production_detector_and_raise_nothing() -> None:
    # A soil probe's moisture dries slowly, then is irrigated (+12 % at once): the catalog says upward steps are
    # normal for it, so the production detector starts no state; its temperature has no such declaration.
    from analytics.detector_state import new_detector

    probe = DeviceInfo("soil_probe", "can-tho", "agriculture")
    scorer = StreamScorer(load_catalog(), JobConfig(), detector_factory=new_detector)
    moisture = [(i * 900.0, round(30.0 - 0.01 * i + 0.15 * ((i * 7) % 5 - 2), 2)) for i in range(300)]
    irrigated = [(t, x + 12.0 if i >= 250 else x) for i, (t, x) in enumerate(moisture)]
    out = scorer.score(_rows("sp-1", "soil_moisture", irrigated), {"sp-1": probe})
    assert out.readings == 300
    assert out.anomalies == []
    series = scorer.series[("sp-1", "soil_moisture")].detector
    assert getattr(series, "fault").normal_step == 1  # noqa: B009 - the production detector's state
    heated = [(t, x + 12.0 if i >= 250 else x) for i, (t, x) in enumerate(moisture)]
    out = scorer.score(_rows("sp-1", "soil_temperature", heated), {"sp-1": probe})
    assert [a.ts for a in out.anomalies][:1] == [250 * 900.0]  # the same step on another metric is a fault
