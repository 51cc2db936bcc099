"""Faults that match the field: windows sized from each type's report interval and rules, a learning period
before any fault, faults only on signals that move, and joint faults that break a metric's relation to its
partner while staying inside its own range."""

from __future__ import annotations

from analytics.e2e import FaultLabel as ScoredLabel
from analytics.e2e import score_points
from bench.field_faults import SILENCE_OVER_RULE, STUCK_OVER_RULE, field_fault_spec
from devices.catalog import load_catalog
from firmware_sim.faults import JOINT_FAULTS, FaultKind, FaultLabel, FaultSpec, TypeFaults
from firmware_sim.firmware import FirmwareDevice, SimDevice
from firmware_sim.models import MODELS

START_MS = 1_793_466_000_000  # 2026-11-01 00:00 in Vietnam
DAY_MS = 86_400_000


def _run(
    device: SimDevice, spec: FaultSpec, *, days: float, seed: int = 3
) -> tuple[list[FaultLabel], dict[int, dict[str, float]], dict[int, dict[str, float]]]:
    """Labels, and the sent and the clean readings by sample time, of one device over `days`."""
    faulty = FirmwareDevice(device=device, seed=seed, start_ms=START_MS, faults=spec)
    clean = FirmwareDevice(device=device, seed=seed, start_ms=START_MS)
    labels: list[FaultLabel] = []
    sent: dict[int, dict[str, float]] = {}
    truth: dict[int, dict[str, float]] = {}
    while faulty.next_ms < START_MS + days * DAY_MS:
        ts = faulty.next_ms
        sample = faulty.step()
        truth[ts] = dict(clean.step().messages[0].readings)
        labels += sample.labels
        for message in sample.messages:
            sent[message.ts_ms] = dict(message.readings)
    labels += faulty.finish().labels
    return labels, sent, truth


def test_field_windows_follow_each_types_report_interval_and_rules() -> None:
    catalog = load_catalog()
    spec = field_fault_spec(catalog)
    soil = catalog.get("soil_probe")
    assert soil is not None
    stuck_rule = min(r.duration_s for r in soil.rules if r.kind == "stuck")
    silent_rule = next(r.duration_s for r in soil.rules if r.kind == "silent")
    interval_ms = round(soil.report_interval_s * 1000)
    lo, hi = spec.window("stuck", "soil_probe", interval_ms=interval_ms)
    assert lo * soil.report_interval_s >= STUCK_OVER_RULE[0] * stuck_rule > stuck_rule  # outlasts its rule
    assert hi * soil.report_interval_s >= STUCK_OVER_RULE[1] * stuck_rule
    lo, _ = spec.window("dropout", "soil_probe", interval_ms=interval_ms)
    assert lo * soil.report_interval_s >= SILENCE_OVER_RULE[0] * silent_rule > silent_rule
    # Per-report probabilities follow the interval: the same expected faults per device-day for every type.
    pump = catalog.get("pump_station")
    assert pump is not None
    per_day = {
        code: spec.probability("spike", code) * 86_400 / catalog.get(code).report_interval_s  # type: ignore[union-attr]
        for code in ("soil_probe", "pump_station")
    }
    assert abs(per_day["soil_probe"] - per_day["pump_station"]) < 1e-9


def test_no_fault_starts_before_the_learning_period_ends() -> None:
    spec = FaultSpec(
        probabilities={"spike": 0.05, "dropout": 0.01, "correlation_break": 0.05}, start_after_ms=START_MS + DAY_MS
    )
    device = SimDevice("pump-1", "pump_station", "can-tho", "energy")
    labels, _, _ = _run(device, spec, days=2.0)
    assert labels and min(label.start_ms for label in labels) >= START_MS + DAY_MS


