"""The detector alarm policy: which anomalies raise alarms (all are still recorded), per series and per device."""

from __future__ import annotations

import pickle

import pytest

from analytics.alarm_policy import (
    DEFAULT_POLICY,
    EVERY_ANOMALY,
    DetectorAlarmGate,
    DetectorAlarmPolicy,
    device_gap_open,
)
from analytics.detector_state import dump_series_state, load_series_state
from analytics.scoring import DeviceInfo, JobConfig, StreamScorer
from core.settings import Settings
from devices.catalog import load_catalog
from store.analytics import FetchedReading

FRIDGE = DeviceInfo("vaccine_fridge", "can-tho", "health")


class ValueIsScore:
    """The reading's value is its score: tests say exactly which points are anomalous and how strongly."""

    def update(self, t: float, x: float) -> float:
        return x


def _scorer(policy: DetectorAlarmPolicy) -> StreamScorer:
    config = JobConfig(detector_threshold=0.5, detector_policy=policy)
    return StreamScorer(load_catalog(), config, detector_factory=ValueIsScore)


def _rows(device: str, metric: str, scores: list[float], *, t0: float = 0.0) -> list[FetchedReading]:
    return [(device, metric, t0 + 60.0 * i, s, 0, t0 + 60.0 * i + 0.5) for i, s in enumerate(scores)]


def _steps(policy: DetectorAlarmPolicy, scores: list[float], threshold: float = 0.5) -> list[bool]:
    gate = DetectorAlarmGate()
    return [gate.step(policy, score=s, anomalous=s >= threshold) for s in scores]


def test_every_anomaly_policy_admits_each_anomalous_point() -> None:
    assert _steps(EVERY_ANOMALY, [0.1, 0.6, 0.1, 0.9]) == [False, True, False, True]


def test_learning_points_raise_nothing_however_strange() -> None:
    policy = DetectorAlarmPolicy(learn_points=3, high_score=0.8)
    assert _steps(policy, [0.99, 0.99, 0.99, 0.99]) == [False, False, False, True]


def test_a_high_score_raises_at_once_and_a_lower_one_must_persist() -> None:
    policy = DetectorAlarmPolicy(high_score=0.85, persist_points=3, persist_window=5)
    # 0.7 is anomalous (≥ 0.5) but below the high bar: the third within five points raises.
    assert _steps(policy, [0.7, 0.1, 0.7, 0.1, 0.7]) == [False, False, False, False, True]
    # Spread wider than the window: never.
    assert _steps(policy, [0.7, 0.1, 0.1, 0.1, 0.1, 0.7, 0.1, 0.1, 0.1, 0.1, 0.7]) == [False] * 11
    assert _steps(policy, [0.1, 0.9]) == [False, True]


def test_zero_high_score_means_persistence_only() -> None:
    policy = DetectorAlarmPolicy(high_score=0.0, persist_points=2, persist_window=2)
    assert _steps(policy, [0.99, 0.1, 0.99, 0.99]) == [False, False, False, True]


def test_device_gap_is_reading_time_since_the_devices_last_detector_alarm() -> None:
    policy = DetectorAlarmPolicy(device_gap_s=600.0)
    assert device_gap_open(policy, last_raise_ts=None, ts=0.0)
    assert not device_gap_open(policy, last_raise_ts=1000.0, ts=1599.0)
    assert device_gap_open(policy, last_raise_ts=1000.0, ts=1600.0)


