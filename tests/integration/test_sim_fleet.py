"""The simulated fleet against the real center: broker outages buffered and backfilled, injected faults found in
the stored readings as labelled, and every published message accounted for."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

from devices.catalog import Catalog
from devices.registry import create_device
from embedded.runtime import EmbeddedMosquitto
from firmware_sim.clock import ScaledClock
from firmware_sim.faults import FaultKind, FaultLabel, FaultSpec, read_labels
from firmware_sim.firmware import FirmwareDevice, SimDevice
from firmware_sim.fleet import FleetConfig, FleetResult, run_fleet
from firmware_sim.models import TYPE_CODES, model_for
from firmware_sim.roster import build_devices
from protocol.broker_url import parse_broker_url
from tests.integration.conftest import RunningIngest, ScratchDatabase, wait_for

Rows = dict[tuple[str, str, int], float]  # (device, metric, ts ms) -> value
WINDOW_FAULTS: tuple[FaultKind, ...] = ("level_shift", "drift", "stuck", "noise", "dropout", "offline", "clock_skew")


def _register_all(database: ScratchDatabase, catalog: Catalog, devices: Sequence[SimDevice]) -> None:
    with psycopg.connect(database.url) as conn:
        for d in devices:
            create_device(conn, device_id=d.device_id, type_code=d.type_code, province=d.province, catalog=catalog)
        conn.commit()


def _rows(database: ScratchDatabase) -> Rows:
    with database.connect() as conn:
        fetched = conn.execute(b"SELECT device_id, metric, ts, value FROM readings").fetchall()
    return {(str(d), str(m), round(ts.timestamp() * 1000)): float(v) for d, m, ts, v in fetched}


def _count(database: ScratchDatabase, sql: str) -> int:
    value = database.scalar(sql)
    assert isinstance(value, int)
    return value


def _settled(database: ScratchDatabase, expected_rows: int, expected_quarantined: int, what: str) -> None:
    wait_for(
        lambda: (
            _count(database, "SELECT count(*) FROM readings") >= expected_rows
            and _count(database, "SELECT count(*) FROM quarantine") >= expected_quarantined
        ),
        timeout_s=120,
        what=what,
    )
    time.sleep(1.0)  # anything beyond the expectation would show up now


def _clean_stream(
    devices: Sequence[SimDevice], *, seed: int, start_ms: int, interval_ms: int, until_ms: int
) -> dict[tuple[str, int], dict[str, float]]:
    """What each device measured at each true sample time (the fault-free twin of the run)."""
    out: dict[tuple[str, int], dict[str, float]] = {}
    for d in devices:
        fw = FirmwareDevice(device=d, seed=seed, start_ms=start_ms, interval_ms=interval_ms)
        while fw.next_ms <= until_ms:
            ts = fw.next_ms
            (message,) = fw.step().messages
            out[d.device_id, ts] = dict(message.readings)
    return out


def test_broker_outage_of_60_s_is_buffered_and_backfilled_with_original_timestamps(
    database: ScratchDatabase,
    broker: EmbeddedMosquitto,
    catalog: Catalog,
    run_ingest: Callable[[], RunningIngest],
    tmp_path: Path,
) -> None:
    devices = build_devices(30, prefix="outage")
    _register_all(database, catalog, devices)
    start = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0).timestamp()
    config = FleetConfig(
        broker=parse_broker_url(broker.url), devices=devices, seed=5, interval_s=1.0, buffer_dir=tmp_path / "buf"
    )
    result: list[FleetResult] = []
    stop = threading.Event()
    fleet = threading.Thread(
        target=lambda: result.append(run_fleet(config, duration_s=600, clock=ScaledClock(start), stop=stop)),
        daemon=True,
    )
    with run_ingest():
        fleet.start()
        wait_for(lambda: _count(database, "SELECT count(DISTINCT device_id) FROM readings") == 30, what="fleet up")
        time.sleep(5)
        broker.stop()
        time.sleep(3)  # ingest commits what it had received
        before = _count(database, "SELECT count(*) FROM readings")
        time.sleep(57)
        assert _count(database, "SELECT count(*) FROM readings") == before  # nothing got through meanwhile
        broker.start()
        time.sleep(15)
        stop.set()
        fleet.join(timeout=120)
        assert not fleet.is_alive()
        stats = result[0].stats
        assert stats.buffered_total >= 30 * 55  # a minute of every device's readings went to disk
        assert stats.backfilled == stats.buffered_total
        assert stats.dropped == 0 and stats.unacked == 0 and stats.buffered == 0
        assert stats.disconnects >= 30
        _settled(database, stats.expected_rows, 0, "every reading stored")
    rows = _rows(database)
    assert len(rows) == stats.expected_rows
    assert _count(database, "SELECT count(*) FROM quarantine") == 0
    # Every reading the devices measured is there, at the time it was measured, with its value.
    until_ms = max(ts for _, _, ts in rows)
    clean = _clean_stream(devices, seed=5, start_ms=result[0].start_ms, interval_ms=1000, until_ms=until_ms)
    expected = {(d, m, ts): v for (d, ts), readings in clean.items() for m, v in readings.items()}
    assert rows == expected


def _sent_ts(label_ts: int, device: str, skews: dict[str, list[FaultLabel]]) -> int:
    for label in skews.get(device, []):
        if label.start_ms <= label_ts <= label.end_ms:
            return label_ts + round(float(label.params["skew_s"]) * 1000)  # type: ignore[arg-type]
    return label_ts


def test_every_labelled_fault_is_found_in_the_stored_readings(
    database: ScratchDatabase,
    broker: EmbeddedMosquitto,
    catalog: Catalog,
    run_ingest: Callable[[], RunningIngest],
    tmp_path: Path,
) -> None:
    devices = build_devices(2 * len(TYPE_CODES), prefix="faulty")
    _register_all(database, catalog, devices)
    start = (datetime.now(UTC) - timedelta(minutes=30)).replace(microsecond=0).timestamp()
    faults = FaultSpec(
        probabilities={
            "spike": 0.02,
            "level_shift": 0.01,
            "drift": 0.01,
            "stuck": 0.01,
            "noise": 0.01,
            "dropout": 0.01,
            "offline": 0.01,
            "malformed": 0.01,
            "duplicate": 0.02,
            "out_of_order": 0.02,
            "clock_skew": 0.005,
        },
        samples=dict.fromkeys(WINDOW_FAULTS, (3, 8)),
    )
    interval_ms = 250
    config = FleetConfig(broker=parse_broker_url(broker.url), devices=devices, seed=11, interval_s=0.25, faults=faults)
    labels_path = tmp_path / "labels.jsonl"
    with run_ingest():
        result = run_fleet(config, duration_s=40, clock=ScaledClock(start), labels_path=labels_path)
        stats = result.stats
        assert stats.unacked == 0 and stats.dropped == 0
        _settled(database, stats.expected_rows, stats.expected_quarantined, "faulty fleet stored")
    labels = read_labels(labels_path)
    assert [lb.to_json() for lb in labels] == [lb.to_json() for lb in result.labels]
    kinds = {lb.kind for lb in labels}
    assert kinds == set(faults.probabilities), kinds
    rows = _rows(database)
    assert len(rows) == stats.expected_rows
    until_ms = max(ts for _, _, ts in rows) + 300_000
    clean = _clean_stream(devices, seed=11, start_ms=result.start_ms, interval_ms=interval_ms, until_ms=until_ms)
    times: dict[str, list[int]] = defaultdict(list)
    for device_id, ts in sorted(clean):
        times[device_id].append(ts)
    skews: dict[str, list[FaultLabel]] = defaultdict(list)
    lost: set[tuple[str, int]] = set()  # samples never stored: dropped out or sent malformed
    for lb in labels:
        if lb.kind == "clock_skew":
            skews[lb.device_id].append(lb)
        if lb.kind in ("dropout", "malformed"):
            lost |= {(lb.device_id, t) for t in times[lb.device_id] if lb.start_ms <= t <= lb.end_ms}
    decimals = {(code, m.name): m.decimals for code in TYPE_CODES for m in model_for(code).metrics}
    type_of = {d.device_id: d.type_code for d in devices}
    found: dict[str, int] = defaultdict(int)
    for lb in labels:
        device = lb.device_id
        window = [t for t in times[device] if lb.start_ms <= t <= lb.end_ms]
        assert window, lb
        if lb.metric != "*":
            d = decimals[type_of[device], lb.metric]
            for t in window:
                if (device, t) in lost:
                    continue
                got = rows[device, lb.metric, _sent_ts(t, device, skews)]
                x = clean[device, t][lb.metric]
                if lb.kind == "spike":
                    assert got == lb.params["value"] and got != x, lb
                elif lb.kind == "level_shift":
                    assert got == round(x + float(lb.params["offset"]), d), lb  # type: ignore[arg-type]
                elif lb.kind == "drift":  # one interval's step already at the label's first sample
                    slope = float(lb.params["slope_per_s"])  # type: ignore[arg-type]
                    assert got == round(x + slope * (t - lb.start_ms + window[1] - window[0]) / 1000, d), lb
                elif lb.kind == "stuck":
                    assert got == lb.params["value"], lb
            found[lb.kind] += 1
        elif lb.kind == "dropout":
            assert not any((device, m, t) in rows for t in window for m in clean[device, t]), lb
            found[lb.kind] += 1
        elif lb.kind == "offline":  # backfilled: every sample of the window is stored
            for t in window:
                if (device, t) not in lost:
                    assert all((device, m, _sent_ts(t, device, skews)) in rows for m in clean[device, t]), lb
            found[lb.kind] += 1
        elif lb.kind == "clock_skew":
            for t in window:
                if (device, t) not in lost:
                    shifted = _sent_ts(t, device, skews)
                    assert shifted != t
                    assert all((device, m, shifted) in rows for m in clean[device, t]), lb
                    assert not any((device, m, t) in rows for m in clean[device, t]), lb
            found[lb.kind] += 1
        elif lb.kind in ("duplicate", "out_of_order"):
            assert all((device, m, _sent_ts(lb.start_ms, device, skews)) in rows for m in clean[device, lb.start_ms])
            found[lb.kind] += 1
    # Malformed messages sit in quarantine with the reason the label names.
    with database.connect() as conn:
        quarantined = conn.execute(b"SELECT device_id, reason FROM quarantine ORDER BY device_id, reason").fetchall()
    malformed = sorted((lb.device_id, str(lb.params["reason"])) for lb in labels if lb.kind == "malformed")
    assert sorted((str(d), str(r)) for d, r in quarantined) == malformed
    found["malformed"] = len(malformed)
    assert set(found) == set(faults.probabilities)
    # Nothing else changed: every stored value outside the labelled windows is the clean one.
    value_windows = {(lb.device_id, lb.metric, t) for lb in labels if lb.metric != "*"
                     for t in times[lb.device_id] if lb.start_ms <= t <= lb.end_ms}  # fmt: skip
    for (device, t), readings in clean.items():
        if (device, t) in lost or t > until_ms - 300_000:
            continue
        sent = _sent_ts(t, device, skews)
        for m, v in readings.items():
            if (device, m, t) not in value_windows and (device, m, sent) in rows:
                assert rows[device, m, sent] == v


def test_published_equals_stored_plus_quarantined_for_500_devices(
    database: ScratchDatabase,
    broker: EmbeddedMosquitto,
    catalog: Catalog,
    run_ingest: Callable[[], RunningIngest],
) -> None:
    devices = build_devices(500, prefix="acct")
    _register_all(database, catalog, devices)
    faults = FaultSpec(probabilities={"malformed": 0.01, "duplicate": 0.01, "out_of_order": 0.01, "offline": 0.002})
    config = FleetConfig(broker=parse_broker_url(broker.url), devices=devices, seed=3, interval_s=2.0, faults=faults)
    with run_ingest():
        result = run_fleet(config, duration_s=20)
        stats = result.stats
        assert stats.connects >= 500 and stats.unacked == 0 and stats.dropped == 0 and stats.rejected == 0
        assert stats.generated >= 500 * 8
        _settled(database, stats.expected_rows, stats.expected_quarantined, "all messages accounted for")
    messages_stored = _count(database, "SELECT count(*) FROM (SELECT DISTINCT device_id, ts FROM readings) s")
    quarantined = _count(database, "SELECT count(*) FROM quarantine")
    assert stats.malformed > 0
    assert messages_stored + quarantined == stats.generated
    assert messages_stored == stats.expected_stored_messages
    assert quarantined == stats.expected_quarantined
    assert _count(database, "SELECT count(*) FROM readings") == stats.expected_rows


def test_fault_labels_are_in_the_file_while_the_run_is_still_going(broker: EmbeddedMosquitto, tmp_path: Path) -> None:
    devices = build_devices(10, prefix="live-labels")
    faults = FaultSpec(
        probabilities={"spike": 0.05, "stuck": 0.05, "dropout": 0.02, "malformed": 0.02},
        samples=dict.fromkeys(WINDOW_FAULTS, (20, 30)),
    )
    config = FleetConfig(broker=parse_broker_url(broker.url), devices=devices, seed=4, interval_s=0.1, faults=faults)
    labels_path = tmp_path / "labels.jsonl"
    result: list[FleetResult] = []
    stop = threading.Event()
    fleet = threading.Thread(
        target=lambda: result.append(run_fleet(config, duration_s=60, labels_path=labels_path, stop=stop)), daemon=True
    )
    fleet.start()
    try:
        wait_for(lambda: labels_path.exists() and labels_path.stat().st_size > 0, what="a first label line")
        # Read by another reader while the fleet runs: whole lines, each a label with the final record's fields.
        time.sleep(2.0)
        assert fleet.is_alive()
        live = read_labels(labels_path)
        lines = labels_path.read_text(encoding="utf-8").splitlines()
        assert live and len(lines) == len(live)
        assert {lb.kind for lb in live} <= set(faults.probabilities)
        # Long windows are written as they start, long before they end: their planned end lies ahead.
        started_windows = [lb for lb in live if lb.kind in ("stuck", "dropout")]
        assert started_windows
        assert all(
            int(str(lb.params["samples"])) >= 20 and lb.end_ms >= lb.start_ms + 19 * 100 for lb in started_windows
        )
    finally:
        stop.set()
        fleet.join(timeout=60)
    assert not fleet.is_alive()
    final = read_labels(labels_path)
    # The run's end replaces the live lines by the exact labels: the same faults, every one that had started.
    assert [lb.to_json() for lb in final] == [lb.to_json() for lb in result[0].labels]
    identity = {(lb.device_id, lb.metric, lb.kind, lb.start_ms) for lb in final}
    assert {(lb.device_id, lb.metric, lb.kind, lb.start_ms) for lb in live} <= identity
