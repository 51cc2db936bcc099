"""`ioc bench api`: the API's main queries on a realistic history, with concurrent clients.

In a fresh runtime folder it starts a private PostgreSQL and Mosquitto, registers N devices spread over provinces,
writes their history (one reading a minute of 3 metrics for D days) straight into the hypertable, starts the API as
its own process (`ioc api`), and measures with C concurrent clients: one device's last 24 h in 1-minute buckets,
the latest values of every device, a province's KPI summary. Then it streams a CSV export of E rows and samples the
API process's memory while it does (flat memory is the point).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import httpx
import psutil

from api.access.keys import create_api_key
from bench.http_clients import timed_requests
from devices.catalog import load_catalog
from devices.provisioning import FleetDevice, provision_fleet
from devices.schema import migrate_database
from embedded.runtime import EmbeddedMosquitto, EmbeddedPostgres, find_free_port
from store.pool import connect
from store.rollups import roll_up
from store.scope import EVERYTHING

BENCH_TYPE: Final = "smart_meter"
BENCH_METRICS: Final = ("active_power", "voltage", "current")
PROVINCES: Final = ("can-tho", "an-giang", "dong-thap", "vinh-long", "ca-mau", "ha-noi", "hai-phong", "da-nang")
API_START_TIMEOUT_S: Final = 60.0


@dataclass(frozen=True, slots=True)
class ApiBenchConfig:
    devices: int = 1000
    days: float = 7.0
    interval_s: int = 60
    clients: int = 8
    requests: int = 400  # per query kind
    export_rows: int = 10_000_000
    workers: int = 2  # API processes (`ioc api --workers`)


HISTORY_MANIFEST: Final = "history.json"


def _quantiles(latencies_s: list[float]) -> dict[str, float]:
    ordered = sorted(latencies_s)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50_ms": round(cuts[49] * 1000, 1),
        "p95_ms": round(cuts[94] * 1000, 1),
        "p99_ms": round(cuts[98] * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
        "requests": len(ordered),
    }


def _seed(
    database_url: str, config: ApiBenchConfig, device_ids: list[str], now: datetime, progress: Callable[[str], None]
) -> int:
    """The history, one day per statement (each a transaction), and every device's latest values."""
    start = now - timedelta(days=config.days)
    per_day = int(86400 / config.interval_s)
    days = int(config.days + 0.999)
    written = 0
    with connect(database_url, autocommit=True) as conn:
        for day in range(days):
            day_start = start + timedelta(days=day)
            steps = min(per_day, int((now - day_start).total_seconds() / config.interval_s))
            cur = conn.execute(
                "INSERT INTO readings (ts, device_id, metric, value, quality) "
                "SELECT %s + make_interval(secs => s * %s), d, m, "
                "CASE m WHEN 'voltage' THEN 230 + 5 * sin(s / 60.0) WHEN 'current' THEN 5 + random() "
                "ELSE 1 + random() END, 0 "
                "FROM unnest(%s::text[]) AS d, unnest(%s::text[]) AS m, generate_series(0, %s - 1) AS s",
                (day_start, config.interval_s, device_ids, list(BENCH_METRICS), steps),
            )
            written += cur.rowcount
            progress(f"seeded day {day + 1}/{days}: {written:,} readings")
        conn.execute(
            "INSERT INTO device_latest (device_id, metric, ts, value, quality) "
            "SELECT DISTINCT ON (device_id, metric) device_id, metric, ts, value, quality FROM readings "
            "WHERE ts > %s ORDER BY device_id, metric, ts DESC",
            (now - timedelta(hours=1),),
        )
        conn.execute("ANALYZE readings")
    return written


def _measure(
    base_url: str, headers: dict[str, str], paths: list[tuple[str, dict[str, str]]], clients: int
) -> dict[str, float]:
    latencies = timed_requests(base_url, headers, paths, clients=clients)
    # The machine's load while it ran: the clients share its cores with the API and the database.
    return {**_quantiles(latencies), "load_1m": round(os.getloadavg()[0], 2)}


def _export(base_url: str, headers: dict[str, str], *, start: datetime, end: datetime, api_pid: int) -> dict[str, Any]:
    """Stream an export, discarding it, while sampling the resident memory of the API's processes (all workers)."""
    process = psutil.Process(api_pid)

    def rss_mb() -> float:
        tree = [process, *process.children(recursive=True)]
        return sum(p.memory_info().rss for p in tree) / 2**20

    before_mb = rss_mb()
    peak = [before_mb]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    size = rows = 0
    with (
        httpx.Client(base_url=base_url, headers=headers, timeout=httpx.Timeout(60, read=600)) as client,
        client.stream(
            "GET", "/export/readings.csv", params={"from": start.isoformat(), "to": end.isoformat()}
        ) as response,
    ):
        if response.status_code != 200:
            raise RuntimeError(f"export answered {response.status_code}")
        for chunk in response.iter_bytes():
            size += len(chunk)
            rows += chunk.count(b"\n")
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    return {
        "rows": rows - 1,
        "bytes": size,
        "seconds": round(seconds, 1),
        "rows_per_s": round((rows - 1) / seconds),
        "api_rss_before_mb": round(before_mb, 1),
        "api_rss_peak_mb": round(peak[0], 1),
    }


