"""`ioc bench analytics --lag`: does the live analytics job keep up with ingest? A writer commits readings the way
ingest does (binary COPY into `readings`, one transaction per batch) at a set message rate, while the production
`AnalyticsJob` (per-metric and joint detectors, rules, alarms, anomalies) runs its own loop against the same
private database, state saves every `IOC_ANALYTICS_STATE_SAVE_S` included. For every commit: the lag from its
commit to the end of the job's tick that scored it (that tick's anomalies and alarms are committed). Reported per
reading (a commit weighs its readings) as p50/p99/max over the commits after a warm-up, with where it goes
(`lag_breakdown`: waiting for a tick, held back by ticks that did not read it, the scoring tick's fetch, score and
write) and the job thread's CPU per reading in each phase.

No broker: ingest's own throughput is `ioc bench ingest`'s; this measures the job behind it. The writer runs in
its own process, as ingest workers do, so it does not share the job's interpreter lock.
"""

from __future__ import annotations

import logging
import multiprocessing
import random
import shutil
import statistics
import threading
import time
from bisect import bisect_right
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

import psutil

if TYPE_CHECKING:
    from analytics.job import TickStats

_LOGGER = logging.getLogger(__name__)

DEVICE_TYPE: Final = "pump_station"  # 5 metrics: one message is 5 readings; 4 of them watched jointly


@dataclass(frozen=True, slots=True)
class LagBenchConfig:
    """The load: `messages_per_s` messages of one reading per metric, spread over `devices`, committed in
    batches every `batch_ms`, for `seconds`. The first `warmup_s` are not measured: by then every series has left
    its detector's learning (100 readings), and a share `spike_fraction` of readings are spikes, so the measured
    part writes anomalies and raises alarms as a live job does (detector alarms after `learn_s`)."""

    devices: int = 5000
    messages_per_s: float = 5000.0
    seconds: float = 180.0
    warmup_s: float = 120.0
    spike_fraction: float = 0.0005
    learn_s: float = 60.0
    batch_ms: float = 50.0
    poll_interval_s: float = 0.05
    seed: int = 7


def _register(conn: object, config: LagBenchConfig) -> list[str]:
    """Devices straight into the registry (no broker account is needed without a broker)."""
    ids = [f"lag-{i:06d}" for i in range(config.devices)]
    conn.execute(  # type: ignore[attr-defined]
        "INSERT INTO devices (device_id, type_code, province, sector) "
        "SELECT d, %s, 'can-tho', 'energy' FROM unnest(%s::text[]) AS d",
        (DEVICE_TYPE, ids),
    )
    conn.commit()  # type: ignore[attr-defined]
    return ids


class _Writer:
    """Commits batches of readings at the configured rate; remembers (ingest xid, commit wall time) per batch."""

    def __init__(self, url: str, config: LagBenchConfig, device_ids: list[str], metrics: list[str]) -> None:
        self.url = url
        self.config = config
        self.device_ids = device_ids
        self.metrics = metrics
        self.commits: list[tuple[int, float, int]] = []  # (xid, committed at, readings)
        self.behind_s = 0.0  # how far the writer fell behind its schedule at worst
        rng = random.Random(config.seed)
        # A plausible running pump per device: current, pressure, flow, vibration, sump level.
        self.base = [
            (rng.uniform(60, 200), rng.uniform(2, 5), rng.uniform(400, 2500), rng.uniform(1.5, 3.0), 2.0)
            for _ in device_ids
        ]
        self.rng = rng

    def run(self, stop: threading.Event) -> None:
        from store.pool import connect
        from store.readings import write_readings

        cfg = self.config
        per_batch = cfg.messages_per_s * cfg.batch_ms / 1000.0
        owed = 0.0
        cursor = 0
        started = time.monotonic()
        batch_no = 0
        last_ts: dict[int, float] = {}
        gauss = self.rng.gauss
        with connect(self.url) as conn:
            while not stop.is_set():
                due = started + batch_no * cfg.batch_ms / 1000.0
                wait = due - time.monotonic()
                if wait > 0:
                    stop.wait(wait)
                else:
                    self.behind_s = max(self.behind_s, -wait)
                batch_no += 1
                owed += per_batch
                count = int(owed)
                owed -= count
                now = time.time()
                rows = []
                for _ in range(count):
                    index = cursor
                    cursor = (cursor + 1) % len(self.device_ids)
                    # A device's readings are strictly newer than its last ones (the table's key).
                    ts = max(now, last_ts.get(index, 0.0) + 0.001)
                    last_ts[index] = ts
                    moment = datetime.fromtimestamp(ts, UTC)
                    device = self.device_ids[index]
                    for metric, base in zip(self.metrics, self.base[index], strict=True):
                        value = base * (1.0 + gauss(0.0, 0.01))
                        if self.rng.random() < cfg.spike_fraction:
                            value *= 3.0
                        rows.append((moment, device, metric, value, 0))
                write_readings(conn, rows)
                row = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
                assert row is not None
                conn.commit()
                self.commits.append((int(row[0]), time.time(), len(rows)))