def test_a_dropout_of_a_type_with_a_silent_rule_outlasts_it() -> None:
    catalog = load_catalog()
    spec = field_fault_spec(catalog, rates_per_day={"dropout": 6.0})
    device = SimDevice("fridge-1", "vaccine_fridge", "can-tho", "health")
    labels, sent, _ = _run(device, spec, days=2.0)
    rule_s = next(r.duration_s for r in catalog.get("vaccine_fridge").rules if r.kind == "silent")  # type: ignore[union-attr]
    dropouts = [label for label in labels if label.kind == "dropout"]
    assert dropouts
    for label in dropouts:
        assert (label.end_ms - label.start_ms) / 1000 + 300 >= SILENCE_OVER_RULE[0] * rule_s
        assert not [ts for ts in sent if label.start_ms <= ts <= label.end_ms]


def test_value_faults_start_only_on_signals_that_move() -> None:
    # A weather station's rain gauge reads 0 most of the time: no fault starts on it then.
    spec = FaultSpec(probabilities={"stuck": 0.02, "spike": 0.02, "level_shift": 0.02})
    device = SimDevice("ws-1", "weather_station", "can-tho", "agriculture")
    labels, _, truth = _run(device, spec, days=2.0)
    times = sorted(truth)
    assert labels
    for label in labels:
        # The signal had just moved: its true value at the start differs from the one before.
        previous = [t for t in times if t < label.start_ms][-1]
        assert truth[previous][label.metric] != truth[label.start_ms][label.metric], label


def test_joint_faults_break_the_relation_of_a_metric_to_its_partner_only() -> None:
    spec = FaultSpec(probabilities=dict.fromkeys(JOINT_FAULTS, 0.01))
    device = SimDevice("pump-2", "pump_station", "can-tho", "energy")
    labels, sent, truth = _run(device, spec, days=2.0, seed=5)
    kinds: set[FaultKind] = {label.kind for label in labels}
    assert kinds == set(JOINT_FAULTS)
    related = dict(MODELS["pump_station"].related)
    for label in labels:
        assert label.params["partner"] == related[label.metric]
        window = [ts for ts in sent if label.start_ms <= ts <= label.end_ms]
        assert len(window) == label.params["samples"]
        changed = [ts for ts in window if sent[ts][label.metric] != truth[ts][label.metric]]
        assert changed  # the metric left its relation ...
        for ts in window:  # ... and nothing else did, but for metrics with a fault of their own then
            others = {o.metric for o in labels if o is not label and o.start_ms <= ts <= o.end_ms}
            assert all(sent[ts][m] == truth[ts][m] for m in sent[ts] if m != label.metric and m not in others)
        if label.kind == "correlation_break":
            factor = float(label.params["factor"])  # type: ignore[arg-type]
            assert 0.4 <= factor <= 1.6 and factor != 1.0


def test_a_type_can_be_given_its_own_windows_in_seconds() -> None:
    spec = FaultSpec(per_type={"soil_probe": TypeFaults(durations_s={"stuck": (7200.0, 9000.0)})})
    assert spec.window("stuck", "soil_probe", interval_ms=900_000) == (8, 10)
    assert spec.window("stuck", "pump_station", interval_ms=60_000) == spec.window("stuck")


def test_point_wise_scoring_counts_the_anomalous_state_against_labelled_spans() -> None:
    labels = [
        ScoredLabel("d1", "flow", "level_shift", 100.0, 130.0),
        ScoredLabel("d2", None, "dropout", 100.0, 200.0),  # no readings: scored on incidents only
    ]
    readings = [("d1", "flow", float(t)) for t in range(90, 150, 10)] + [("d1", "pressure", 110.0)]
    flagged = {("d1", "flow", 110.0), ("d1", "flow", 120.0), ("d1", "flow", 130.0), ("d1", "flow", 140.0)}
    report = score_points(labels, flagged=flagged, readings=readings)
    assert (report["tp"], report["fp"], report["fn"]) == (3, 1, 1)
    assert report["f1"] == 2 * 3 / (2 * 3 + 1 + 1)
    per_kind = report["per_kind"]
    assert isinstance(per_kind, dict) and set(per_kind) == {"level_shift"}