@pytest.mark.parametrize(
    "fields",
    [
        {"learn_points": -1},
        {"persist_points": 0},
        {"persist_points": 4, "persist_window": 3},
        {"persist_points": 1, "persist_window": 63},
        {"high_score": 1.5},
        {"device_gap_s": -1.0},
    ],
)
def test_impossible_policies_are_refused(fields: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        DetectorAlarmPolicy(**fields)  # type: ignore[arg-type]


def test_settings_defaults_are_the_default_policy() -> None:
    from analytics.runner import detector_policy

    assert detector_policy(Settings()) == DEFAULT_POLICY


def test_scorer_records_every_anomaly_but_raises_only_what_the_policy_admits() -> None:
    policy = DetectorAlarmPolicy(learn_points=2, high_score=0.9, persist_points=2, persist_window=3)
    scorer = _scorer(policy)
    # Learning (0.95 at the first point is ignored), lone 0.7s (no), then 0.7 twice in three points (raise).
    scores = [0.95, 0.1, 0.1, 0.7, 0.1, 0.1, 0.7, 0.7]
    out = scorer.score(_rows("fr-1", "battery_v", scores), {"fr-1": FRIDGE})
    assert [a.ts for a in out.anomalies] == [0.0, 180.0, 360.0, 420.0]
    raises = [op for op in out.ops if op.signal.source == "detector"]
    assert [(op.op, op.signal.trigger_ts.timestamp() if op.signal.trigger_ts else None) for op in raises] == [
        ("raise", 420.0)
    ]
    assert raises[0].signal.received_at is not None and raises[0].signal.received_at.timestamp() == 420.5


def test_once_an_alarm_is_open_further_anomalies_count_as_repeats() -> None:
    scorer = _scorer(DetectorAlarmPolicy(high_score=0.9, persist_points=3, persist_window=3))
    out = scorer.score(_rows("fr-1", "battery_v", [0.1, 0.95, 0.6, 0.1, 0.6]), {"fr-1": FRIDGE})
    raises = [op for op in out.ops if op.signal.source == "detector"]
    assert len(raises) == 1 and raises[0].signal.occurrences == 3  # 0.95 raised; both 0.6 count on it


def test_device_gap_holds_back_a_second_metric_of_the_same_device_but_not_another_device() -> None:
    scorer = _scorer(DetectorAlarmPolicy(high_score=0.9, device_gap_s=1800.0))
    rows = [
        *_rows("fr-1", "battery_v", [0.1, 0.95]),
        *_rows("fr-1", "temperature", [0.1, 0.1, 0.95]),  # 60 s after the first: held back
        *_rows("fr-2", "battery_v", [0.1, 0.95]),
    ]
    out = scorer.score(sorted(rows, key=lambda r: (r[0], r[1], r[2])), {"fr-1": FRIDGE, "fr-2": FRIDGE})
    raised = [(op.signal.device_id, op.signal.metric) for op in out.ops if op.signal.source == "detector"]
    assert raised == [("fr-1", "battery_v"), ("fr-2", "battery_v")]
    assert len(out.anomalies) == 3
    # Past the gap the other metric may raise.
    later = scorer.score(_rows("fr-1", "temperature", [0.95], t0=2000.0), {"fr-1": FRIDGE})
    assert [op.signal.metric for op in later.ops if op.signal.source == "detector"] == ["temperature"]


def test_the_gate_is_saved_with_the_series_state() -> None:
    policy = DetectorAlarmPolicy(learn_points=3, persist_points=2, persist_window=4)
    scorer = _scorer(policy)
    scorer.score(_rows("fr-1", "battery_v", [0.1, 0.1, 0.1, 0.6]), {"fr-1": FRIDGE})
    blob = dump_series_state(scorer.series[("fr-1", "battery_v")].saved_state())
    assert pickle.loads(blob)["gate"] == {"points": 4, "recent": 0b0001, "first_ts": 0.0}
    restored = _scorer(policy)
    restored.get_series("fr-1", "battery_v", FRIDGE, saved=load_series_state(blob))
    # Past learning, and the 0.6 before the restart counts towards persistence: this second one raises.
    out = restored.score(_rows("fr-1", "battery_v", [0.6], t0=240.0), {"fr-1": FRIDGE})
    assert [op.op for op in out.ops if op.signal.source == "detector"] == ["raise"]


# notification limits and maintenance windows -----------------------------------------------------------------


def test_notifications_are_limited_per_device_then_refill_with_time() -> None:
    from analytics.flood import NotificationLimiter, RateLimit

    limiter = NotificationLimiter(
        device=RateLimit(burst=2, per_hour=2), device_type=RateLimit(100, 100), province=RateLimit(100, 100)
    )
    events = [("d1", "pump_station", "can-tho")] * 4 + [("d2", "pump_station", "can-tho")]
    sent = limiter.admit(events, now=0.0, where=lambda e: e)
    assert sent == [("d1", "pump_station", "can-tho")] * 2 + [("d2", "pump_station", "can-tho")]
    assert limiter.held_back == 2
    assert limiter.admit([events[0]], now=1000.0, where=lambda e: e) == []  # 0.56 of a token back
    assert limiter.admit([events[0]], now=1800.0, where=lambda e: e) == [events[0]]  # half an hour: one more


def test_a_province_limit_holds_back_a_storm_of_many_devices() -> None:
    from analytics.flood import NotificationLimiter, RateLimit

    limiter = NotificationLimiter(province=RateLimit(burst=5, per_hour=10))
    events = [(f"d{i}", "weather_station", "ca-mau") for i in range(20)] + [("x", "weather_station", "ha-noi")]
    sent = limiter.admit(events, now=0.0, where=lambda e: e)
    assert len([e for e in sent if e[2] == "ca-mau"]) == 5 and ("x", "weather_station", "ha-noi") in sent
    assert limiter.held_back == 15


def test_maintenance_windows_cover_their_device_site_province_or_sector_while_they_last() -> None:
    from analytics.maintenance import MaintenanceIndex, Window
    from analytics.scoring import DeviceInfo

    pump = DeviceInfo("pump_station", "can-tho", "energy", site="station-7")
    fridge = DeviceInfo("vaccine_fridge", "can-tho", "health")
    index = MaintenanceIndex(
        [
            Window(start=100.0, end=200.0, device_id="p1"),
            Window(start=300.0, end=400.0, site="station-7", province="can-tho"),
            Window(start=500.0, end=600.0, province="can-tho", sector="health"),
        ]
    )
    assert len(index) == 3
    assert index.covers("p1", pump, 150.0) and not index.covers("p1", pump, 200.0)
    assert not index.covers("p2", pump, 150.0)
    assert index.covers("p2", pump, 350.0) and not index.covers("f1", fridge, 350.0)
    assert index.covers("f1", fridge, 550.0) and not index.covers("p1", pump, 550.0)
