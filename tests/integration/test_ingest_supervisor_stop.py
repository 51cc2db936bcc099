"""The ingest supervisor tells a worker that stopped on request (Ctrl-C reaches every process of the terminal's
process group) from one that crashed: the first is left stopped and logged as such, the second is restarted."""

from __future__ import annotations

import itertools
import logging
import os
import signal
import time
from pathlib import Path

import pytest

from embedded.runtime import EmbeddedMosquitto
from ingest.supervisor import RESTART_DELAY_S, IngestSupervisor
from ingest.worker import IngestConfig
from protocol.broker_url import parse_broker_url
from tests.integration.conftest import ScratchDatabase, wait_for

_COUNTER = itertools.count()


def test_a_worker_stopped_by_ctrl_c_is_not_restarted_nor_reported_as_a_crash_but_a_killed_one_is(
    database: ScratchDatabase, broker: EmbeddedMosquitto, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = IngestConfig(
        database_url=database.url,
        broker=parse_broker_url(broker.url),
        client_id=f"ingest-sup-{os.getpid()}-{next(_COUNTER)}",
    )
    caplog.set_level(logging.INFO, logger="ingest.supervisor")
    with IngestSupervisor(config, workers=2, metrics_dir=tmp_path / "metrics", log_level="WARNING") as ingest:
        assert ingest.wait_ready(60), "ingest workers did not subscribe"
        before = ingest.pids
        interrupted, killed = before[0], before[1]
        assert interrupted is not None and killed is not None
        os.kill(interrupted, signal.SIGINT)  # what Ctrl-C sends
        os.kill(killed, signal.SIGKILL)  # a crash
        wait_for(lambda: ingest.pids[1] != killed, timeout_s=30, what="the killed worker restarted")
        time.sleep(RESTART_DELAY_S + 1.0)  # time enough for a wrong restart of the interrupted one
        assert ingest.pids[0] == interrupted
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "ingest.supervisor"]
    assert ("INFO", "ingest worker 0 stopped on request") in records
    assert [m for level, m in records if "exited" in m] == ["ingest worker 1 exited with -9; restarting"]
