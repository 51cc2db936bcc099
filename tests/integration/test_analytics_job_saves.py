"""The analytics job's state saves against the real database: a save written beside the ticks lands with the
watermark it belongs to and does not hold the ticks' watermark back; a save that failed is written with the next
one; and a backlog is read in batches near the target rather than as one."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from analytics.job import AnalyticsJob
from analytics.scoring import JobConfig
from core.lifecycle import running_in_thread
from devices.catalog import Catalog
from store.analytics import current_xid, snapshot_xmin
from store.pool import Pool, connect, open_pool
from store.readings import write_readings
from tests.integration.conftest import ScratchDatabase, wait_for

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
DEVICE = "fridge-saves"


@pytest.fixture
def pool(database: ScratchDatabase) -> Iterator[Pool]:
    with open_pool(database.url, min_size=1, max_size=2, name="test-job-saves") as p:
        yield p


def _write(database: ScratchDatabase, first: int, count: int) -> int:
    """Readings `first`…`first + count - 1` of the fridge (a minute apart), one commit; returns its xid."""
    rows = []
    for i in range(first, first + count):
        ts = T0 + timedelta(minutes=i)
        rows += [(ts, DEVICE, "temperature", 4.5 + 0.01 * (i % 7), 0), (ts, DEVICE, "battery_v", 3.9, 0)]
    with connect(database.url) as conn:
        write_readings(conn, rows)
        xid = current_xid(conn)
        conn.commit()
    return xid


def test_the_bound_reads_past_the_jobs_own_open_save_but_never_past_an_open_ingest(
    database: ScratchDatabase,
) -> None:
    with (
        connect(database.url) as ingest,
        connect(database.url) as save,
        connect(database.url) as later,
        connect(database.url) as job,
    ):
        ingest_xid = current_xid(ingest)  # an ingest transaction still open…
        save_xid = current_xid(save)  # …the job's save, opened after it…
        later_xid = current_xid(later)  # …and an ingest transaction that commits while both are open
        later.commit()
        assert snapshot_xmin(job) == ingest_xid
        job.rollback()
        assert snapshot_xmin(job, ignoring=save_xid) == ingest_xid
        job.rollback()
        ingest.commit()
        # Only the save is open now: the plain bound stops at it; the job's bound goes past it and past what
        # committed after it.
        assert snapshot_xmin(job) == save_xid
        job.rollback()
        assert snapshot_xmin(job, ignoring=save_xid) > later_xid
        job.rollback()
        save.rollback()


def test_a_save_written_beside_the_ticks_lands_with_its_watermark_and_a_restart_resumes_from_it(
    database: ScratchDatabase, register: Callable[..., object], catalog: Catalog, pool: Pool
) -> None:
    register(DEVICE, "vaccine_fridge", "can-tho")
    last_xid = _write(database, 0, 30)
    job = AnalyticsJob(
        JobConfig(poll_interval_s=0.02, state_save_interval_s=0.05), pool=pool, catalog=catalog, notifier=None
    )
    with running_in_thread(job.run, name="job-saves"):
        wait_for(lambda: job.watermark > last_xid, what="the job to read the first commit")
        wait_for(lambda: job.saves >= 2, what="two saves written beside the ticks")
        last_xid = _write(database, 30, 30)
        wait_for(lambda: job.watermark > last_xid and job.saves >= 4, what="the second commit read and saved")
    # At stop, the write in flight is awaited and the last save written: the saved pair is the job's own.
    assert database.scalar("SELECT ingest_xid FROM job_watermarks WHERE job = 'analytics'") == job.watermark
    assert (
        database.scalar(
            "SELECT count(*) FROM analytics_state WHERE job = 'analytics' AND device_id = %s AND metric IN "
            "('temperature', 'battery_v')",
            (DEVICE,),
        )
        == 2
    )
    assert job.totals["readings"] == 120

    restarted = AnalyticsJob(JobConfig(), pool=pool, catalog=catalog, notifier=None)
    restarted.restore()
    assert restarted.watermark == job.watermark
    _write(database, 60, 1)
    stats = restarted.tick()
    # The saved series carry on from the last reading time they saw: only the new reading is scored, none late.
    assert (stats.readings, stats.late) == (2, 0)
    series = restarted.scorer.series[(DEVICE, "temperature")]
    assert series.last_ts == (T0 + timedelta(minutes=60)).timestamp()


def test_a_save_whose_write_failed_is_written_with_the_next_one(
    database: ScratchDatabase, register: Callable[..., object], catalog: Catalog, pool: Pool
) -> None:
    register(DEVICE, "vaccine_fridge", "can-tho")
    _write(database, 0, 10)
    job = AnalyticsJob(JobConfig(), pool=pool, catalog=catalog, notifier=None)
    job.tick()
    lost = job._snapshot_state()  # dumped and marked saved, then its write fails…
    assert {key for key, series in job.scorer.series.items() if series.dirty} == set()
    job._mark_unsaved(lost)
    assert job.save() == len(lost.states)  # …so the next save writes those states again
    assert database.scalar("SELECT count(*) FROM analytics_state WHERE device_id = %s", (DEVICE,)) == len(lost.states)


def test_a_backlog_is_read_in_batches_near_the_target_not_in_one(
    database: ScratchDatabase, register: Callable[..., object], catalog: Catalog, pool: Pool
) -> None:
    register(DEVICE, "vaccine_fridge", "can-tho")
    job = AnalyticsJob(JobConfig(batch_target_rows=40), pool=pool, catalog=catalog, notifier=None)
    for k in range(3):  # live: a commit of 20 readings per tick
        _write(database, 10 * k, 10)
        assert job.tick().readings == 20
    for k in range(12):  # then a stall: 12 commits of 20 readings wait
        _write(database, 30 + 10 * k, 10)
    batches = []
    while True:
        stats = job.tick()
        batches.append(stats.readings)
        if stats.caught_up:
            break
    assert sum(batches) == 240
    assert max(batches) <= 60  # near the target of 40, where the old doubling span read all 240 at once
    assert len(batches) >= 4
