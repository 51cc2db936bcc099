"""Faults mid-stream end with every published reading stored exactly once: a worker killed with SIGKILL,
the broker restarted (persistence on), the database restarted."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from embedded.runtime import EmbeddedMosquitto, EmbeddedPostgres
from ingest.supervisor import IngestSupervisor
from ingest.worker import IngestConfig
from protocol.telemetry import encode_json
from protocol.topics import telemetry_topic
from tests.integration.conftest import ScratchDatabase, wait_for
from tests.integration.publisher import Publisher

METRICS = ("active_power", "voltage", "current")


def _message(i: int, start: datetime) -> bytes:
    return encode_json(
        {"active_power": i / 100, "voltage": 220.0 + (i % 10), "current": 1.0 + (i % 7) / 10},
        seq=i,
        ts=start + timedelta(milliseconds=100 * i),
    )


def _assert_exactly_once(database: ScratchDatabase, total: int, device_id: str) -> None:
    with database.connect() as conn:
        rows, distinct = conn.execute(
            "SELECT count(*), count(DISTINCT (metric, ts)) FROM readings WHERE device_id = %s", (device_id,)
        ).fetchone()  # type: ignore[misc]
        powers = [
            v
            for (v,) in conn.execute(
                "SELECT value FROM readings WHERE device_id = %s AND metric = 'active_power' ORDER BY ts", (device_id,)
            ).fetchall()
        ]
    assert rows == distinct == total * len(METRICS)
    assert powers == [i / 100 for i in range(total)]


def _rows(database: ScratchDatabase, device_id: str) -> int:
    return int(database.scalar("SELECT count(*) FROM readings WHERE device_id = %s", (device_id,)))


def _publish_all(pub: Publisher, topic: str, total: int, start: datetime, *, during: Callable[[int], None]) -> None:
    for i in range(total):
        pub.publish(topic, _message(i, start), wait=False)
        during(i)
        if i % 50 == 0:
            time.sleep(0.01)  # a steady stream rather than one burst
    # Messages published while the broker was away are queued by paho and sent after it reconnects.
    wait_for(lambda: pub.acked == total, timeout_s=60, what="every message acknowledged by the broker")


def test_worker_killed_with_sigkill_mid_stream_loses_nothing(
    database: ScratchDatabase,
    broker: EmbeddedMosquitto,
    register: Callable[..., object],
    ingest_config: IngestConfig,
    runtime_root: Path,
) -> None:
    register("meter-kill", "smart_meter", "ha-noi")
    topic = telemetry_topic("ha-noi", "energy", "meter-kill")
    start = datetime.now(UTC) - timedelta(hours=1)
    total = 3000
    killed: list[int] = []
    with IngestSupervisor(
        ingest_config, workers=2, metrics_dir=runtime_root / f"metrics-{os.getpid()}-kill"
    ) as supervisor:

        def kill_one(i: int) -> None:
            if i == total // 3:
                wait_for(lambda: _rows(database, "meter-kill") > 0, what="first rows")
                pid = supervisor.pids[0]
                assert pid is not None
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

        assert supervisor.wait_ready(30), "ingest workers did not subscribe"
        with Publisher(broker.url, client_id="meter-kill") as pub:
            _publish_all(pub, topic, total, start, during=kill_one)
        wait_for(lambda: _rows(database, "meter-kill") == total * len(METRICS), timeout_s=90, what="all rows")
        assert killed and supervisor.pids[0] != killed[0], "the killed worker was replaced"
    _assert_exactly_once(database, total, "meter-kill")


def test_broker_restart_mid_stream_loses_nothing(
    database: ScratchDatabase,
    broker: EmbeddedMosquitto,
    register: Callable[..., object],
    run_ingest: Callable[[], object],
) -> None:
    register("meter-brk", "smart_meter", "hue")
    topic = telemetry_topic("hue", "energy", "meter-brk")
    start = datetime.now(UTC) - timedelta(hours=1)
    total = 3000

    def restart_broker(i: int) -> None:
        if i == total // 3:
            broker.stop()  # SIGTERM: Mosquitto saves its persistence file, queued messages included
        if i == total // 2:
            broker.start()

    with run_ingest(), Publisher(broker.url, client_id="meter-brk") as pub:  # type: ignore[attr-defined]
        _publish_all(pub, topic, total, start, during=restart_broker)
        wait_for(lambda: _rows(database, "meter-brk") == total * len(METRICS), timeout_s=90, what="all rows")
    _assert_exactly_once(database, total, "meter-brk")


def test_database_crash_mid_stream_loses_nothing(
    database: ScratchDatabase,
    postgres: EmbeddedPostgres,
    broker: EmbeddedMosquitto,
    register: Callable[..., object],
    run_ingest: Callable[[], object],
) -> None:
    register("meter-db", "smart_meter", "ha-noi")
    topic = telemetry_topic("ha-noi", "energy", "meter-db")
    start = datetime.now(UTC) - timedelta(hours=1)
    total = 3000

    def crash_database(i: int) -> None:
        if i == total // 3:
            wait_for(lambda: _rows(database, "meter-db") > 0, what="first rows")
            postgres.stop(mode="immediate")  # like a crash: only committed transactions survive
        if i == total // 2:
            postgres.start()

    with run_ingest(), Publisher(broker.url, client_id="meter-db") as pub:  # type: ignore[attr-defined]
        _publish_all(pub, topic, total, start, during=crash_database)
        wait_for(lambda: _rows(database, "meter-db") == total * len(METRICS), timeout_s=90, what="all rows")
    _assert_exactly_once(database, total, "meter-db")
