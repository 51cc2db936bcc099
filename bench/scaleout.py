"""`ioc bench scaleout`: two ingest workers on the distributed path (a 3-node NATS JetStream cluster) while the node
leading the message stream is killed mid-run; messages per second end to end, and what was lost or duplicated.

The nodes run on three loopback addresses of this machine (127.0.0.11-13), the workers are ingest processes under
the ingest supervisor, the load is `bench.failover_fleet` (one MQTT connection per device, failing over to the next
node and resending what was not acknowledged). Loss counts every message the fleet made, acknowledged or not.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats
import psutil

from bench.failover_fleet import FLEET_METRICS, FLEET_TYPE, FailoverFleet, FleetDevice
from bench.ingest import _bench_database, _count, _metric_total
from core.settings import Settings
from devices.catalog import load_catalog
from devices.provisioning import FleetDevice as ProvisionedFleetDevice
from devices.provisioning import provision_fleet
from embedded.nats import MQTT_STREAM, NatsCluster, NatsNode, cluster_specs, device_user, ingest_user
from embedded.runtime import find_free_port, read_or_create_secret
from embedded.services import center_services
from ingest.jetstream_source import JetStreamSourceConfig
from ingest.supervisor import IngestSupervisor, ingest_config
from store.pool import connect

NODE_HOSTS = ("127.0.0.11", "127.0.0.12", "127.0.0.13")
PROVINCE, SECTOR = "can-tho", "energy"
UNUSED_MQTT_URL = "mqtt://127.0.0.1:1"  # the workers subscribe on no MQTT broker on this path


@dataclass(frozen=True, slots=True)
class ScaleoutBenchConfig:
    seconds: float = 30.0
    devices: int = 50
    rate_per_device: float = 20.0
    workers: int = 2
    kill_after_s: float = 10.0
    drain_timeout_s: float = 120.0


def _stream_leader(servers: list[str], password: str) -> str | None:
    async def ask() -> str | None:
        nc = await nats.connect(servers, user="ioc-ingest", password=password, connect_timeout=2)
        try:
            info = await nc.jetstream(timeout=3).stream_info(MQTT_STREAM)
        finally:
            await nc.close()
        return info.cluster.leader if info.cluster is not None else None

    with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
        return asyncio.run(ask())
    return None


def run_scaleout_bench(config: ScaleoutBenchConfig, *, settings: Settings) -> dict[str, Any]:
    from rich.console import Console

    console = Console(stderr=True)
    root = settings.runtime_dir / "bench" / "scaleout"
    shutil.rmtree(root, ignore_errors=True)
    password = read_or_create_secret(root / "ioc-ingest.secret")
    devices = [FleetDevice(f"so-{i:05d}", PROVINCE, SECTOR, f"so-pw-{i}") for i in range(config.devices)]
    users = [ingest_user(name="ioc-ingest", password=password)]
    users += [
        device_user(device_id=d.device_id, province=PROVINCE, sector=SECTOR, password=d.password) for d in devices
    ]
    specs = cluster_specs(
        NODE_HOSTS, client_port=find_free_port(), cluster_port=find_free_port(), mqtt_port=find_free_port()
    )
    nodes = {spec.name: NatsNode(spec, root / spec.name, users=users) for spec in specs}
    servers = [spec.client_url for spec in specs]
    with (
        center_services(settings) as urls,
        _bench_database(urls.database_url) as database_url,
        NatsCluster(list(nodes.values())),
    ):
        with connect(database_url) as conn:
            fleet_rows = [
                ProvisionedFleetDevice(d.device_id, FLEET_TYPE, PROVINCE, name="scaleout meter") for d in devices
            ]
            provision_fleet(conn, fleet_rows, catalog=load_catalog(), actor="ioc bench scaleout")
            conn.commit()
        jetstream = JetStreamSourceConfig(
            servers=tuple(servers), username="ioc-ingest", password=password, ack_wait_s=5.0, stream_replicas=3
        )
        base = dataclasses.replace(
            ingest_config(settings, database_url=database_url, mqtt_url=UNUSED_MQTT_URL),
            client_id="scaleout",
            jetstream=jetstream,
        )
        metrics_dir = root / "metrics"
        with IngestSupervisor(base, workers=config.workers, metrics_dir=metrics_dir, log_level="WARNING") as ingest:
            if not ingest.wait_ready(90):
                raise RuntimeError("ingest workers did not bind the JetStream consumer within 90 s")
            leader = None
            deadline = time.monotonic() + 30
            while leader not in nodes and time.monotonic() < deadline:
                leader = _stream_leader(servers, password)
                time.sleep(0.5)
            if leader is None:
                raise RuntimeError("the message stream has no leader")
            killed: dict[str, float] = {}
            fleet_nodes = [spec.mqtt_address for spec in specs]
            with FailoverFleet(devices, fleet_nodes, rate_per_device=config.rate_per_device) as fleet:
                stop = threading.Event()

                def kill_leader(stop: threading.Event) -> None:
                    if not stop.wait(config.kill_after_s):
                        nodes[leader].kill()  # SIGKILL: a node lost mid-stream, its disk state with it
                        killed[leader] = time.monotonic()

                killer = threading.Thread(target=kill_leader, args=(stop,), daemon=True)
                killer.start()
                console.print(
                    f"publishing for {config.seconds:g} s from {config.devices} devices; killing {leader} "
                    f"(the stream leader) after {config.kill_after_s:g} s…"
                )
                started = time.monotonic()
                publish_s = fleet.publish_for(config.seconds)
                stop.set()
                killer.join()
                acked_all = fleet.wait_acked(config.drain_timeout_s)
                created = fleet.counts.created
                expected = created * len(FLEET_METRICS)
                stored = 0
                drain_deadline = time.monotonic() + config.drain_timeout_s
                while time.monotonic() < drain_deadline:
                    stored = _count(
                        database_url, "SELECT count(*) FROM (SELECT DISTINCT device_id, metric, ts FROM readings) d"
                    )
                    if stored >= expected:
                        break
                    time.sleep(0.5)
                elapsed = time.monotonic() - started
                rows = _count(database_url, "SELECT count(*) FROM readings")
                counts = dataclasses.replace(fleet.counts)
            duplicate_rows_absorbed = _metric_total(metrics_dir, "ioc_ingest_duplicate_rows_total")
            processed = _metric_total(metrics_dir, "ioc_ingest_messages_total")
    stored_messages = stored // len(FLEET_METRICS)
    return {
        "path": "nats-jetstream",
        "nodes": len(specs),
        "stream_replicas": 3,
        "workers": config.workers,
        "devices": config.devices,
        "target_msgs_per_s": config.devices * config.rate_per_device,
        "seconds": config.seconds,
        "killed_node": leader,
        "killed_at_s": config.kill_after_s,
        "created": created,
        "acked_by_cluster": counts.acked,
        "all_acked": acked_all,
        "stored_messages": stored_messages,
        "lost": created - stored_messages,
        "duplicate_rows_stored": rows - stored,
        "duplicate_rows_absorbed": int(duplicate_rows_absorbed),
        "messages_processed": int(processed),
        "device_failovers": counts.failovers,
        "device_ack_timeouts": counts.ack_timeouts,
        # End to end: every message made, over the time until the last of them was committed.
        "msgs_per_s": round(stored_messages / elapsed, 1),
        "publish_s": round(publish_s, 1),
        "end_to_end_s": round(elapsed, 1),
        "cpu_count": psutil.cpu_count(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
