"""`ioc bench api` end to end on a tiny history: it seeds, starts the API in its worker processes, times the three
queries with client processes, streams an export, and a second run with the same `--history` measures on the kept
database without seeding again. (The figures themselves are the benchmark's business, not this test's.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

QUERIES = ("device_24h_1min_buckets", "latest_all_devices", "province_kpis")


def _bench(tmp_path: Path, history: Path, out: Path) -> dict[str, object]:
    argv = ["bench", "api", "--devices", "16", "--days", "0.05", "--clients", "2", "--requests", "12"]
    done = subprocess.run(
        [sys.executable, "-m", "ioc", *argv, "--export-rows", "500", "--history", str(history), "--json", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, "IOC_RUNTIME_DIR": str(tmp_path / "runtime")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, object] = json.loads(out.read_text())
    return result


def test_bench_api_measures_and_reuses_a_kept_history(runtime_root: Path) -> None:
    tmp_path = runtime_root / "bench-api"
    tmp_path.mkdir()
    history = tmp_path / "history"
    first = _bench(tmp_path, history, tmp_path / "first.json")
    seeded = first["history"]
    assert isinstance(seeded, dict) and not seeded["reused"]
    assert seeded["readings_seeded"] == 16 * 3 * 72  # 0.05 days of one reading a minute, 3 metrics
    queries = first["queries"]
    assert isinstance(queries, dict) and set(queries) == set(QUERIES)
    for name in QUERIES:
        figures = queries[name]
        assert figures["requests"] == 12
        assert 0 < figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"] <= figures["max_ms"]
    export = first["export"]
    assert isinstance(export, dict) and export["rows"] > 0 and export["api_rss_peak_mb"] >= export["api_rss_before_mb"]

    again = _bench(tmp_path, history, tmp_path / "again.json")
    kept = again["history"]
    assert isinstance(kept, dict) and kept["reused"] and kept["now"] == seeded["now"]
    assert json.loads((history / "history.json").read_text())["config"] == {
        "devices": 16,
        "days": 0.05,
        "interval_s": 60,
    }
