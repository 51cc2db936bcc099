"""Joint detection of a device's metrics: a broken relation is found and blamed on the metric that left it; the
device's normal life (including metrics no other predicts) is quiet; state persists."""

from __future__ import annotations

import json
import math
import random

import pytest

from analytics.detectors.joint import JointConfig, JointDetector, joint_metrics

METRICS = ("pressure", "flow", "current", "door")


def _rows(n: int, *, seed: int = 5) -> list[tuple[float, list[float]]]:
    """A pump: speed wanders; pressure, flow and current follow it; a door switch follows nothing."""
    rng = random.Random(seed)
    speed = 0.9
    rows = []
    for i in range(n):
        speed += 0.05 * (0.9 - speed) + rng.gauss(0.0, 0.01) + 0.02 * math.sin(i / 50.0)
        rows.append(
            (
                1e9 + 60.0 * i,
                [
                    4.0 * speed * speed + rng.gauss(0.0, 0.01),
                    1200.0 * speed + rng.gauss(0.0, 3.0),
                    100.0 * (0.25 + 0.75 * speed**3) + rng.gauss(0.0, 0.3),
                    float(rng.random() < 0.05),
                ],
            )
        )
    return rows


def _run(detector: JointDetector, rows: list[tuple[float, list[float]]]) -> list[tuple[bool, str | None]]:
    return [(detector.update(values, ts), detector.metric) for ts, values in rows]


def test_flow_dropping_while_pressure_and_current_hold_is_a_break_blamed_on_flow() -> None:
    rows = _rows(800)
    for i in range(600, 630):
        rows[i][1][1] *= 0.75  # a quarter of the flow gone, pressure and current as before
    out = _run(JointDetector(METRICS), rows)
    assert out[600] == (True, "flow")
    assert all(state for state, _ in out[600:630])
    assert not any(state for state, _ in out[635:])
    assert not any(state for state, _ in out[:600])


def test_a_metric_no_other_predicts_is_never_blamed() -> None:
    rows = _rows(800)
    for i in range(600, 620):
        rows[i][1][3] = 1.0  # the door stays open: a state, related to nothing
    out = _run(JointDetector(METRICS), rows)
    assert not any(state for state, _ in out[100:])


def test_nothing_is_anomalous_while_the_relations_are_first_learnt() -> None:
    rows = _rows(90)
    rows[60][1][1] *= 0.5
    assert not any(state for state, _ in _run(JointDetector(METRICS), rows))


def test_rows_with_a_missing_metric_are_skipped() -> None:
    detector = JointDetector(METRICS)
    for ts, values in _rows(300):
        detector.update(values, ts)
    rows_before = detector.rows
    assert detector.update([1.0, math.nan, 2.0, 0.0], 2e9) is False
    assert detector.rows == rows_before
    with pytest.raises(ValueError, match="expected 4 values"):
        detector.update([1.0, 2.0], 2e9)


@pytest.mark.parametrize("method", ["regression", "pca"])
def test_state_round_trips_through_json_and_continues_identically(method: str) -> None:
    rows = _rows(900)
    for i in range(700, 720):
        rows[i][1][0] *= 1.3
    config = JointConfig(method=method)  # type: ignore[arg-type]
    reference = JointDetector(METRICS, config)
    _run(reference, rows[:500])
    restored = JointDetector.from_state(json.loads(json.dumps(reference.state_dict())), config)
    assert _run(restored, rows[500:]) == _run(reference, rows[500:])


def test_joint_metric_sets_are_the_catalog_groups_or_else_all_metrics() -> None:
    groups = {"a": "g1", "b": "g1", "c": None, "d": "g2", "e": "g2", "f": "lonely"}
    assert joint_metrics(["a", "b", "c", "d", "e", "f"], groups) == [("a", "b"), ("d", "e")]
    assert joint_metrics(["x", "y", "z"], {"x": None, "y": None, "z": None}) == [("x", "y", "z")]
    assert joint_metrics(["x"], {"x": None}) == []
