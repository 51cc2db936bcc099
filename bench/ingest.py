"""`ioc bench ingest`: the end-to-end ingest benchmark (publish → broker → ingest workers → committed rows).

It provisions K devices in a fresh database, runs N ingest worker processes and P publisher processes that
publish QoS 1 messages of 5 readings as fast as they can (or at a set rate) for S seconds, waits until every
acknowledged message is committed, and returns one JSON-ready result.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.queues
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any, LiteralString

import psutil
from psycopg import sql

from core.lifecycle import running_in_thread
from core.settings import Settings
from devices.catalog import load_catalog
from devices.provisioning import FleetDevice, provision_fleet
from devices.schema import migrate_database
from embedded.runtime import EmbeddedMosquitto
from embedded.services import center_services
from ingest.supervisor import IngestSupervisor, ingest_config
from protocol.broker_url import BrokerAddress, parse_broker_url
from store.pool import connect

_LOGGER = logging.getLogger(__name__)

BENCH_PROVINCE = "can-tho"
BENCH_TYPE = "smart_meter"
BENCH_METRICS = ("active_power", "voltage", "current", "power_factor", "frequency")
# Unacknowledged messages a publisher lets pile up before it waits: bounds its memory, keeps the pipe full.
PUBLISH_WINDOW = 5000
NO_PROGRESS_TIMEOUT_S = 30.0
# The JSON contract with an epoch-millisecond `ts`, formatted directly: the load generator shares the cores
# with what it measures, so it spends as little as it can per message.
PAYLOAD_TEMPLATE = (
    '{"seq":%d,"ts":%d,"readings":{"active_power":%r,"voltage":%r,"current":%r,"power_factor":0.9,"frequency":50.0}}'
)


@dataclass(frozen=True, slots=True)
class IngestBenchConfig:
    seconds: float = 60.0
    workers: int = 2
    publishers: int = 2
    devices: int = 1000
    rate: float = 0.0
    drain_timeout_s: float = 120.0
    # In as-fast-as-possible mode, how far (messages) publishers may run ahead of committed messages.
    backlog_messages: int = 10_000


@dataclass(frozen=True, slots=True)
class PublisherResult:
    published: int
    acked: int
    seconds: float
    peak_rss_mb: float
    cpu_s: float


def _publisher_main(  # noqa: PLR0917 - a process target takes positional arguments
    broker: BrokerAddress,
    device_ids: list[str],
    seconds: float,
    rate: float,
    start_at: float,
    results: multiprocessing.queues.Queue[PublisherResult],
    committed: Synchronized[int],
    backlog_share: tuple[int, float],
) -> None:
    from bench.publisher import RawPublisher, run_publisher
    from protocol.topics import telemetry_topic

    publisher = RawPublisher(broker, client_id=f"bench-pub-{device_ids[0]}", window=PUBLISH_WINDOW)
    topics = [telemetry_topic(BENCH_PROVINCE, "energy", d).encode() for d in device_ids]
    last_ts_ms = [0] * len(device_ids)
    n = len(device_ids)

    def make_message(i: int) -> tuple[bytes, bytes]:
        k = i % n
        # Strictly increasing epoch milliseconds per device: each message is a distinct reading.
        ts_ms = max(int(time.time() * 1000), last_ts_ms[k] + 1)
        last_ts_ms[k] = ts_ms
        v = i % 1000
        return topics[k], (PAYLOAD_TEMPLATE % (i, ts_ms, 1.0 + v / 100, 220.0 + v / 100, 5.0 + v / 1000)).encode()

    while time.time() < start_at:
        time.sleep(0.001)
    backlog, share = backlog_share

    def may_send(sent: int) -> bool:
        # Closed loop: this publisher's share of everything stays at most `backlog` messages ahead of what
        # ingest has committed, so "as fast as possible" converges on what the pipeline sustains.
        return sent - committed.value * share < backlog * share

    elapsed = run_publisher(publisher, make_message=make_message, seconds=seconds, rate=rate, may_send=may_send)
    publisher.drain(60.0)
    publisher.close()
    rss = psutil.Process().memory_info().rss / 2**20
    cpu = psutil.Process().cpu_times()
    results.put(
        PublisherResult(
            published=publisher.counts.sent,
            acked=publisher.counts.acked,
            seconds=elapsed,
            peak_rss_mb=rss,
            cpu_s=cpu.user + cpu.system,
        )
    )


def _provision(database_url: str, device_ids: list[str]) -> None:
    with connect(database_url) as conn:
        fleet = [FleetDevice(d, BENCH_TYPE, BENCH_PROVINCE, name="bench meter") for d in device_ids]
        provision_fleet(conn, fleet, catalog=load_catalog(), actor="ioc bench ingest")
        conn.commit()


@contextlib.contextmanager
def _bench_database(server_url: str) -> Iterator[str]:
    """A fresh database on the same server, dropped afterwards."""
    database = f"bench_{int(time.time())}"
    name = sql.Identifier(database)
    base, _, _ = server_url.rpartition("/")
    with connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))
    try:
        url = f"{base}/{database}"
        migrate_database(url)
        yield url
    finally:
        with connect(f"{base}/postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


@contextlib.contextmanager
def _bench_broker(settings: Settings, configured_url: str) -> Iterator[tuple[str, Path | None]]:
    """The configured broker, or a fresh embedded one (no leftover sessions from other runs) and its config."""
    if settings.mqtt_url is not None:
        yield configured_url, None
        return
    root = settings.runtime_dir / "bench" / "mosquitto"
    shutil.rmtree(root, ignore_errors=True)
    with EmbeddedMosquitto(root) as broker:
        yield broker.url, broker.config_file


def _metric_total(metrics_dir: Path, name: str) -> float:
    """The sum over worker processes of a multiprocess counter."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    return sum(sample.value for family in registry.collect() for sample in family.samples if sample.name == name)