def _writer_process(  # noqa: PLR0917 - a process target takes its arguments positionally
    url: str,
    config: LagBenchConfig,
    device_ids: list[str],
    metrics: list[str],
    stop: threading.Event,
    results: multiprocessing.Queue[tuple[list[tuple[int, float, int]], float]],
) -> None:
    """The writer's process: write until `stop`, then hand back its commits and how far it fell behind."""
    writer = _Writer(url, config, device_ids, metrics)
    writer.run(stop)
    results.put((writer.commits, writer.behind_s))


def run_lag_bench(config: LagBenchConfig, *, runtime_dir: Path) -> dict[str, object]:
    """Start a private database, the writer and the job; return the lag figures (JSON-ready)."""
    from analytics.job import AnalyticsJob
    from analytics.runner import job_config
    from core.lifecycle import running_in_thread
    from core.settings import Settings
    from devices.catalog import load_catalog
    from devices.schema import migrate_database
    from embedded.runtime import EmbeddedPostgres
    from store.pool import connect, open_pool

    root = runtime_dir / f"bench-lag-{int(time.time())}"
    shutil.rmtree(root, ignore_errors=True)
    catalog = load_catalog()
    dtype = catalog.get(DEVICE_TYPE)
    assert dtype is not None
    metrics = list(dtype.metric_names)
    ticks: list[tuple[int, float]] = []  # (watermark after the tick, its end in wall time)
    tick_log: list[_TickRecord] = []
    try:
        with EmbeddedPostgres(root / "pg") as pg:
            migrate_database(pg.url)
            with connect(pg.url) as conn:
                device_ids = _register(conn, config)
            settings = Settings()
            job_settings = job_config(settings, name="lag")
            from dataclasses import replace

            job_settings = replace(
                job_settings,
                poll_interval_s=config.poll_interval_s,
                detector_policy=replace(job_settings.detector_policy, learn_s=config.learn_s),
            )
            writer = _Writer(pg.url, config, device_ids, metrics)
            process = psutil.Process()
            with open_pool(pg.url, min_size=1, max_size=2, name="ioc-bench-lag") as pool:
                job = AnalyticsJob(job_settings, pool=pool, catalog=catalog, notifier=None)
                job.restore()

                def record(stats: TickStats) -> None:
                    ended = time.time()
                    ticks.append((job.watermark, ended))
                    tick_log.append(_TickRecord(ended - stats.tick_s, ended, stats))

                def job_loop(stop: threading.Event) -> None:
                    # The production loop: its polling, and its state saves every `state_save_interval_s`.
                    job.run(stop, on_tick=record)

                cpu_before = process.cpu_times()
                wall_before = time.monotonic()
                spawn = multiprocessing.get_context("spawn")
                stop_writer = spawn.Event()
                results: multiprocessing.Queue[tuple[list[tuple[int, float, int]], float]] = spawn.Queue()
                child = spawn.Process(
                    target=_writer_process,
                    args=(pg.url, config, device_ids, metrics, stop_writer, results),
                    name="lag-writer",
                )
                with running_in_thread(job_loop, name="lag-job", join_timeout_s=120):
                    child.start()
                    try:
                        time.sleep(config.seconds)
                    finally:
                        stop_writer.set()
                    writer.commits, writer.behind_s = results.get(timeout=60)
                    child.join(timeout=30)
                # The job drains what was committed last, so every measured commit has its lag.
                deadline = time.monotonic() + 60
                last_xid = writer.commits[-1][0] if writer.commits else 0
                while job.watermark <= last_xid and time.monotonic() < deadline:
                    job.tick()
                    ticks.append((job.watermark, time.time()))
                cpu_after = process.cpu_times()
                wall = time.monotonic() - wall_before
                totals = dict(job.totals)
                totals["saves"], save_s = job.saves, job.save_s
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return _report(
        config,
        writer,
        ticks,
        tick_log,
        cpu_s=(cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system),
        wall_s=wall,
        totals=totals,
        save_s=save_s,
    )


