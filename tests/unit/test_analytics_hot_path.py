"""The analytics job's hot path keeps its meaning: a device's joint rows are the reading times at which every
metric of the set has a good reading, whether or not its metrics line up; and the lag benchmark reports each
reading's lag, counting readings the job never scored instead of leaving them out, and splits it into its parts."""

from __future__ import annotations

import pytest

from analytics.job import TickStats
from analytics.scoring import _joint_rows
from bench.analytics_lag import LagBenchConfig, _report, _TickRecord, _Writer

Point = tuple[float, float, int, float, float, bool]


def _points(*readings: tuple[float, float, int]) -> list[Point]:
    return [(ts, x, quality, ts, 0.25, False) for ts, x, quality in readings]


def test_metrics_of_one_message_each_reading_time_make_one_row() -> None:
    a = _points((1.0, 10.0, 0), (2.0, 11.0, 0))
    b = _points((1.0, 20.0, 0), (2.0, 21.0, 0))
    assert _joint_rows([a, b]) == [(1.0, [10.0, 20.0]), (2.0, [11.0, 21.0])]


def test_a_reading_time_without_every_metric_or_with_an_impossible_value_is_no_row() -> None:
    a = _points((1.0, 10.0, 0), (2.0, 11.0, 0), (3.0, 12.0, 0), (4.0, 13.0, 0))
    b = _points((1.0, 20.0, 0), (2.0, 99.0, 1), (4.0, 23.0, 0))
    assert _joint_rows([a, b]) == [(1.0, [10.0, 20.0]), (4.0, [13.0, 23.0])]
    # Same length, other times: only the shared one.
    c = _points((1.0, 30.0, 0), (5.0, 31.0, 0))
    d = _points((1.0, 40.0, 0), (6.0, 41.0, 0))
    assert _joint_rows([c, d]) == [(1.0, [30.0, 40.0])]


def _writer(commits: list[tuple[int, float, int]]) -> _Writer:
    writer = _Writer("postgresql://unused", LagBenchConfig(devices=1, warmup_s=0.0), ["d"], ["m"])
    writer.commits = commits
    return writer


def test_lag_quantiles_weigh_each_commit_by_its_readings() -> None:
    # 99 readings scored 1 s after their commit, one commit of a single reading 9 s after.
    commits = [(10, 100.0, 99), (11, 100.0, 1)]
    ticks = [(11, 101.0), (12, 109.0)]
    report = _report(LagBenchConfig(warmup_s=0.0), _writer(commits), ticks, [], cpu_s=1.0, wall_s=1.0, totals={})
    lag = report["lag_s"]
    assert isinstance(lag, dict)
    assert lag["p50"] == pytest.approx(1.0)
    assert lag["p99"] == pytest.approx(1.0)  # 1 reading in 100 is not more than 1 %
    assert lag["max"] == pytest.approx(9.0)
    assert lag["mean"] == pytest.approx(1.08)
    assert lag["lower_bound"] is False


def test_a_commit_never_scored_counts_with_its_lag_so_far() -> None:
    commits = [(10, 100.0, 50), (20, 100.0, 50)]
    ticks = [(11, 101.0), (12, 130.0)]  # the job never passed xid 20
    report = _report(LagBenchConfig(warmup_s=0.0), _writer(commits), ticks, [], cpu_s=1.0, wall_s=1.0, totals={})
    lag = report["lag_s"]
    assert isinstance(lag, dict)
    assert report["commits_unscored"] == 1
    assert lag["p99"] == pytest.approx(30.0)
    assert lag["lower_bound"] is True


def _tick(began: float, ended: float, *, fetch_s: float, score_s: float, readings: int) -> _TickRecord:
    stats = TickStats(
        readings=readings,
        late=0,
        anomalies=0,
        raised=0,
        repeated=0,
        cleared=0,
        escalated=0,
        reminded=0,
        suppressed=0,
        held_back=0,
        watermark=0,
        caught_up=True,
        fetch_s=fetch_s,
        score_s=score_s,
        write_s=ended - began - fetch_s - score_s,
        fetch_cpu_s=fetch_s / 2,
        score_cpu_s=score_s,
        tick_s=ended - began,
    )
    return _TickRecord(began, ended, stats)


def test_the_lag_breakdown_splits_the_wait_for_a_tick_the_ticks_that_passed_a_reading_by_and_its_own_tick() -> None:
    # Committed at 100.0 while a tick ran (99.8 to 100.5); the next one (100.5 to 100.6) stopped short of it; the one
    # after (100.6 to 101.6: fetch 0.2, score 0.7, write 0.1) scored it.
    commits = [(10, 100.0, 100)]
    ticks = [(5, 100.5), (8, 100.6), (11, 101.6)]
    log = [
        _tick(99.8, 100.5, fetch_s=0.1, score_s=0.5, readings=10),
        _tick(100.5, 100.6, fetch_s=0.05, score_s=0.04, readings=5),
        _tick(100.6, 101.6, fetch_s=0.2, score_s=0.7, readings=100),
    ]
    report = _report(LagBenchConfig(warmup_s=0.0), _writer(commits), ticks, log, cpu_s=1.0, wall_s=1.0, totals={})
    breakdown = report["lag_breakdown"]
    assert isinstance(breakdown, dict)
    assert breakdown["p50_s"] == pytest.approx(
        {"wait": 0.5, "held": 0.1, "fetch": 0.2, "score": 0.7, "write": 0.1, "lag": 1.6}, abs=1e-3
    )
    # Phase CPU per reading over the busy ticks: fetch (0.05 + 0.025 + 0.1) s and score 1.24 s for 115 readings.
    assert breakdown["job_thread_cpu_us_per_reading"]["fetch"] == pytest.approx(1e6 * 0.175 / 115, abs=1e-2)
    assert breakdown["job_thread_cpu_us_per_reading"]["score"] == pytest.approx(1e6 * 1.24 / 115, abs=1e-2)