def _histogram_quantiles(metrics_dir: Path, name: str, quantiles: tuple[float, ...]) -> dict[float, float]:
    """Quantiles (linear interpolation inside buckets, as Prometheus does) of a multiprocess histogram."""
    from prometheus_client import CollectorRegistry, multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(metrics_dir))  # type: ignore[no-untyped-call]
    buckets: dict[float, float] = {}
    for family in registry.collect():
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name == f"{name}_bucket":
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] == 0:
        return dict.fromkeys(quantiles, float("nan"))
    total = buckets[bounds[-1]]
    out = {}
    for q in quantiles:
        rank = q * total
        prev_bound, prev_count = 0.0, 0.0
        for bound in bounds:
            count = buckets[bound]
            if count >= rank:
                if bound == float("inf"):
                    out[q] = prev_bound
                else:
                    frac = 0.0 if count == prev_count else (rank - prev_count) / (count - prev_count)
                    out[q] = prev_bound + frac * (bound - prev_bound)
                break
            prev_bound, prev_count = bound, count
    return out


class _CpuMeter:
    """CPU seconds used by each part of the pipeline (ingest, broker, database) during the measured window."""

    def __init__(self) -> None:
        self._groups: dict[str, Callable[[], list[psutil.Process]]] = {}
        self._seen: dict[str, dict[int, float]] = {}
        self._baseline: dict[str, dict[int, float]] = {}

    def watch(self, name: str, processes: Callable[[], list[psutil.Process]]) -> None:
        self._groups[name] = processes
        self._seen[name] = {}

    def sample(self) -> None:
        for name, processes in self._groups.items():
            seen = self._seen[name]
            for proc in processes():
                with contextlib.suppress(psutil.Error):
                    t = proc.cpu_times()
                    seen[proc.pid] = max(seen.get(proc.pid, 0.0), t.user + t.system)

    def start(self) -> None:
        self.sample()
        self._baseline = {name: dict(seen) for name, seen in self._seen.items()}

    def used(self) -> dict[str, float]:
        self.sample()
        return {
            name: round(sum(cpu - self._baseline.get(name, {}).get(pid, 0.0) for pid, cpu in seen.items()), 1)
            for name, seen in self._seen.items()
        }


def _processes_matching(*needles: str) -> Callable[[], list[psutil.Process]]:
    """Processes whose command line holds every needle, with their children (PostgreSQL backends)."""

    def find() -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if all(n in cmdline for n in needles):
                found.append(proc)
                with contextlib.suppress(psutil.Error):
                    found.extend(proc.children(recursive=True))
        return found

    return find


def _count(database_url: str, query: LiteralString) -> int:
    with connect(database_url) as conn:
        row = conn.execute(query).fetchone()
    return int(row[0]) if row else 0


