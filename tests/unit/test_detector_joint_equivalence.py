"""The joint detector's per-row work in plain floats detects exactly what its numpy form did: on long synthetic
devices with breaks, leaks, faults that outlast the anomalous state, idle metrics, missing values and gaps, every
row gives the same state, onset and blamed metric, and the same surprise within rounding (a dot product summed in
another order; numpy's own sum order depends on the BLAS build). A state saved by the numpy form continues the
same in the new one."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from analytics.detectors.joint import JointConfig, JointDetector
from tests.unit.joint_numpy_reference import NumpyJointDetector

REL_TOL = 1e-9

Row = tuple[float, list[float]]


def _device(n: int, *, d: int, seed: int) -> list[Row]:
    """`d` metrics driven by two wandering factors (one of them may be a door-like switch or a sensor that sits
    still for a while), read about once a minute with jitter, a few missing values and a few hours-long gaps;
    with faults of every shape the joint detector answers to."""
    rng = random.Random(seed)
    gains = [(rng.uniform(0.5, 3.0), rng.uniform(-1.0, 1.0), rng.uniform(-50.0, 50.0)) for _ in range(d)]
    noise = [rng.uniform(0.002, 0.05) * abs(g[0]) for g in gains]
    a = b = 0.0
    ts = 1.7e9
    rows: list[Row] = []
    for i in range(n):
        a += 0.05 * -a + rng.gauss(0.0, 0.1) + 0.03 * math.sin(i / 70.0)
        b += 0.02 * -b + rng.gauss(0.0, 0.05)
        values = [g0 * a + g1 * b + c + rng.gauss(0.0, s) for (g0, g1, c), s in zip(gains, noise, strict=True)]
        if d >= 4:
            values[-1] = float(rng.random() < 0.05)  # a switch: two values, never blamed
        ts += 60.0 + rng.uniform(-5.0, 5.0)
        if rng.random() < 0.002:
            ts += rng.uniform(3_600.0, 20_000.0)  # the device was away
        rows.append((ts, values))
    faults: list[tuple[int, int, Callable[[int, float], float]]] = [
        (1_500, 40, lambda i, v: v * 0.7 - 3.0),  # a break
        (3_000, 250, lambda i, v: v + 0.004 * i * (abs(v) + 1.0)),  # a leak
        (5_000, 450, lambda i, v: v + 5.0 * (abs(v) + 1.0)),  # outlasts the state: the new normal
        (7_000, 120, lambda i, v: 1.25),  # stuck on a value
    ]
    for start, length, fault in faults:
        k = rng.randrange(d - 1 if d >= 4 else d)
        for i in range(length):
            if start + i < n:
                row = rows[start + i][1]
                row[k] = fault(i, row[k])
    for i in range(8_000, min(n, 8_300)):
        rows[i][1][0] = 42.0  # a metric that does not vary for a while cannot be watched
    for _ in range(n // 500):
        rows[rng.randrange(n)][1][rng.randrange(d)] = math.nan
    return rows


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= REL_TOL * max(1.0, abs(b))


def _same_state(new: Mapping[str, Any], old: Mapping[str, Any]) -> None:
    assert new.keys() == old.keys()
    for key, value in old.items():
        if isinstance(value, float):
            assert _close(new[key], value), key
        elif isinstance(value, list) and value and isinstance(value[0], (list, float)):
            flat_new = json.loads(json.dumps(new[key]))
            assert _flatten(flat_new) == pytest.approx(_flatten(value), rel=REL_TOL, abs=REL_TOL), key
        else:
            assert new[key] == value, key


def _flatten(values: Sequence[Any]) -> list[float]:
    out: list[float] = []
    for v in values:
        out.extend(_flatten(v) if isinstance(v, list) else [float(v)])
    return out


def _compare(new: JointDetector, old: NumpyJointDetector, rows: Sequence[Row]) -> list[tuple[bool, str, str | None]]:
    """Feed both the rows; assert they agree row by row; return the reference's (state, onset, blamed)."""
    seen = []
    for i, (ts, values) in enumerate(rows):
        expected = old.update(values, ts)
        assert new.update(values, ts) is expected, i
        assert (new.onset, new.metric, new.rows, new.recent) == (old.onset, old.metric, old.rows, old.recent), i
        assert all(_close(z, float(o)) for z, o in zip(new.z, old.z, strict=True)), (i, new.z, old.z)
        assert _close(new.ratio, old.ratio), i
        seen.append((expected, old.onset, old.metric))
    _same_state(new.state_dict(), old.state_dict())
    return seen


CASES = [(d, seed, method) for d, seed in ((2, 1), (3, 2), (4, 3), (6, 4), (5, 5)) for method in ("regression", "pca")]


@pytest.mark.parametrize(("d", "seed", "method"), CASES)
def test_every_row_gives_the_numpy_form_s_state_onset_blame_and_surprise(d: int, seed: int, method: str) -> None:
    metrics = [f"m{k}" for k in range(d)]
    config = JointConfig(method=method)  # type: ignore[arg-type]
    seen = _compare(JointDetector(metrics, config), NumpyJointDetector(metrics, config), _device(9_000, d=d, seed=seed))
    # Not a quiet run: the faults start states (the comparison covers onsets, holds and ends).
    assert any(now and not before for (now, _, _), (before, _, _) in zip(seen[1:], seen, strict=False))
    assert not seen[-1][0]


def test_both_kinds_of_onset_and_a_fault_that_becomes_normal_are_covered() -> None:
    """The cases above exercise `break` and `leak` onsets and the end of a state that lasted too long."""
    kinds: set[str] = set()
    longest = 0
    for d, seed, method in CASES[2:4]:
        metrics = [f"m{k}" for k in range(d)]
        config = JointConfig(method=method)  # type: ignore[arg-type]
        old = NumpyJointDetector(metrics, config)
        run = 0
        for ts, values in _device(9_000, d=d, seed=seed):
            if old.update(values, ts):
                kinds.add(old.onset)
                run += 1
                longest = max(longest, run)
            else:
                run = 0
    assert kinds == {"break", "leak"}
    assert longest >= JointConfig().max_anomalous_rows  # held until the limit, then learnt as normal


@pytest.mark.parametrize("method", ["regression", "pca"])
def test_a_state_saved_by_the_numpy_form_continues_identically(method: str) -> None:
    rows = _device(6_000, d=4, seed=9)
    metrics = ["a", "b", "c", "d"]
    config = JointConfig(method=method)  # type: ignore[arg-type]
    old = NumpyJointDetector(metrics, config)
    for ts, values in rows[:2_500]:
        old.update(values, ts)
    saved = json.loads(json.dumps(old.state_dict()))
    restored_old = NumpyJointDetector.from_state(saved, config)
    _compare(JointDetector.from_state(saved, config), restored_old, rows[2_500:])
