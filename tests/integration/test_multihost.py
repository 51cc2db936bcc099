"""Ingest across hosts: three NATS broker nodes, two ingest hosts and one database, each "host" a network namespace
on this machine; a device fleet publishes through the nodes while the stream's leader node is cut off the network
and one ingest host crashes. Every reading the fleet made is stored, once.

Skips (with the reason) where namespaces cannot be made: not root, no iproute2, a container without NET_ADMIN.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import nats
import pytest

from bench.failover_fleet import FLEET_METRICS, FLEET_TYPE, FailoverFleet, FleetDevice
from core.settings import REPO_ROOT
from devices.registry import DeviceRecord
from embedded.nats import INGEST_DURABLE, MQTT_STREAM, NatsNode, cluster_specs, device_user, ingest_user
from embedded.runtime import EmbeddedPostgres, find_free_port
from tests.integration.conftest import ScratchDatabase, wait_for
from tests.multihost.netns import BRIDGE_ADDRESS, Host, Lab, LabUnavailable

INGEST_PASSWORD = "multihost-ingest"
DEVICES = 24
RATE_PER_DEVICE = 10.0
PUBLISH_S = 20.0
CUT_AFTER_S = 6.0
CLIENT_PORT, CLUSTER_PORT, MQTT_PORT = 4222, 6222, 1883


@pytest.fixture
def lab() -> Iterator[Lab]:
    if shutil.which("nats-server") is None:
        pytest.skip("nats-server is not installed")
    if shutil.which("socat") is None:
        pytest.skip("socat (the database forwarder onto the bridge) is not installed")
    try:
        with Lab() as made:
            yield made
    except LabUnavailable as exc:
        pytest.skip(f"network namespaces cannot be made here: {exc}")


def _forward_database(lab: Lab, postgres: EmbeddedPostgres) -> int:
    """The test's PostgreSQL, reachable from the namespaces on the bridge address."""
    port = find_free_port()
    lab_proc = lab.spawn_root(
        ["socat", f"TCP-LISTEN:{port},bind={BRIDGE_ADDRESS},fork,reuseaddr", f"TCP:127.0.0.1:{postgres.port}"]
    )
    assert lab_proc.poll() is None
    return port


def _stream_leader(seed: str) -> str | None:
    async def ask() -> str | None:
        nc = await nats.connect(seed, user="ioc-ingest", password=INGEST_PASSWORD, connect_timeout=2)
        try:
            info = await nc.jetstream(timeout=3).stream_info(MQTT_STREAM)
        finally:
            await nc.close()
        return info.cluster.leader if info.cluster is not None else None

    try:
        return asyncio.run(ask())
    except (nats.errors.Error, TimeoutError, OSError):
        return None


def _consumer_backlog(seeds: list[str]) -> tuple[int, int] | None:
    async def ask() -> tuple[int, int]:
        nc = await nats.connect(seeds, user="ioc-ingest", password=INGEST_PASSWORD, connect_timeout=2)
        try:
            info = await nc.jetstream(timeout=3).consumer_info(MQTT_STREAM, INGEST_DURABLE)
        finally:
            await nc.close()
        return int(info.num_ack_pending or 0), int(info.num_pending or 0)

    try:
        return asyncio.run(ask())
    except (nats.errors.Error, TimeoutError, OSError):
        return None


