"""Device firmware without the network: determinism, fault injection and its labels, buffer, replay, CLI pieces."""

from __future__ import annotations

import itertools
import json
import math
import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest

from core.errors import DecodeError
from firmware_sim.buffer import DiskBuffer
from firmware_sim.clock import ScaledClock
from firmware_sim.faults import (
    DEFAULT_SAMPLES,
    FAULT_KINDS,
    MALFORMED_REASONS,
    NO_FAULTS,
    FaultKind,
    FaultLabel,
    FaultSpec,
    FaultSpecError,
    parse_fault_spec,
    read_labels,
)
from firmware_sim.firmware import FirmwareDevice, Message, ReplayDevice, SimDevice
from firmware_sim.models import model_for
from firmware_sim.replay import ReplayError, load_series
from firmware_sim.roster import apply_credentials, build_devices, read_credentials
from protocol.telemetry import decode_telemetry

START_MS = 1_780_000_000_000  # 2026-05-28
PUMP = SimDevice("pump-ct-001", "pump_station", "can-tho", "energy")
METER = SimDevice("meter-hn-001", "smart_meter", "ha-noi", "energy")


def _stream(
    device: SimDevice, *, seed: int, faults: FaultSpec = NO_FAULTS, steps: int = 400, interval_ms: int = 10_000
) -> tuple[list[tuple[bytes, bool]], list[FaultLabel], list[int]]:
    """(payload, offline) of every message, the labels, and the true sample times."""
    fw = FirmwareDevice(device=device, seed=seed, start_ms=START_MS, interval_ms=interval_ms, faults=faults)
    out: list[tuple[bytes, bool]] = []
    labels: list[FaultLabel] = []
    times: list[int] = []
    for _ in range(steps):
        times.append(fw.next_ms)
        sample = fw.step()
        out += [(m.payload(), sample.offline) for m in sample.messages]
        labels += sample.labels
    final = fw.finish()
    out += [(m.payload(), False) for m in final.messages]
    labels += final.labels
    return out, labels, times


def _decode(payload: bytes) -> tuple[int, int, dict[str, float]]:
    telemetry = decode_telemetry(payload, content_type=None)  # DecodeError for a malformed payload
    doc = json.loads(payload)
    ts_ms = round(telemetry.readings[0].ts.timestamp() * 1000)
    return doc["seq"], ts_ms, {r.metric: r.value for r in telemetry.readings}


ALL_FAULTS = FaultSpec(probabilities=dict.fromkeys(FAULT_KINDS, 0.02))


def test_same_seed_and_clock_give_the_same_payload_stream_and_labels() -> None:
    a = _stream(PUMP, seed=7, faults=ALL_FAULTS)
    b = _stream(PUMP, seed=7, faults=ALL_FAULTS)
    assert a == b
    assert len(a[1]) > 20  # faults did happen
    assert _stream(PUMP, seed=8, faults=ALL_FAULTS)[0] != a[0]
    shifted = FirmwareDevice(device=PUMP, seed=7, start_ms=START_MS + 1000, interval_ms=10_000)
    assert shifted.next_ms == FirmwareDevice(device=PUMP, seed=7, start_ms=START_MS, interval_ms=10_000).next_ms + 1000


