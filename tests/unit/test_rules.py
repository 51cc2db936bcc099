"""The rule evaluator: thresholds with a minimum duration, rate of change, stuck-at, silence, low battery."""

from __future__ import annotations

from analytics.rules import DeviceSilence, RuleEngine, SeriesRules, rule_cause
from devices.catalog import RuleSpec, load_catalog

MIN = 60.0


def _rule(
    kind: str, metric: str | None = "temperature", value: float | None = None, duration_s: float = 0.0
) -> RuleSpec:
    return RuleSpec(kind=kind, metric=metric, value=value, duration_s=duration_s, severity="major", message=kind)  # type: ignore[arg-type]


def _run(series: SeriesRules, points: list[tuple[float, float]]) -> list[tuple[float, str, str]]:
    return [(e.ts, e.cause, e.state) for t, x in points for e in series.step(t, x)]


def test_fridge_above_8_for_10_minutes_hits_only_after_the_duration_and_clears_when_it_ends() -> None:
    series = SeriesRules("fr-1", "temperature", [_rule("threshold_above", value=8.0, duration_s=600)])
    temps = [5.0, 9.0, 9.5, 9.0, 8.5, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 6.0, 5.0]
    events = [e for i, x in enumerate(temps) for e in series.step(i * MIN, x)]
    assert [(e.ts, e.state) for e in events] == [(11 * MIN, "hit"), (12 * MIN, "ongoing"), (13 * MIN, "clear")]
    hit = events[0]
    assert hit.since == 1 * MIN  # the condition began at the first warm reading: the alarm's first reading
    assert hit.cause == "threshold_above@8"
    assert events[2].since == 1 * MIN


def test_a_dip_below_the_threshold_restarts_the_duration() -> None:
    series = SeriesRules("fr-1", "temperature", [_rule("threshold_above", value=8.0, duration_s=600)])
    points = [(i * MIN, 9.0) for i in range(9)] + [(9 * MIN, 7.9)] + [((10 + i) * MIN, 9.0) for i in range(11)]
    events = _run(series, points)
    assert events == [(20 * MIN, "threshold_above@8", "hit")]


def test_threshold_below_and_zero_duration() -> None:
    series = SeriesRules("w-1", "rainfall", [_rule("threshold_above", metric="rainfall", value=25.0)])
    assert _run(series, [(0, 10.0), (60, 30.0), (120, 31.0), (180, 1.0)]) == [
        (60, "threshold_above@25", "hit"),
        (120, "threshold_above@25", "ongoing"),
        (180, "threshold_above@25", "clear"),
    ]
    low = SeriesRules("fr-1", "temperature", [_rule("threshold_below", value=2.0, duration_s=120)])
    assert _run(low, [(0, 1.0), (60, 1.5), (120, 1.9), (180, 2.0)]) == [
        (120, "threshold_below@2", "hit"),
        (180, "threshold_below@2", "clear"),
    ]


def test_low_battery_is_a_sustained_low_voltage() -> None:
    series = SeriesRules("s-1", "battery_v", [_rule("low_battery", metric="battery_v", value=3.4, duration_s=3600)])
    points = [(i * 600.0, 3.3) for i in range(8)] + [(8 * 600.0, 3.7)]
    assert _run(series, points) == [
        (3600.0, "low_battery@3.4", "hit"),
        (4200.0, "low_battery@3.4", "ongoing"),
        (4800.0, "low_battery@3.4", "clear"),
    ]


def test_rate_of_change_sees_a_rise_or_a_fall_within_the_window_only() -> None:
    series = SeriesRules(
        "g-1", "water_level", [_rule("rate_of_change", metric="water_level", value=0.5, duration_s=3600)]
    )
    # A slow rise of 0.1 per 30 min never moves 0.5 within an hour; a jump does; calm clears once the window passes.
    slow = [(i * 1800.0, 1.0 + 0.1 * i) for i in range(10)]
    assert _run(series, slow) == []
    jump = [(10 * 1800.0, 1.9), (10 * 1800.0 + 600, 2.6)]
    assert _run(series, jump) == [(10 * 1800.0 + 600, "rate_of_change@0.5", "hit")]
    later = [(10 * 1800.0 + 600 + 3700, 2.6)]
    assert _run(series, later) == [(10 * 1800.0 + 4300, "rate_of_change@0.5", "clear")]
    fall = SeriesRules(
        "g-2", "water_level", [_rule("rate_of_change", metric="water_level", value=0.5, duration_s=3600)]
    )
    assert _run(fall, [(0.0, 3.0), (600.0, 2.4)]) == [(600.0, "rate_of_change@0.5", "hit")]


