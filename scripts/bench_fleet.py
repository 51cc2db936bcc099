"""Fleet benchmark: N simulated devices, each on its own MQTT connection, against a private center (embedded
PostgreSQL + Mosquitto + ingest workers), then every published message accounted for in the database.

    .venv/bin/python scripts/bench_fleet.py --devices 10000 --interval 10 --duration 300 --json bench-fleet.json

The simulator runs as its own process (`ioc simulate --json`), so its CPU and memory are its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg

from core.settings import REPO_ROOT
from devices.catalog import load_catalog
from devices.registry import create_device
from devices.schema import migrate_database
from embedded.runtime import EmbeddedMosquitto, EmbeddedPostgres
from firmware_sim.cli import build_devices
from ingest.supervisor import IngestSupervisor
from ingest.worker import IngestConfig
from protocol.broker_url import parse_broker_url


def _count(url: str, sql: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql.encode()).fetchone()
    assert row is not None
    return int(row[0])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--faults", default="malformed:0.0005,duplicate:0.001")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default="bench-fleet.json")
    args = parser.parse_args()

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the broker inherits it: one fd per device
    root = REPO_ROOT / ".runtime" / f"bench-fleet-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    report: dict[str, object] = {}
    try:
        with EmbeddedPostgres(root / "pg") as pg, EmbeddedMosquitto(root / "mq") as mq:
            migrate_database(pg.url)
            devices = build_devices(args.devices, prefix="bench")
            catalog = load_catalog()
            with psycopg.connect(pg.url) as conn:
                for d in devices:
                    create_device(
                        conn, device_id=d.device_id, type_code=d.type_code, province=d.province, catalog=catalog
                    )
                conn.commit()
            supervisor = IngestSupervisor(
                IngestConfig(database_url=pg.url, broker=parse_broker_url(mq.url), client_id="bench-ingest"),
                workers=args.workers,
                metrics_dir=root / "metrics",
                log_level="WARNING",
            )
            supervisor.start()
            stop = threading.Event()
            watcher = threading.Thread(target=supervisor.watch, args=(stop,), daemon=True)
            watcher.start()
            try:
                time.sleep(3)
                stats_file = root / "sim.json"
                cmd = [sys.executable, "-m", "ioc.cli", "--log-level", "WARNING", "simulate", "--quiet"]
                cmd += ["--broker", mq.url, "--devices", str(args.devices), "--prefix", "bench"]
                cmd += ["--interval", str(args.interval), "--duration", str(args.duration)]
                cmd += ["--faults", args.faults, "--json", str(stats_file), "--buffer-dir", str(root / "buffer")]
                started = time.monotonic()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                sim = json.loads(stats_file.read_text())
                expected_rows = int(sim["expected_rows"])
                deadline = time.monotonic() + 300
                while time.monotonic() < deadline:
                    if _count(pg.url, "SELECT count(*) FROM readings") >= expected_rows:
                        break
                    time.sleep(1)
                time.sleep(3)
                stored_messages = _count(pg.url, "SELECT count(*) FROM (SELECT DISTINCT device_id, ts FROM readings) s")
                quarantined = _count(pg.url, "SELECT count(*) FROM quarantine")
                rows = _count(pg.url, "SELECT count(*) FROM readings")
                report = {
                    "devices": args.devices,
                    "interval_s": args.interval,
                    "duration_s": args.duration,
                    "wall_s": round(time.monotonic() - started, 1),
                    "simulator": sim,
                    "generated_messages": sim["generated"],
                    "stored_messages": stored_messages,
                    "quarantined": quarantined,
                    "rows": rows,
                    "expected_rows": expected_rows,
                    "accounted": stored_messages + quarantined == sim["generated"] and rows == expected_rows,
                }
            finally:
                stop.set()
                watcher.join()
                supervisor.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in report.items() if k != "simulator"}, indent=2))
    return 0 if report.get("accounted") else 1


if __name__ == "__main__":
    raise SystemExit(main())