def _rows(database: ScratchDatabase) -> tuple[int, int]:
    with database.connect() as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT (device_id, metric, ts)) FROM readings").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_a_broker_node_and_an_ingest_host_cut_off_mid_stream_lose_nothing_and_duplicate_nothing(
    postgres: EmbeddedPostgres,
    database: ScratchDatabase,
    register: Callable[..., DeviceRecord],
    lab: Lab,  # after the database: the hosts go before their database does
    tmp_path: Path,
) -> None:
    devices = [FleetDevice(f"mh-meter-{i:02d}", "can-tho", "energy", f"mh-pw-{i}") for i in range(DEVICES)]
    for device in devices:
        register(device.device_id, FLEET_TYPE)
    db_port = _forward_database(lab, postgres)

    brokers = [lab.add_host(f"n{i}", 10 + i) for i in (1, 2, 3)]
    ingest_hosts = [lab.add_host(f"i{i}", 20 + i) for i in (1, 2)]
    specs = cluster_specs(
        [h.address for h in brokers], client_port=CLIENT_PORT, cluster_port=CLUSTER_PORT, mqtt_port=MQTT_PORT
    )
    users = [ingest_user(name="ioc-ingest", password=INGEST_PASSWORD)]
    users += [
        device_user(device_id=d.device_id, province=d.province, sector=d.sector, password=d.password) for d in devices
    ]
    nodes = {
        host.name: NatsNode(spec, tmp_path / host.name, users=users, argv_prefix=host.exec_prefix)
        for host, spec in zip(brokers, specs, strict=True)
    }
    for node in nodes.values():
        node.start(wait=False)
        lab.adopt(node)
    for node in nodes.values():
        node.wait_listening()
    seeds = [spec.client_url for spec in specs]

    db_url = database.url.replace(f"127.0.0.1:{postgres.port}", f"{BRIDGE_ADDRESS}:{db_port}")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "IOC_DATABASE_URL": db_url,
        "IOC_INGEST_SOURCE": "jetstream",
        "IOC_JETSTREAM_SERVERS": json.dumps(seeds),
        "IOC_JETSTREAM_PASSWORD": INGEST_PASSWORD,
        "IOC_JETSTREAM_ACK_WAIT_S": "3",
        "IOC_JETSTREAM_STREAM_REPLICAS": "3",
    }
    ingest = {}
    for host in ingest_hosts:
        folder = tmp_path / host.name
        folder.mkdir()
        host_env = {**env, "IOC_RUNTIME_DIR": str(folder)}
        with (folder / "ingest.log").open("wb") as log:  # the child keeps its own descriptor
            ingest[host.name] = lab.spawn(
                host,
                [sys.executable, "-m", "tests.multihost.ingest_host", str(folder / f"{host.name}.ready")],
                env=host_env,
                log=log,
            )
    for host in ingest_hosts:
        ready = tmp_path / host.name / f"{host.name}.ready"
        wait_for(ready.exists, timeout_s=60, what=f"ingest host {host.name} consuming")

    leader = None
    wait_for(lambda: (_stream_leader(seeds[0]) or "") in nodes, timeout_s=30, what="the stream's leader")
    leader = _stream_leader(seeds[0])
    assert leader is not None
    cut_broker = next(h for h in brokers if h.name == leader)
    crashed: list[Host] = []

    def cut_mid_stream(stop: threading.Event) -> None:
        if stop.wait(CUT_AFTER_S):
            return
        lab.cut(cut_broker)  # the stream leader's cable: a partition, the node itself keeps running alone
        lab.crash(ingest["i1"])  # the ingest host dies, then its cable goes too
        lab.cut(ingest_hosts[0])
        crashed.append(ingest_hosts[0])

    with FailoverFleet(devices, [(h.address, MQTT_PORT) for h in brokers], rate_per_device=RATE_PER_DEVICE) as fleet:
        stop = threading.Event()
        cutter = threading.Thread(target=cut_mid_stream, args=(stop,), daemon=True)
        cutter.start()
        fleet.publish_for(PUBLISH_S)
        stop.set()
        cutter.join()
        assert crashed, "the cut happened before the end of publishing"
        assert fleet.wait_acked(60), f"messages left unacknowledged by every node: {fleet.counts}"
        created = fleet.counts.created
        expected = created * len(FLEET_METRICS)
        survivors = [spec.client_url for spec in specs if spec.name != leader]
        try:
            wait_for(lambda: _rows(database)[1] >= expected, timeout_s=60, what=f"{expected} distinct rows")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}: stored {_rows(database)}, consumer (unacked, undelivered) {_consumer_backlog(survivors)}, "
                f"fleet {fleet.counts}, cut {leader}"
            ) from None
        wait_for(lambda: _consumer_backlog(survivors) == (0, 0), timeout_s=30, what="the consumer drained")
        failovers = fleet.counts.failovers

    rows, distinct = _rows(database)
    assert created >= DEVICES * RATE_PER_DEVICE * PUBLISH_S * 0.8
    assert failovers >= DEVICES // 3  # the devices of the cut node moved to the others
    assert distinct == expected, f"lost {expected - distinct} of {expected} rows"
    assert rows == distinct, f"{rows - distinct} duplicate rows stored"