@dataclass(frozen=True, slots=True)
class _TickRecord:
    """One tick of the job: when it began and ended (wall time) and its own figures."""

    began: float
    ended: float
    stats: TickStats


def _breakdown(
    measured: list[tuple[int, float, int]], ticks: list[tuple[int, float]], log: list[_TickRecord]
) -> dict[str, object]:
    """Where a reading's lag goes: `wait` from its commit to the start of the next tick (poll interval, or the
    tick running when it committed); `held` from there to the start of the tick that scored it (ticks in between
    did not read it: the watermark was held by an older open transaction, or the span per tick stopped short);
    then the scoring tick's `fetch`, `score` and `write` (with the commit). Quantiles per reading; `tail` is the
    mean of each part over the readings whose lag is at or above the p99."""
    if not log or not measured:
        return {}
    starts = [t.began for t in log]
    watermarks = [w for w, _ in ticks[: len(log)]]
    parts: dict[str, list[tuple[float, int]]] = {k: [] for k in ("wait", "held", "fetch", "score", "write", "lag")}
    for xid, committed, n in measured:
        at = bisect_right(watermarks, xid)
        if at >= len(log):
            continue
        first = min(bisect_right(starts, committed), at)
        tick = log[at]
        values = {
            "wait": starts[first] - committed if first < len(log) else 0.0,
            "held": tick.began - starts[first],
            "fetch": tick.stats.fetch_s,
            "score": tick.stats.score_s,
            "write": tick.stats.write_s,
            "lag": tick.ended - committed,
        }
        for key, value in values.items():
            parts[key].append((max(0.0, value), n))
    p99 = _quantile(parts["lag"], 0.99) or 0.0
    tail_rows = [i for i, (lag, _) in enumerate(parts["lag"]) if lag >= p99]
    busy = [t.stats for t in log if t.stats.readings > 0]
    readings = sum(s.readings for s in busy)
    per_tick = sorted(s.readings for s in busy)
    return {
        "p50_s": {k: _round(_quantile(v, 0.50)) for k, v in parts.items()},
        "p99_s": {k: _round(_quantile(v, 0.99)) for k, v in parts.items()},
        "mean_s": {k: _round(statistics.fmean([x for x, _ in v], weights=[n for _, n in v])) for k, v in parts.items()},
        "tail_mean_s": {
            k: _round(statistics.fmean([v[i][0] for i in tail_rows])) for k, v in parts.items() if tail_rows
        },
        "readings_per_busy_tick": {
            "p50": per_tick[len(per_tick) // 2] if per_tick else None,
            "max": per_tick[-1] if per_tick else None,
        },
        "tick_wall_s": {
            "p50": _round(statistics.median(t.ended - t.began for t in log)),
            "max": _round(max(t.ended - t.began for t in log)),
        },
        # The job thread's own CPU per reading in each phase over busy ticks (learning included), and the share of
        # the ticks' wall time it was on a core: well under 100 % means it waited (database, other processes).
        "job_thread_cpu_us_per_reading": {
            "fetch": _round(1e6 * sum(s.fetch_cpu_s for s in busy) / readings) if readings else None,
            "score": _round(1e6 * sum(s.score_cpu_s for s in busy) / readings) if readings else None,
            "write": _round(1e6 * sum(s.write_cpu_s for s in busy) / readings) if readings else None,
        },
        "job_thread_on_cpu_pct": {
            phase: _round(
                100.0
                * sum(getattr(s, f"{phase}_cpu_s") for s in busy)
                / max(1e-9, sum(getattr(s, f"{phase}_s") for s in busy))
            )
            for phase in ("fetch", "score", "write")
        },
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _quantile(values: list[tuple[float, int]], q: float) -> float | None:
    """The `q` quantile of lags weighted by how many readings each has: a reading's lag, not a commit's."""
    if not values:
        return None
    ordered = sorted(values)
    total = sum(n for _, n in ordered)
    rank = min(total - 1, max(0, round(q * (total - 1))))
    seen = 0
    for lag, n in ordered:
        seen += n
        if seen > rank:
            return lag
    return ordered[-1][0]


def _report(
    config: LagBenchConfig,
    writer: _Writer,
    ticks: list[tuple[int, float]],
    tick_log: list[_TickRecord],
    *,
    cpu_s: float,
    wall_s: float,
    totals: dict[str, int],
    save_s: float = 0.0,
) -> dict[str, object]:
    watermarks = [w for w, _ in ticks]
    # Watermarks only grow: the first tick whose watermark passes a commit's xid scored it (and committed that
    # tick's anomalies and alarms): every reading of the commit has that lag. A commit the job had not scored when
    # the drain gave up counts with its lag so far (a lower bound), so a job that falls behind cannot look better.
    lags: list[tuple[float, int]] = []
    unscored = 0
    first = writer.commits[0][1] if writer.commits else 0.0
    gave_up = ticks[-1][1] if ticks else time.time()
    measured = [c for c in writer.commits if c[1] - first >= config.warmup_s]
    for xid, committed, readings_in_commit in measured:
        at = bisect_right(watermarks, xid)
        if at >= len(ticks):
            unscored += 1
            lags.append((max(0.0, gave_up - committed), readings_in_commit))
            continue
        lags.append((max(0.0, ticks[at][1] - committed), readings_in_commit))
    readings = sum(n for _, _, n in measured)
    span = (measured[-1][1] - measured[0][1]) if len(measured) > 1 else 0.0
    busy = [t.stats for t in tick_log if t.stats.readings > 0]
    return {
        "what": "commit → scored lag of the live analytics job (per-metric + joint detectors, rules, alarms)",
        "config": asdict(config),
        "commits_measured": len(measured),
        "commits_unscored": unscored,
        "readings_per_s": round(readings / span) if span > 0 else None,
        "messages_per_s": round(readings / len(writer.metrics) / span) if span > 0 else None,
        # Per reading over the measured window: scored_at (the end of the tick that committed its scoring) minus
        # committed_at (its ingest commit); a lower bound when some commits were never scored.
        "lag_s": {
            "p50": _quantile(lags, 0.50),
            "p99": _quantile(lags, 0.99),
            "max": max(lag for lag, _ in lags) if lags else None,
            "mean": statistics.fmean([lag for lag, _ in lags], weights=[n for _, n in lags]) if lags else None,
            "lower_bound": unscored > 0,
        },
        "writer_behind_schedule_max_s": round(writer.behind_s, 3),
        "ticks": len(ticks),
        "tick_s_mean": {
            "fetch": statistics.fmean(t.fetch_s for t in busy) if busy else None,
            "score": statistics.fmean(t.score_s for t in busy) if busy else None,
            "write": statistics.fmean(t.write_s for t in busy) if busy else None,
        },
        "lag_breakdown": _breakdown(measured, ticks, tick_log),
        "state_saves": {"count": totals.get("saves"), "seconds": round(save_s, 3)},
        "readings_scored": totals.get("readings"),
        "anomalies": totals.get("anomalies"),
        "alarms_raised": totals.get("raised"),
        "bench_process_cpu_pct": round(100.0 * cpu_s / wall_s, 1) if wall_s > 0 else None,
        # The job's CPU (this process: the job thread; the writer has its own) per reading it scored, fetch, scoring
        # and writes together, over the whole run (learning included): what one job thread needs per reading.
        "job_cpu_us_per_reading": round(1e6 * cpu_s / scored, 2) if (scored := totals.get("readings")) else None,
    }
