"""`ioc detect` and `ioc eval nab`, run as the command a user types (`python -m ioc …`)."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TEST_NAB = REPO / "tests" / "data" / "nab"


def _run_with_stderr(argv: list[str]) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "ioc", *argv], capture_output=True, text=True, check=False, timeout=120
    )
    return done.returncode, done.stderr


def _run(argv: list[str]) -> int:
    return _run_with_stderr(argv)[0]


def _write_input(path: Path, rows: int, *, sep: str = ",") -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter=sep)
        writer.writerow(["ts", "temp_c", "device", "battery_v"])
        for i in range(rows):
            temp = 20.0 + math.sin(i / 20.0) + (30.0 if i == 700 else 0.0)
            battery = "" if i == 5 else f"{3.7 - i * 1e-4:.4f}"
            writer.writerow([f"2026-11-22T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z", temp, "dev-1", battery])


def test_detect_writes_one_row_per_input_row(tmp_path: Path) -> None:
    source, target = tmp_path / "in.csv", tmp_path / "out.csv"
    _write_input(source, 1000)
    assert _run(["detect", str(source), "--time-column", "ts", "--out", str(target)]) == 0
    with target.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["timestamp", "anomaly_score", "is_anomaly"]
    assert len(rows) == 1001
    assert rows[1][0] == "2026-11-22T00:00:00Z"
    scores = [float(r[1]) for r in rows[1:]]
    assert all(0.0 < s < 1.0 for s in scores)
    assert {r[2] for r in rows[1:]} <= {"0", "1"}
    assert rows[701][2] == "1"  # the injected spike


def test_detect_is_causal_and_deterministic(tmp_path: Path) -> None:
    source, first, second = tmp_path / "in.csv", tmp_path / "a.csv", tmp_path / "b.csv"
    _write_input(source, 800, sep=";")
    _run(["detect", str(source), "--time-column", "ts", "--out", str(first), "--sep", ";"])
    _run(["detect", str(source), "--time-column", "ts", "--out", str(second), "--sep", ";"])
    assert first.read_text() == second.read_text()
    truncated = tmp_path / "short.csv"
    truncated.write_text("\n".join(source.read_text().splitlines()[:401]) + "\n")
    short_out = tmp_path / "c.csv"
    _run(["detect", str(truncated), "--time-column", "ts", "--out", str(short_out), "--sep", ";"])
    assert short_out.read_text().splitlines() == first.read_text().splitlines()[:401]


def test_detect_reports_a_missing_time_column(tmp_path: Path) -> None:
    source = tmp_path / "in.csv"
    _write_input(source, 10)
    code, stderr = _run_with_stderr(["detect", str(source), "--time-column", "time", "--out", str(tmp_path / "o.csv")])
    assert code == 2
    assert "no column 'time'" in stderr


def test_eval_nab_with_precomputed_scores(tmp_path: Path) -> None:
    out = tmp_path / "nab.json"
    scores_dir = TEST_NAB / "results" / "numenta"
    assert _run(["eval", "nab", "--data", str(TEST_NAB), "--json", str(out), "--scores", str(scores_dir)]) == 0
    document = json.loads(out.read_text())
    assert document["detector"] == "numenta"
    assert document["points"] == 1127
    for profile in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        assert 0.0 < document[profile] <= 100.0
        assert profile in document["thresholds"]
    assert set(document["categories"]["standard"]) == {"realTraffic"}


def test_eval_nab_runs_the_production_detector(tmp_path: Path) -> None:
    out = tmp_path / "nab.json"
    assert _run(["eval", "nab", "--data", str(TEST_NAB), "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["detector"] == "ioc"
    assert document["seconds"] >= document["detect_seconds"] > 0
    assert document["categories"]["standard"]["realTraffic"]["windows"] == 4


def _write_related(path: Path, rows: int) -> None:
    """flow follows pressure; from row 700 to 739 the flow is 20 % short while the pressure holds."""
    import random

    rng = random.Random(11)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ts", "pressure", "flow"])
        for i in range(rows):
            pressure = 3.0 + 0.8 * math.sin(i / 30.0) + rng.gauss(0.0, 0.01)
            flow = 400.0 * pressure + rng.gauss(0.0, 2.0)
            if 700 <= i < 740:
                flow *= 0.8
            writer.writerow([1_790_000_000 + 60 * i, f"{pressure:.4f}", f"{flow:.2f}"])


def test_detect_joint_mode_flags_a_broken_relation_while_it_lasts(tmp_path: Path) -> None:
    source = tmp_path / "pump.csv"
    _write_related(source, 1000)
    flags: dict[str, list[int]] = {}
    for mode in ("joint", "per-column"):
        target = tmp_path / f"{mode}.csv"
        assert _run(["detect", str(source), "--time-column", "ts", "--out", str(target), "--mode", mode]) == 0
        with target.open(newline="") as handle:
            rows = list(csv.reader(handle))[1:]
        assert len(rows) == 1000
        flags[mode] = [int(r[2]) for r in rows]
    joint = flags["joint"]
    assert sum(joint[700:740]) >= 35  # on while the flow stays short of what the pressure says
    assert sum(joint[745:]) == 0 and sum(joint[:700]) == 0
    assert sum(flags["per-column"][700:740]) < sum(joint[700:740])
