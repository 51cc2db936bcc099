"""Changing the number of ingest workers on one Mosquitto: worker 0 keeps its client id and persistent session
across the change, and must not keep the subscription of the other mode (every message would come twice)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from devices.catalog import Catalog
from devices.registry import DeviceRecord
from embedded.runtime import EmbeddedMosquitto
from ingest.worker import IngestConfig
from protocol.telemetry import encode_json
from protocol.topics import telemetry_topic
from tests.integration.conftest import RunningIngest, ScratchDatabase, wait_for
from tests.integration.publisher import Publisher

MESSAGES = 60


def _processed() -> float:
    return REGISTRY.get_sample_value("ioc_ingest_messages_total") or 0.0


def _duplicates() -> float:
    return REGISTRY.get_sample_value("ioc_ingest_duplicate_rows_total") or 0.0


def _publish(broker: EmbeddedMosquitto, device_id: str, *, first: int) -> None:
    pub = Publisher(broker.url, client_id=f"pub-{device_id}-{first}")
    assert pub.wait_connected()
    start = datetime.now(UTC) - timedelta(minutes=5)  # after the device's registration, never in the future
    topic = telemetry_topic("can-tho", "energy", device_id)
    for i in range(first, first + MESSAGES):
        pub.publish(topic, encode_json({"active_power": float(i)}, seq=i, ts=start + timedelta(seconds=i)), wait=False)
    wait_for(lambda: pub.acked == MESSAGES, what="the broker's acknowledgements")
    pub.client.disconnect()
    pub.client.loop_stop()


def _switch_and_count(
    *,
    before_shared: bool,
    ingest_config: IngestConfig,
    broker: EmbeddedMosquitto,
    database: ScratchDatabase,
    catalog: Catalog,
    device_id: str,
) -> tuple[float, float]:
    """Run worker 0 in one mode, then in the other with the same session; (messages processed, duplicate rows)
    for MESSAGES published after the switch."""
    before = dataclasses.replace(ingest_config, shared_subscription=before_shared)
    with RunningIngest(before, catalog):
        pass  # subscribed with the first mode; the persistent session keeps that subscription
    after = dataclasses.replace(ingest_config, shared_subscription=not before_shared)
    with RunningIngest(after, catalog):
        processed, duplicates = _processed(), _duplicates()
        _publish(broker, device_id, first=0)
        wait_for(
            lambda: database.scalar("SELECT count(*) FROM readings WHERE device_id = %s", (device_id,)) == MESSAGES,
            what="every reading stored",
        )
        wait_for(lambda: _processed() - processed >= MESSAGES, what="every message processed")
        time.sleep(0.5)  # a second copy of each message would arrive right behind the first
    return _processed() - processed, _duplicates() - duplicates


@pytest.mark.parametrize(
    ("before_shared", "device_id"),
    [(False, "count-meter-1"), (True, "count-meter-2")],
    ids=["one-to-several-drops-direct", "several-to-one-drops-shared"],
)
def test_changing_the_worker_count_drops_worker_zeros_old_subscription(
    before_shared: bool,
    device_id: str,
    ingest_config: IngestConfig,
    broker: EmbeddedMosquitto,
    database: ScratchDatabase,
    catalog: Catalog,
    register: Callable[..., DeviceRecord],
) -> None:
    register(device_id, "smart_meter")
    processed, duplicates = _switch_and_count(
        before_shared=before_shared,
        ingest_config=ingest_config,
        broker=broker,
        database=database,
        catalog=catalog,
        device_id=device_id,
    )
    assert (processed, duplicates) == (MESSAGES, 0)
