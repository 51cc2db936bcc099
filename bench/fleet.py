"""`ioc bench fleet`: N simulated devices, each on its own MQTT connection, against a private center (embedded
PostgreSQL + Mosquitto + ingest workers), then every published message accounted for in the database."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, LiteralString

from devices.catalog import load_catalog
from devices.provisioning import FleetDevice, provision_fleet
from devices.schema import migrate_database
from embedded.runtime import EmbeddedMosquitto, EmbeddedPostgres
from firmware_sim.roster import build_devices
from ingest.supervisor import IngestSupervisor
from ingest.worker import IngestConfig
from protocol.broker_url import parse_broker_url
from store.pool import connect

READY_TIMEOUT_S = 60.0
DRAIN_TIMEOUT_S = 300.0


def _count(url: str, query: LiteralString) -> int:
    with connect(url) as conn:
        row = conn.execute(query).fetchone()
    return 0 if row is None else int(row[0])


def run_fleet_bench(
    *, devices: int, interval_s: float, duration_s: float, faults: str, workers: int, runtime_dir: Path
) -> dict[str, Any]:
    """Run the fleet against a private center in a fresh folder under `runtime_dir` and account for every message."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the broker inherits it: one fd per device
    root = runtime_dir / f"bench-fleet-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    try:
        with EmbeddedPostgres(root / "pg") as pg, EmbeddedMosquitto(root / "mq") as mq:
            migrate_database(pg.url)
            fleet = build_devices(devices, prefix="bench")
            with connect(pg.url) as conn:
                provision_fleet(
                    conn,
                    [FleetDevice(d.device_id, d.type_code, d.province) for d in fleet],
                    catalog=load_catalog(),
                    actor="ioc bench fleet",
                )
                conn.commit()
            config = IngestConfig(database_url=pg.url, broker=parse_broker_url(mq.url), client_id="bench-ingest")
            with IngestSupervisor(config, workers=workers, metrics_dir=root / "metrics", log_level="WARNING") as ingest:
                if not ingest.wait_ready(READY_TIMEOUT_S):
                    raise RuntimeError(f"ingest workers did not subscribe within {READY_TIMEOUT_S:.0f} s")
                stats_file = root / "sim.json"
                # The simulator runs as its own process (`ioc simulate`), so its CPU and memory are its own.
                cmd = [sys.executable, "-m", "ioc", "--log-level", "WARNING", "simulate", "--quiet"]
                cmd += ["--broker", mq.url, "--devices", str(devices), "--prefix", "bench"]
                cmd += ["--interval", str(interval_s), "--duration", str(duration_s)]
                cmd += ["--faults", faults, "--json", str(stats_file), "--buffer-dir", str(root / "buffer")]
                started = time.monotonic()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                sim = json.loads(stats_file.read_text())
                expected_rows = int(sim["expected_rows"])
                deadline = time.monotonic() + DRAIN_TIMEOUT_S
                while time.monotonic() < deadline:
                    if _count(pg.url, "SELECT count(*) FROM readings") >= expected_rows:
                        break
                    time.sleep(1)
                time.sleep(3)
                stored_messages = _count(pg.url, "SELECT count(*) FROM (SELECT DISTINCT device_id, ts FROM readings) s")
                quarantined = _count(pg.url, "SELECT count(*) FROM quarantine")
                rows = _count(pg.url, "SELECT count(*) FROM readings")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "devices": devices,
        "interval_s": interval_s,
        "duration_s": duration_s,
        "wall_s": round(time.monotonic() - started, 1),
        "simulator": sim,
        "generated_messages": sim["generated"],
        "stored_messages": stored_messages,
        "quarantined": quarantined,
        "rows": rows,
        "expected_rows": expected_rows,
        "accounted": stored_messages + quarantined == sim["generated"] and rows == expected_rows,
    }