def test_devices_of_one_fleet_are_independent_and_phased_over_the_interval() -> None:
    devices = build_devices(300)
    phases = [FirmwareDevice(device=d, seed=1, start_ms=START_MS, interval_ms=10_000).next_ms for d in devices]
    assert all(START_MS <= p < START_MS + 10_000 for p in phases)
    assert len({p // 1000 for p in phases}) == 10  # spread over every second of the interval
    assert {d.type_code for d in devices} == {model_for(d.type_code).type_code for d in devices}
    assert len({d.device_id for d in devices}) == 300


def test_without_faults_messages_are_numbered_on_the_sampling_grid() -> None:
    out, labels, times = _stream(METER, seed=1, steps=50)
    assert labels == []
    decoded = [_decode(p) for p, _ in out]
    assert [seq for seq, _, _ in decoded] == list(range(1, 51))
    assert [ts for _, ts, _ in decoded] == times
    assert all(b - a == 10_000 for a, b in itertools.pairwise(times))


def test_faults_do_not_disturb_the_physics_the_clean_twin_sees_the_same_world() -> None:
    faulty, labels, times = _stream(PUMP, seed=3, faults=ALL_FAULTS, steps=600)
    clean, _, _ = _stream(PUMP, seed=3, steps=600)
    clean_by_ts = {ts: readings for _, ts, readings in (_decode(p) for p, _ in clean)}
    touched = {(label.metric, t) for label in labels if label.metric != "*" for t in times
               if label.start_ms <= t <= label.end_ms}  # fmt: skip
    skewed = [label for label in labels if label.kind == "clock_skew"]
    compared = 0
    for payload, _ in faulty:
        try:
            _, ts, readings = _decode(payload)
        except DecodeError:
            continue
        if ts not in clean_by_ts:  # off the grid: sent by a skewed clock
            for label in skewed:
                shifted = ts - round(float(label.params["skew_s"]) * 1000)  # type: ignore[arg-type]
                if label.start_ms <= shifted <= label.end_ms and shifted in clean_by_ts:
                    ts = shifted
        for metric, value in readings.items():
            if (metric, ts) not in touched:
                assert value == clean_by_ts[ts][metric], (metric, ts)
                compared += 1
    assert compared > 1500


def _only(kind: FaultKind, p: float = 0.03) -> FaultSpec:
    return FaultSpec(probabilities={kind: p})


def _messages(out: Sequence[tuple[bytes, bool]]) -> list[tuple[int, int, dict[str, float]]]:
    return [_decode(p) for p, _ in out]


@pytest.mark.parametrize("kind", ["spike", "level_shift", "drift", "stuck", "noise"])
def test_value_faults_change_exactly_the_labelled_metric_in_the_labelled_window(kind: FaultKind) -> None:
    out, labels, _ = _stream(PUMP, seed=11, faults=_only(kind), steps=800)
    clean = {ts: r for _, ts, r in _messages(_stream(PUMP, seed=11, steps=800)[0])}
    faulty = {ts: r for _, ts, r in _messages(out)}
    assert labels and {label.kind for label in labels} == {kind}
    decimals = {m.name: m.decimals for m in model_for("pump_station").metrics}
    for label in labels:
        window = sorted(ts for ts in faulty if label.start_ms <= ts <= label.end_ms)
        assert window[0] == label.start_ms and window[-1] == label.end_ms
        assert len(window) == label.params["samples"]
        metric, d = label.metric, decimals[label.metric]
        for ts in window:
            x, got = clean[ts][metric], faulty[ts][metric]
            if kind == "spike":
                assert got == label.params["value"] and got != x
            elif kind == "level_shift":
                assert got == round(x + float(label.params["offset"]), d)  # type: ignore[arg-type]
            elif kind == "drift":  # one interval's step already at the label's first sample
                slope = float(label.params["slope_per_s"])  # type: ignore[arg-type]
                interval_ms = window[1] - window[0]
                assert got == round(x + slope * (ts - label.start_ms + interval_ms) / 1000, d)
                if ts == label.start_ms:
                    assert got != x
            elif kind == "stuck":
                assert got == label.params["value"]
        if kind == "noise":
            diffs = [faulty[ts][metric] - clean[ts][metric] for ts in window]
            assert any(abs(v) > 0 for v in diffs)
    labelled = {(lb.metric, ts) for lb in labels for ts in faulty if lb.start_ms <= ts <= lb.end_ms}
    for ts, readings in faulty.items():
        for metric, value in readings.items():
            if (metric, ts) not in labelled:
                assert value == clean[ts][metric]


def test_spikes_stand_out_of_the_signal() -> None:
    _out, labels, _ = _stream(METER, seed=2, faults=_only("spike", 0.05), steps=1500)
    clean = {ts: r for _, ts, r in _messages(_stream(METER, seed=2, steps=1500)[0])}
    for label in labels:
        values = [clean[ts][label.metric] for ts in clean if abs(ts - label.start_ms) <= 300_000]
        spread = max(statistics.pstdev(values), 1e-3)
        assert abs(float(label.params["value"]) - float(label.params["original"])) > 2 * spread  # type: ignore[arg-type]


def test_dropout_loses_the_labelled_samples_and_numbers_continue() -> None:
    out, labels, times = _stream(PUMP, seed=4, faults=_only("dropout"), steps=600)
    sent = _messages(out)
    sent_ts = {ts for _, ts, _ in sent}
    assert labels
    for label in labels:
        lost = [t for t in times if label.start_ms <= t <= label.end_ms]
        assert lost and not sent_ts & set(lost)
        assert len(lost) == label.params["samples"]
    assert [seq for seq, _, _ in sent] == list(range(1, len(sent) + 1))
    assert len(sent) == len(times) - sum(int(lb.params["samples"]) for lb in labels)  # type: ignore[call-overload]


def test_offline_marks_the_labelled_samples_and_still_produces_them() -> None:
    out, labels, times = _stream(PUMP, seed=4, faults=_only("offline"), steps=600)
    assert labels and len(out) == len(times)
    offline_ts = {_decode(p)[1] for p, off in out if off}
    labelled = {t for lb in labels for t in times if lb.start_ms <= t <= lb.end_ms}
    assert offline_ts == labelled


def test_clock_skew_shifts_timestamps_off_the_grid_within_what_the_center_accepts() -> None:
    out, labels, times = _stream(PUMP, seed=5, faults=_only("clock_skew", 0.02), steps=800)
    assert labels
    grid = set(times)
    sent = {seq: ts for seq, ts, _ in _messages(out)}
    for label in labels:
        skew_ms = round(float(label.params["skew_s"]) * 1000)  # type: ignore[arg-type]
        assert abs(skew_ms) >= 20_000 - 10_000 and skew_ms <= 240_000
        window = [t for t in times if label.start_ms <= t <= label.end_ms]
        for t in window:
            assert t + skew_ms in sent.values()
            assert t + skew_ms not in grid
    assert len(set(sent.values())) == len(sent)


def test_duplicates_and_out_of_order_are_labelled_by_sequence_number() -> None:
    out, labels, _ = _stream(PUMP, seed=6, faults=FaultSpec({"duplicate": 0.03, "out_of_order": 0.03}), steps=600)
    seqs = [seq for seq, _, _ in _messages(out)]
    counts = Counter(seqs)
    dup_labels = [lb for lb in labels if lb.kind == "duplicate"]
    ooo_labels = [lb for lb in labels if lb.kind == "out_of_order"]
    assert dup_labels and ooo_labels
    assert {lb.params["seq"] for lb in dup_labels} == {s for s, c in counts.items() if c == 2}
    for label in ooo_labels:
        held, after = label.params["seq"], label.params["sent_after_seq"]
        assert seqs.index(held) > seqs.index(after)  # type: ignore[arg-type]
        assert label.end_ms > label.start_ms
    assert sorted(set(seqs)) == list(range(1, 601))  # nothing lost


def test_malformed_payloads_earn_the_labelled_decode_reason() -> None:
    out, labels, _ = _stream(METER, seed=8, faults=_only("malformed", 0.05), steps=1500)
    reasons: dict[int, str] = {}
    for payload, _ in out:
        try:
            decode_telemetry(payload, content_type=None)
        except DecodeError as exc:
            reasons[len(reasons)] = exc.reason
    assert sorted(reasons.values()) == sorted(str(lb.params["reason"]) for lb in labels)
    assert set(reasons.values()) == set(MALFORMED_REASONS)


def test_labels_are_jsonl_and_read_back() -> None:
    _, labels, _ = _stream(PUMP, seed=7, faults=ALL_FAULTS, steps=800)
    lines = [lb.to_json() for lb in labels]
    for line in lines:
        doc = json.loads(line)
        assert set(doc) == {"device_id", "metric", "kind", "start", "end", "params"}
        assert doc["start"].endswith("Z") and doc["start"] <= doc["end"]
    assert {lb.kind for lb in labels} == set(FAULT_KINDS)


def test_labels_file_round_trip(tmp_path: Path) -> None:
    _, labels, _ = _stream(PUMP, seed=7, faults=ALL_FAULTS)
    path = tmp_path / "labels.jsonl"
    path.write_text("".join(lb.to_json() + "\n" for lb in labels))
    back = read_labels(path)
    assert [(b.device_id, b.metric, b.kind, b.start_ms, b.end_ms) for b in back] == [
        (a.device_id, a.metric, a.kind, a.start_ms, a.end_ms) for a in labels
    ]


def test_fault_spec_parsing(tmp_path: Path) -> None:
    spec = parse_fault_spec("spike:0.01, stuck_at:0.5,noise_burst:0")
    assert spec.probabilities == {"spike": 0.01, "stuck": 0.5, "noise": 0.0}
    assert spec.enabled and not parse_fault_spec("").enabled
    file = tmp_path / "faults.json"
    file.write_text(json.dumps({"drift": {"probability": 0.2, "samples": [2, 3]}, "dropout": 0.1}))
    spec = parse_fault_spec(str(file))
    assert spec.probabilities == {"drift": 0.2, "dropout": 0.1}
    assert spec.window("drift") == (2, 3) and spec.window("dropout") == DEFAULT_SAMPLES["dropout"]
    for bad in ("spike", "spike:x", "wobble:0.1", "spike:1.5", '{"drift": {"probability": 0.1, "samples": [3, 1]}}'):
        with pytest.raises(FaultSpecError):
            parse_fault_spec(bad)


def test_disk_buffer_keeps_order_bounds_and_counts_what_it_drops(tmp_path: Path) -> None:
    with DiskBuffer(tmp_path / "b.sqlite3", max_messages_per_device=3) as buf:
        rows = [buf.push("d1", seq=i, ts_ms=1000 * i, readings={"x": float(i)}, raw=None) for i in range(1, 5)]
        assert [d for _, d in rows[:3]] == [None, None, None]
        dropped = rows[3][1]
        assert dropped is not None and dropped.rowid == rows[0][0] and dropped.readings == 1 and not dropped.raw
        buf.push("d2", seq=1, ts_ms=5, readings={}, raw=b"\xff")
        assert buf.count("d1") == 3 and buf.total == 4
        items = buf.peek("d1", after=0, limit=10)
        assert [(i.seq, i.ts_ms, dict(i.readings)) for i in items] == [
            (s, 1000 * s, {"x": float(s)}) for s in (2, 3, 4)
        ]
        assert buf.peek("d1", after=items[0].rowid, limit=1)[0].seq == 3
        assert buf.peek("d2", after=0, limit=5)[0].raw == b"\xff"
        assert buf.remove([("d1", (items[0].rowid, items[1].rowid))]) == 2
        assert buf.count("d1") == 1
    with DiskBuffer(tmp_path / "b.sqlite3", max_messages_per_device=3) as again:  # survives a restart
        assert again.counts() == {"d1": 1, "d2": 1}


def test_replay_streams_a_csv_at_speed(tmp_path: Path) -> None:
    csv_path = tmp_path / "nab.csv"
    csv_path.write_text("timestamp,value\n2014-04-01 00:00:00,1.5\n2014-04-01 00:05:00,2.5\n2014-04-01 00:10:00,\n"
                        "2014-04-01 00:15:00,4.0\n")  # fmt: skip
    points = load_series(csv_path)
    assert [v for _, v in points] == [1.5, 2.5, 4.0]
    device = SimDevice("replay-1", "traffic_counter", "can-tho", "transport")
    replay = ReplayDevice(device=device, metric="vehicle_count", points=points, start_ms=START_MS, speed=60)
    sent: list[Message] = []
    while not replay.done:
        sent += replay.step().messages
    assert [(m.ts_ms - START_MS, dict(m.readings)) for m in sent] == [
        (0, {"vehicle_count": 1.5}),
        (5_000, {"vehicle_count": 2.5}),
        (15_000, {"vehicle_count": 4.0}),
    ]
    with pytest.raises(ReplayError):
        load_series(csv_path, value_column="nope")


def test_credentials_give_passwords_or_whole_devices(tmp_path: Path) -> None:
    devices = build_devices(3, types=["soil_probe"], provinces=["can-tho"])
    creds = tmp_path / "creds.csv"
    creds.write_text(f"device_id,password\n{devices[1].device_id},s3cret\n")
    with_pw = apply_credentials(devices, read_credentials(creds))
    assert [d.password for d in with_pw] == [None, "s3cret", None]
    creds.write_text("dev-a,pw-a,ha-noi,health,vaccine_fridge\n")
    assert apply_credentials(devices, read_credentials(creds)) == [
        SimDevice("dev-a", "vaccine_fridge", "ha-noi", "health", "pw-a")
    ]


def test_scaled_clock_runs_speed_times_faster_from_its_start() -> None:
    ticks = iter([10.0, 12.0])
    scaled = ScaledClock(1000.0, speed=60, monotonic=lambda: next(ticks))
    assert scaled.now() == 1000.0 + 2 * 60
    assert math.isclose(scaled.speed, 60)