def test_stuck_exact_and_with_tolerance() -> None:
    exact = SeriesRules("s-1", "soil_moisture", [_rule("stuck", metric="soil_moisture", duration_s=3600)])
    points = [(i * 900.0, 31.2) for i in range(6)] + [(6 * 900.0, 31.3)]
    assert _run(exact, points) == [
        (3600.0, "stuck", "hit"),
        (4500.0, "stuck", "ongoing"),
        (5400.0, "stuck", "clear"),
    ]
    tolerant = SeriesRules(
        "s-2", "soil_moisture", [_rule("stuck", metric="soil_moisture", value=0.05, duration_s=1800)]
    )
    assert _run(tolerant, [(0.0, 31.20), (900.0, 31.23), (1800.0, 31.21), (2700.0, 32.0)]) == [
        (1800.0, "stuck@0.05", "hit"),
        (2700.0, "stuck@0.05", "clear"),
    ]


def test_late_readings_are_ignored_by_the_series() -> None:
    series = SeriesRules("fr-1", "temperature", [_rule("threshold_above", value=8.0, duration_s=0)])
    assert _run(series, [(100.0, 5.0)]) == []
    assert series.step(50.0, 20.0) == ()  # older than what the series has seen
    assert series.step(100.0, 20.0) == ()  # a duplicate
    assert _run(series, [(160.0, 9.0)]) == [(160.0, "threshold_above@8", "hit")]


def test_silence_is_judged_against_the_clock_and_ends_with_the_next_reading() -> None:
    silence = DeviceSilence("fr-1", _rule("silent", metric=None, duration_s=900))
    assert silence.check(10_000.0) is None  # never seen: nothing to say
    assert silence.seen(1000.0) is None
    assert silence.check(1900.0) is None
    hit = silence.check(1900.5)
    assert hit is not None and (hit.state, hit.since, hit.ts, hit.metric) == ("hit", 1000.0, 1900.5, None)
    assert silence.check(5000.0) is None  # one hit per silence
    back = silence.seen(5100.0)
    assert back is not None and back.state == "clear"
    assert silence.seen(5200.0) is None


def test_state_survives_a_dump_and_load() -> None:
    rules = [
        _rule("threshold_above", value=8.0, duration_s=600),
        _rule("rate_of_change", value=3.0, duration_s=600),
        _rule("stuck", duration_s=3600),
    ]
    first = SeriesRules("fr-1", "temperature", rules)
    _run(first, [(i * MIN, 9.0) for i in range(6)])
    restored = SeriesRules("fr-1", "temperature", rules)
    restored.load(first.dump())
    tail = [((6 + i) * MIN, 9.0) for i in range(6)]
    expected = _run(first, tail)
    assert _run(restored, tail) == expected
    assert ("threshold_above@8", "hit") in [(c, s) for _, c, s in expected]


def test_engine_builds_rules_from_the_catalog() -> None:
    engine = RuleEngine(load_catalog())
    temps = [(i * 300.0, 9.0) for i in range(4)]
    events = [
        e
        for t, x in temps
        for e in engine.observe(device_id="fr-9", type_code="vaccine_fridge", metric="temperature", ts=t, value=x)
    ]
    assert [(e.ts, e.cause, e.state) for e in events] == [
        (600.0, "threshold_above@8", "hit"),
        (900.0, "threshold_above@8", "ongoing"),
    ]
    assert engine.check_silent(900.0 + 900.0) == []
    silent = engine.check_silent(900.0 + 901.0)
    assert [(e.device_id, e.cause, e.rule.severity) for e in silent] == [("fr-9", "silent", "major")]


def test_two_thresholds_on_one_metric_are_two_causes() -> None:
    dtype = load_catalog().get("weather_station")
    assert dtype is not None
    causes = sorted(rule_cause(r) for r in dtype.rules_for("wind_speed"))
    assert causes == ["threshold_above@17.2", "threshold_above@32.7"]
