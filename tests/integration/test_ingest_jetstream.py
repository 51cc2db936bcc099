"""The distributed ingest path on one real NATS node: devices publish MQTT to nats-server, ingest consumes the
durable JetStream consumer and acknowledges after commit; a worker stopped mid-stream loses nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import nats
import pytest

from bench.failover_fleet import FLEET_METRICS, FLEET_TYPE, FailoverFleet, FleetDevice
from devices.catalog import Catalog
from devices.registry import DeviceRecord
from embedded.nats import (
    INGEST_DURABLE,
    MQTT_STREAM,
    NatsNode,
    NatsUser,
    cluster_specs,
    device_user,
    ingest_user,
)
from embedded.runtime import find_free_port
from ingest.jetstream_source import JetStreamSourceConfig
from ingest.worker import IngestConfig
from protocol.broker_url import parse_broker_url
from tests.integration.conftest import RunningIngest, ScratchDatabase, wait_for

pytestmark = pytest.mark.skipif(shutil.which("nats-server") is None, reason="nats-server is not installed")

_COUNTER = itertools.count()
INGEST_PASSWORD = "ingest-test-secret"


@pytest.fixture
def devices(register: Callable[..., DeviceRecord]) -> list[FleetDevice]:
    fleet = [FleetDevice(f"js-meter-{i}", "can-tho", "energy", f"pw-{i}") for i in range(4)]
    for device in fleet:
        register(device.device_id, FLEET_TYPE)
    return fleet


@pytest.fixture
def nats_node(runtime_root: Path, devices: list[FleetDevice]) -> Iterator[NatsNode]:
    (spec,) = cluster_specs(
        ["127.0.0.1"], client_port=find_free_port(), cluster_port=find_free_port(), mqtt_port=find_free_port()
    )
    users: list[NatsUser] = [ingest_user(name="ioc-ingest", password=INGEST_PASSWORD)]
    users += [
        device_user(device_id=d.device_id, province=d.province, sector=d.sector, password=d.password) for d in devices
    ]
    with NatsNode(spec, runtime_root / f"nats-{next(_COUNTER)}", users=users) as node:
        yield node


def _config(database: ScratchDatabase, node: NatsNode, client_id: str) -> IngestConfig:
    return IngestConfig(
        database_url=database.url,
        broker=parse_broker_url("mqtt://127.0.0.1:1"),  # unused on this path
        client_id=client_id,
        jetstream=JetStreamSourceConfig(
            servers=(node.spec.client_url,),
            username="ioc-ingest",
            password=INGEST_PASSWORD,
            ack_wait_s=2.0,
            stream_replicas=1,
        ),
    )


def _rows(database: ScratchDatabase) -> tuple[int, int]:
    with database.connect() as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT (device_id, metric, ts)) FROM readings").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _pending_in_consumer(node: NatsNode) -> tuple[int, int]:
    """(delivered but unacknowledged, not yet delivered) of the shared consumer."""

    async def ask() -> tuple[int, int]:
        nc = await nats.connect(node.spec.client_url, user="ioc-ingest", password=INGEST_PASSWORD)
        try:
            info = await nc.jetstream().consumer_info(MQTT_STREAM, INGEST_DURABLE)
        finally:
            await nc.close()
        return int(info.num_ack_pending or 0), int(info.num_pending or 0)

    return asyncio.run(ask())


def test_messages_published_over_mqtt_to_nats_are_stored_once_and_acknowledged_after_commit(
    database: ScratchDatabase, nats_node: NatsNode, devices: list[FleetDevice], catalog: Catalog
) -> None:
    with (
        RunningIngest(_config(database, nats_node, "js-a"), catalog),
        FailoverFleet(devices, [nats_node.spec.mqtt_address], rate_per_device=50) as fleet,
    ):
        fleet.publish_for(2.0)
        assert fleet.wait_acked(30), f"not every message acknowledged by the node: {fleet.counts}"
        expected = fleet.counts.created * len(FLEET_METRICS)
        wait_for(lambda: _rows(database)[0] >= expected, timeout_s=30, what=f"{expected} rows")
        wait_for(lambda: _pending_in_consumer(nats_node) == (0, 0), timeout_s=10, what="every message acknowledged")
    assert fleet.counts.created >= 300
    assert _rows(database) == (expected, expected)


def test_a_worker_stopped_mid_stream_leaves_its_messages_to_the_other_and_nothing_is_lost(
    database: ScratchDatabase, nats_node: NatsNode, devices: list[FleetDevice], catalog: Catalog
) -> None:
    first = RunningIngest(_config(database, nats_node, "js-first"), catalog)
    second_config = dataclasses.replace(_config(database, nats_node, "js-second"), batch_max_wait_s=0.2)
    with first, RunningIngest(second_config, catalog):
        with FailoverFleet(devices, [nats_node.spec.mqtt_address], rate_per_device=50) as fleet:
            fleet.publish_for(1.5)
            first.__exit__(None, None, None)  # one worker leaves mid-stream; the shared consumer goes on
            fleet.publish_for(1.5)
            assert fleet.wait_acked(30)
            expected = fleet.counts.created * len(FLEET_METRICS)
        wait_for(lambda: _rows(database)[1] >= expected, timeout_s=30, what=f"{expected} distinct rows")
        wait_for(lambda: _pending_in_consumer(nats_node) == (0, 0), timeout_s=15, what="every message acknowledged")
    rows, distinct = _rows(database)
    assert distinct == expected
    assert rows == distinct  # redelivered messages were absorbed by the unique key, not stored twice