def _history_key(config: ApiBenchConfig) -> dict[str, Any]:
    return {"devices": config.devices, "days": config.days, "interval_s": config.interval_s}


def _prepare_history(
    database_url: str, config: ApiBenchConfig, history_dir: Path | None, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Register the fleet and seed and roll up its history, or find it already in `history_dir` (its manifest);
    the history's end (`now`), its size and what preparing it took."""
    manifest_path = history_dir / HISTORY_MANIFEST if history_dir else None
    if manifest_path is not None and manifest_path.exists():
        manifest: dict[str, Any] = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest["config"] != _history_key(config):
            raise ValueError(
                f"{history_dir} holds a history of {manifest['config']}, not {_history_key(config)}: "
                "give another folder or delete it"
            )
        progress(f"reusing the history seeded at {manifest['now']} in {history_dir}")
        return {**manifest, "reused": True}
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    device_ids = [f"bench-{i:05d}" for i in range(config.devices)]
    migrate_database(database_url)
    with connect(database_url) as conn:
        provision_fleet(
            conn,
            [FleetDevice(d, BENCH_TYPE, PROVINCES[i % len(PROVINCES)]) for i, d in enumerate(device_ids)],
            catalog=load_catalog(),
            actor="ioc bench api",
        )
        conn.commit()
    seed_started = time.perf_counter()
    readings = _seed(database_url, config, device_ids, now, progress)
    seed_s = time.perf_counter() - seed_started
    # A running center keeps its rollups current (store.rollups, every minute); long-range queries read them.
    rollup_started = time.perf_counter()
    with connect(database_url, autocommit=True) as conn:
        while not roll_up(conn).caught_up:
            pass
    rollup_s = time.perf_counter() - rollup_started
    progress(f"rolled up in {rollup_s:.0f} s")
    manifest = {
        "config": _history_key(config),
        "now": now.isoformat(),
        "readings_seeded": readings,
        "seed_s": round(seed_s, 1),
        "rollup_s": round(rollup_s, 1),
    }
    if manifest_path is not None:
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return {**manifest, "reused": False}


def run_api_bench(
    config: ApiBenchConfig,
    *,
    runtime_dir: Path,
    history_dir: Path | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure on a fresh history in a folder deleted afterwards, or on the one kept in `history_dir`."""
    root = runtime_dir / f"bench-api-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    pg_root = history_dir / "pg" if history_dir else root / "pg"
    device_ids = [f"bench-{i:05d}" for i in range(config.devices)]
    try:
        with EmbeddedPostgres(pg_root) as pg, EmbeddedMosquitto(root / "mq") as mq:
            history = _prepare_history(pg.url, config, history_dir, progress)
            now = datetime.fromisoformat(history["now"])
            with connect(pg.url) as conn:
                key = create_api_key(
                    conn,
                    name=f"bench-{root.name}-{int(time.time())}",
                    role="admin",
                    scope=EVERYTHING,
                    lifetime=timedelta(hours=6),
                    actor="ioc bench api",
                )
                conn.commit()
            port = find_free_port()
            env = {**os.environ, "IOC_DATABASE_URL": pg.url, "IOC_MQTT_URL": mq.url, "IOC_RUNTIME_DIR": str(root)}
            api = subprocess.Popen(
                [
                    *(sys.executable, "-m", "ioc", "--log-level", "WARNING", "api"),
                    *("--port", str(port), "--workers", str(config.workers)),
                ],
                env=env,
                stdout=subprocess.DEVNULL,
            )
            try:
                base = f"http://127.0.0.1:{port}"
                headers = {"Authorization": f"Bearer {key.secret}"}
                deadline = time.monotonic() + API_START_TIMEOUT_S
                while True:
                    try:
                        if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("the API did not start")
                    time.sleep(0.2)
                day_ago = (now - timedelta(hours=24)).isoformat()
                queries = {
                    "device_24h_1min_buckets": [
                        (
                            f"/devices/{device_ids[(i * 37) % len(device_ids)]}/buckets",
                            {"bucket_s": "60", "from": day_ago, "to": now.isoformat(), "metric": "active_power"},
                        )
                        for i in range(config.requests)
                    ],
                    "latest_all_devices": [("/latest", {"limit": "50000"})] * config.requests,
                    "province_kpis": [
                        ("/kpis", {"province": PROVINCES[i % len(PROVINCES)]}) for i in range(config.requests)
                    ],
                }
                results: dict[str, Any] = {}
                for name, paths in queries.items():
                    _measure(base, headers, paths[: config.clients * 2], config.clients)  # warm up
                    results[name] = _measure(base, headers, paths, config.clients)
                    progress(f"{name}: {results[name]}")
                rows_per_minute = config.devices * len(BENCH_METRICS)
                export_minutes = max(1, config.export_rows // rows_per_minute)
                export = _export(base, headers, start=now - timedelta(minutes=export_minutes), end=now, api_pid=api.pid)
                progress(f"export: {export}")
            finally:
                api.terminate()
                api.wait(30)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "config": asdict(config),
        "history": history,
        "queries": results,
        "export": export,
        "cpu_count": psutil.cpu_count(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
