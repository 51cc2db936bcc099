"""The per-series anomalous state (`is_anomaly`): on at a fault's onset, on while it lasts, off once the series is
back; quiet on a series' normal life, however jumpy that is."""

from __future__ import annotations

import json
import math
import random

from analytics.detectors import UnivariateDetector
from analytics.detectors.fault_state import FaultState


def _noisy(n: int, *, seed: int = 3, level: float = 20.0, sigma: float = 0.5) -> list[float]:
    rng = random.Random(seed)
    return [round(level + 2.0 * math.sin(i / 40.0) + rng.gauss(0.0, sigma), 2) for i in range(n)]


def _states(values: list[float]) -> list[bool]:
    state = FaultState()
    return [state.update(x) for x in values]


def test_a_spike_is_anomalous_for_its_one_reading() -> None:
    values = _noisy(400)
    values[300] += 30.0
    states = _states(values)
    assert states[300] and not states[299] and not states[301]
    assert sum(states) == 1


def test_a_level_shift_stays_anomalous_while_it_lasts_and_ends_with_it() -> None:
    values = _noisy(500)
    for i in range(300, 330):
        values[i] += 15.0
    states = _states(values)
    assert all(states[300:330])
    assert not any(states[332:])
    assert not any(states[:300])


def test_a_stuck_sensor_is_anomalous_from_its_second_repeat_until_it_moves_again() -> None:
    values = _noisy(500)
    for i in range(300, 340):
        values[i] = values[300]
    states = _states(values)
    assert not states[300]  # the first stuck reading is the true value
    first = states.index(True)
    assert 301 <= first <= 304  # as soon as that many repeats are improbable for this series
    assert all(states[first:340])
    assert not any(states[341:])


def test_a_noise_burst_is_volatile_until_calm() -> None:
    rng = random.Random(9)
    values = _noisy(500)
    for i in range(300, 315):
        values[i] += rng.choice((-1.0, 1.0)) * rng.uniform(6.0, 9.0)
    state = FaultState()
    states = [state.update(x) for x in values]
    assert any(states[300:315])
    assert not any(states[320:])
    onsets = [i for i in range(1, len(states)) if states[i] and not states[i - 1]]
    assert onsets and all(300 <= i < 316 for i in onsets)


def test_a_pump_switching_on_and_off_is_normal() -> None:
    rng = random.Random(4)
    pump: list[float] = []
    for cycle in range(40):  # on for 25 readings at ~800, off for 15 to 19 at exactly 0
        pump += [round(800.0 * rng.uniform(0.97, 1.03), 1) for _ in range(25)] + [0.0] * (15 + cycle % 5)
    assert not any(_states(pump)[200:])


def test_repeats_while_the_whole_device_rests_are_a_rest_not_a_stuck_sensor() -> None:
    state = FaultState()
    states = []
    for day in range(3):  # a bus's latitude: moving all day, parked all night wherever it stopped
        moving = [round(10.77 + 0.01 * math.sin((600 * day + i) / 9.0), 6) for i in range(600)]
        states += [state.update(x) for x in moving]
        states += [state.update(moving[-1], resting=True) for _ in range(400)]
    assert not any(states)
    alone = FaultState()  # the same series, frozen while the rest of its device moves on: stuck
    moving = [round(10.77 + 0.01 * math.sin(i / 9.0), 6) for i in range(600)]
    frozen = [alone.update(x) for x in moving] + [alone.update(moving[-1]) for _ in range(10)]
    assert not any(frozen[:601]) and all(frozen[605:])


def test_a_value_the_series_saturates_at_again_is_a_rest_after_the_first_time() -> None:
    # Relative humidity: two days below saturation, then nights capped at exactly 98 %. The first capped night is
    # unlike anything learnt (stuck); a series that comes back to exactly the same value rests there.
    rng = random.Random(5)
    state = FaultState()
    flagged = []
    for day in range(5):
        swing = 8.0 if day < 2 else 14.0
        values = [
            min(98.0, round(86.0 + swing * math.sin(2 * math.pi * i / 300) + rng.gauss(0.0, 0.4), 1))
            for i in range(300)
        ]
        flagged.append(sum(state.update(x) for x in values))
    assert flagged[:2] == [0, 0]
    assert flagged[2] > 0
    assert flagged[3:] == [0, 0]


def test_repeats_made_while_the_device_rested_do_not_count_toward_a_stuck_run() -> None:
    state = FaultState()
    moving = _noisy(400)
    for x in moving:
        state.update(x)
    # The whole device rests on this value for a while, then the others move on while this one stays.
    rested = [state.update(moving[-1], resting=True) for _ in range(50)]
    alone = [state.update(moving[-1]) for _ in range(10)]
    assert not any(rested)
    # 50 rested repeats are not 50 stuck ones: the run counts from when the device moved on without this series.
    first = alone.index(True)
    assert first >= 2
    assert all(alone[first:])


def test_a_daily_counter_reset_is_not_a_fault() -> None:
    register: list[float] = []
    total = 0.0
    for _day in range(4):
        total = 0.0
        for _ in range(200):
            total += random.Random(len(register)).uniform(0.5, 1.5)
            register.append(round(total, 3))
    assert not any(_states(register)[150:])