def run_ingest_bench(config: IngestBenchConfig, *, settings: Settings) -> dict[str, Any]:
    from rich.console import Console

    console = Console(stderr=True)
    device_ids = [f"bench-{i:06d}" for i in range(config.devices)]
    with (
        center_services(settings) as urls,
        _bench_database(urls.database_url) as database_url,
        _bench_broker(settings, urls.mqtt_url) as (mqtt_url, broker_config),
    ):
        _provision(database_url, device_ids)
        group = f"bench-{int(time.time())}"
        metrics_dir = settings.runtime_dir / "bench" / "metrics"
        base = replace(
            ingest_config(settings, database_url=database_url, mqtt_url=mqtt_url), client_id=group, group=group
        )
        with IngestSupervisor(base, workers=config.workers, metrics_dir=metrics_dir, log_level="WARNING") as supervisor:
            peak_rss = [0.0]

            def sample_rss(stop: threading.Event) -> None:
                while not stop.wait(0.5):
                    total = 0.0
                    for pid in supervisor.pids.values():
                        with contextlib.suppress(psutil.Error, TypeError):
                            total += psutil.Process(pid).memory_info().rss / 2**20
                    peak_rss[0] = max(peak_rss[0], total)
                    cpu.sample()

            cpu = _CpuMeter()
            cpu.watch(
                "ingest", lambda: [psutil.Process(p) for p in supervisor.pids.values() if p and psutil.pid_exists(p)]
            )
            if broker_config is not None:
                cpu.watch("broker", _processes_matching("mosquitto", str(broker_config)))
            db_port = urls.database_url.rsplit(":", 1)[1].split("/", 1)[0]
            cpu.watch("database", _processes_matching("postgres", "-D", f"-p {db_port}"))
            with contextlib.ExitStack() as samplers:
                samplers.enter_context(running_in_thread(sample_rss, name="bench-sampler"))
                if not supervisor.wait_ready(60):
                    raise RuntimeError("ingest workers did not subscribe within 60 s")
                ctx = multiprocessing.get_context("spawn")
                results: multiprocessing.queues.Queue[PublisherResult] = ctx.Queue()
                committed: Synchronized[int] = ctx.Value("q", 0)

                def follow_commits(stop: threading.Event) -> None:
                    while not stop.wait(0.1):
                        committed.value = int(_metric_total(metrics_dir, "ioc_ingest_messages_total"))

                samplers.enter_context(running_in_thread(follow_commits, name="bench-commits"))
                start_at = time.time() + 2.0
                shards = [device_ids[i :: config.publishers] for i in range(config.publishers)]
                procs = [
                    ctx.Process(
                        target=_publisher_main,
                        args=(
                            parse_broker_url(mqtt_url),
                            shard,
                            config.seconds,
                            config.rate / config.publishers,
                            start_at,
                            results,
                            committed,
                            (config.backlog_messages, 1.0 / config.publishers),
                        ),
                    )
                    for shard in shards
                ]
                for p in procs:
                    p.start()
                while time.time() < start_at:
                    time.sleep(0.01)
                cpu.start()
                console.print(f"publishing for {config.seconds:g} s with {config.publishers} publishers…")
                publisher_results = [results.get(timeout=config.seconds + 120) for _ in procs]
                for p in procs:
                    p.join()
                published = sum(r.acked for r in publisher_results)
                attempted = sum(r.published for r in publisher_results)
                publish_seconds = max(r.seconds for r in publisher_results)
                expected_rows = published * len(BENCH_METRICS)
                console.print(f"published {published} messages; waiting for {expected_rows} rows…")
                stored = 0
                last_progress = time.monotonic()
                drain_started = time.monotonic()
                while time.monotonic() - drain_started < config.drain_timeout_s:
                    now_stored = _count(database_url, "SELECT count(*) FROM readings")
                    if now_stored != stored:
                        stored, last_progress = now_stored, time.monotonic()
                    if stored >= expected_rows or time.monotonic() - last_progress > NO_PROGRESS_TIMEOUT_S:
                        break
                    time.sleep(0.5)
                drain_seconds = time.monotonic() - drain_started
                cpu_used = cpu.used()
                distinct = _count(
                    database_url, "SELECT count(*) FROM (SELECT DISTINCT device_id, metric, ts FROM readings) d"
                )
                quantiles = _histogram_quantiles(metrics_dir, "ioc_ingest_latency_seconds", (0.5, 0.99))
                commit_q = _histogram_quantiles(metrics_dir, "ioc_ingest_commit_seconds", (0.5, 0.99))
                batch_q = _histogram_quantiles(metrics_dir, "ioc_ingest_batch_rows", (0.5,))
    result: dict[str, Any] = {
        "published": published,
        "publish_attempted": attempted,
        "stored_rows": stored,
        "expected_rows": expected_rows,
        "lost": max(0, expected_rows - stored) // len(BENCH_METRICS),
        "lost_rows": max(0, expected_rows - stored),
        "duplicates": stored - distinct,
        # Sustained end to end: everything published, divided by the time until the last row was committed.
        "msgs_per_s": round(published / (publish_seconds + drain_seconds), 1),
        "readings_per_s": round(stored / (publish_seconds + drain_seconds), 1),
        "publish_msgs_per_s": round(published / publish_seconds, 1),
        "latency_ms": {"p50": round(quantiles[0.5] * 1000, 1), "p99": round(quantiles[0.99] * 1000, 1)},
        "commit_ms": {"p50": round(commit_q[0.5] * 1000, 1), "p99": round(commit_q[0.99] * 1000, 1)},
        "batch_rows_p50": round(batch_q[0.5]),
        "drain_s_after_publish": round(drain_seconds, 2),
        "workers": config.workers,
        "publishers": config.publishers,
        "devices": config.devices,
        "target_rate": config.rate,
        "seconds": config.seconds,
        "peak_rss_mb": round(peak_rss[0], 1),
        "publisher_rss_mb": round(max(r.peak_rss_mb for r in publisher_results), 1),
        "cpu_count": psutil.cpu_count(),
        # CPU seconds per part over the whole run: where the two cores went.
        "cpu_s": {**cpu_used, "publishers": round(sum(r.cpu_s for r in publisher_results), 1)},
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    return result