def test_a_binary_series_taking_a_third_value_is_a_new_state() -> None:
    values = [float(i % 7 == 0) for i in range(700)] + [0.5, 0.0, 1.0]
    states = _states(values)
    assert states[700] and not states[701] and not states[702]
    assert not any(states[:700])


def test_nothing_is_anomalous_while_the_series_first_learns() -> None:
    values = _noisy(90)
    values[50] += 100.0
    assert not any(_states(values))


def test_state_round_trips_through_json_and_continues_identically() -> None:
    values = _noisy(600)
    values[450] += 40.0
    reference = FaultState()
    for x in values[:400]:
        reference.update(x)
    restored = FaultState.from_state(json.loads(json.dumps(reference.state_dict())))
    assert [restored.update(x) for x in values[400:]] == [reference.update(x) for x in values[400:]]


def test_the_univariate_detector_reports_the_state_beside_its_score() -> None:
    values = _noisy(600)
    for i in range(400, 420):
        values[i] += 20.0
    detector = UnivariateDetector()
    out = [(detector.update(1e9 + 60.0 * i, x), detector.anomalous) for i, x in enumerate(values)]
    assert all(state for _, state in out[400:420])
    assert not any(state for _, state in out[425:])
    assert max(score for score, _ in out[400:420]) >= detector.threshold


def test_a_state_saved_before_a_field_was_added_loads_with_that_field_fresh() -> None:
    state = FaultState()
    for x in _noisy(300):
        state.update(x)
    saved = state.state_dict()
    del saved["run_rested"]  # saved by the version before repeats while resting were counted apart
    restored = FaultState.from_state(json.loads(json.dumps(saved)))
    assert restored.run_rested == 0
    assert restored.state_dict() == state.state_dict()


def _drifted(values: list[float], *, start: int, end: int, total: float) -> list[float]:
    out = list(values)
    for i in range(start, end):
        out[i] = round(out[i] + total * (i - start + 1) / (end - start), 2)
    return out


def test_the_step_back_at_the_end_of_a_drift_is_one_anomalous_reading_not_a_new_fault() -> None:
    # A slow drift the state may not hold; when it ends the reading snaps back to the series' own level. That step
    # is the fault ending: at most its one reading is anomalous, the normal readings after it are not.
    values = _drifted(_noisy(600), start=300, end=340, total=-7.0)
    states = _states(values)
    assert not any(states[:300])
    assert sum(states[340:342]) <= 1
    assert not any(states[342:])


def test_steps_the_type_calls_normal_start_no_state_and_the_other_direction_still_does() -> None:
    # An oxygen tank refilled over 30 readings: its level climbs in large steps, then is drawn down again.
    rng = random.Random(4)
    values = [round(60.0 - 0.05 * i + rng.gauss(0.0, 0.02), 2) for i in range(400)]
    for i in range(300, 330):
        values[i:] = [v + 2.3 for v in values[i:]]
    for i in range(300, 400):
        values[i] = round(values[i], 2)
    declared = FaultState()
    declared.normal_step = 1
    assert not any(declared.update(x) for x in values)
    assert declared.hi > 100.0  # the refilled level is learnt as normal
    undeclared = FaultState()
    assert any(undeclared.update(x) for x in values)
    # A sudden drop is still a fault for the declared series.
    assert declared.update(values[-1] - 30.0)


def test_a_step_across_missing_readings_starts_no_state() -> None:
    values = _noisy(400)
    after_gap = [*values[:300], *[v + 8.0 for v in values[300:]]]
    times = [60.0 * i for i in range(300)] + [60.0 * (i + 12) for i in range(300, 400)]  # 12 readings lost
    state = FaultState()
    assert not any(state.update(x, t=t) for x, t in zip(after_gap, times, strict=True))
    without_gap = FaultState()
    assert any(without_gap.update(x, t=60.0 * i) for i, x in enumerate(after_gap))


def test_a_series_resting_only_at_zero_is_stuck_on_another_value_in_a_few_readings() -> None:
    # A pump: off (0.0) for long runs, running at a noisy current in between. Stuck while running is a fault.
    rng = random.Random(5)
    values: list[float] = []
    while len(values) < 600:
        values += [0.0] * 30 + [round(110.0 + rng.gauss(0.0, 3.0), 1) for _ in range(40)]
    stuck_at = next(i for i in range(500, 600) if values[i] > 0.0 and values[i + 12] > 0.0)
    for i in range(stuck_at, stuck_at + 12):
        values[i] = values[stuck_at]
    states = _states(values[: stuck_at + 12])
    assert not any(states[:stuck_at])
    assert any(states[stuck_at : stuck_at + 6])


def test_noise_that_begins_with_a_jump_stays_anomalous_as_volatile() -> None:
    rng = random.Random(11)
    values = _noisy(500)
    values[300] += 12.0
    for i in range(301, 315):
        values[i] += rng.choice((-1.0, 1.0)) * rng.uniform(6.0, 9.0)
    state = FaultState()
    states = [state.update(x) for x in values]
    assert states[300]
    assert sum(states[300:315]) >= 12
    assert not any(states[320:])
