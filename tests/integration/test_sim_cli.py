"""`ioc simulate` as a user runs it, against a real Mosquitto (with device authentication where it matters) and a
real registry: one roster CSV from the simulator to `ioc devices import` and back out of `ioc devices export`,
devices that then publish, runs that fail loudly (refused credentials, a closed port), a duration that is kept,
`--register`, and the local center's broker found from the runtime folder."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devices.roster_csv import ROSTER_COLUMNS
from embedded.runtime import EmbeddedMosquitto, find_free_port
from tests.integration.conftest import RunningIngest, ScratchDatabase, wait_for
from tests.integration.device_fixtures import (
    RunningMonitor,
    run_monitor_fixture,  # noqa: F401
    run_secure_ingest_fixture,  # noqa: F401
    secure_broker_fixture,  # noqa: F401
)


@dataclass(frozen=True, slots=True)
class Done:
    code: int
    out: str
    err: str
    wall_s: float

    @property
    def message(self) -> str:
        """The last line on stderr: where `ioc` reports why it failed."""
        lines = self.err.strip().splitlines()
        return lines[-1] if lines else ""


def _ioc(argv: list[str], *, database: ScratchDatabase | None = None, runtime_dir: Path | None = None) -> Done:
    """`ioc …` in a clean environment: this test's database, no configured broker, its own runtime folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    if database is not None:
        env["IOC_DATABASE_URL"] = database.url
    if runtime_dir is not None:
        env["IOC_RUNTIME_DIR"] = str(runtime_dir)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "ioc", "--log-level", "WARNING", *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
        env=env,
    )
    return Done(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


def _csv_rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def _count(database: ScratchDatabase, sql: str) -> int:
    value = database.scalar(sql)
    assert isinstance(value, int)
    return value


FLEET = ["--devices", "6", "--prefix", "rt", "--types", "soil_probe,smart_meter,vaccine_fridge"]


def test_a_simulated_fleet_round_trips_through_the_registry_and_its_devices_then_publish(
    database: ScratchDatabase,
    secure_broker: EmbeddedMosquitto,
    run_monitor: Callable[..., RunningMonitor],
    run_secure_ingest: Callable[[], RunningIngest],
    tmp_path: Path,
) -> None:
    roster, secrets, exported, summary = (tmp_path / n for n in ("fleet.csv", "secrets.csv", "out.csv", "sum.json"))
    made = _ioc(["simulate", *FLEET, "--export-devices", str(roster)])  # no broker anywhere: none needed
    assert (made.code, made.out) == (0, f"wrote 6 devices to {roster}\n"), made
    written = _csv_rows(roster)
    assert tuple(written[0]) == ROSTER_COLUMNS
    assert [r["type_code"] for r in written] == ["soil_probe", "smart_meter", "vaccine_fridge"] * 2

    imported = _ioc(["devices", "import", str(roster), "--secrets-out", str(secrets)], database=database)
    assert imported.code == 0, imported
    assert imported.out.startswith("6 devices provisioned, 0 rows failed"), imported.out
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    issued = _csv_rows(secrets)
    assert sorted(r["device_id"] for r in issued) == sorted(r["device_id"] for r in written)
    assert all(len(r["secret"]) >= 32 for r in issued)

    # The registry writes the same roster back: sorted by id, the same rows.
    out = _ioc(["devices", "export", str(exported)], database=database)
    assert out.code == 0 and out.out == f"6 devices written to {exported}\n", out
    assert sorted(_csv_rows(exported), key=lambda r: r["device_id"]) == sorted(written, key=lambda r: r["device_id"])

    with run_monitor() as monitor, run_secure_ingest():
        monitor.wait_synced(database)
        run = _ioc(
            [
                "simulate",
                *FLEET,
                "--broker",
                secure_broker.device_url,
                "--credentials",
                str(secrets),
                "--interval",
                "1",
                "--duration",
                "4",
                "--quiet",
                "--json",
                str(summary),
            ]
        )
        assert run.code == 0, run
        stats = json.loads(summary.read_text())
        assert stats["failure"] is None
        assert stats["connects"] == 6 and stats["refused_devices"] == 0
        assert stats["lost_messages"] == 0 and stats["disconnects"] == 0  # a clean run loses nothing
        assert stats["acked"] == stats["published"] >= 6 * 3
        wait_for(
            lambda: (
                _count(database, "SELECT count(DISTINCT device_id) FROM readings WHERE starts_with(device_id, 'rt-')")
                == 6
            ),
            what="readings of all six imported devices",
        )


def test_an_import_that_fails_leaves_no_secrets_file_and_names_the_roster_columns(
    database: ScratchDatabase, tmp_path: Path
) -> None:
    old = tmp_path / "old.csv"
    old.write_text("device_id,password,province,sector,type\nx-1,,can-tho,agriculture,soil_probe\n")
    secrets = tmp_path / "secrets.csv"
    done = _ioc(["devices", "import", str(old), "--secrets-out", str(secrets)], database=database)
    assert done.code == 2, done
    assert done.message == (
        "ioc: CSV header lacks type_code (has device_id, password, province, sector, type); `type` is now "
        "`type_code` (a roster is device_id,type_code,province,sector,name,report_interval_s)"
    )
    assert not secrets.exists()
    # Every row bad: nothing provisioned, so no file either.
    bad = tmp_path / "bad.csv"
    bad.write_text("device_id,type_code,province,sector\nx-2,toaster,can-tho,\nx-3,soil_probe,can-tho,energy\n")
    done = _ioc(["devices", "import", str(bad), "--secrets-out", str(secrets)], database=database)
    assert done.code == 1, done
    assert "row 2\tx-2\terror\tunknown device type 'toaster'" in done.out
    assert "row 3\tx-3\terror\tsector 'energy' is not that of type 'soil_probe' (agriculture)" in done.out
    assert done.out.strip().endswith("no secrets file written")
    assert not secrets.exists()
    # An existing secrets file is never overwritten.
    secrets.write_text("device_id,secret\nkept,keep-me\n")
    good = tmp_path / "good.csv"
    good.write_text("device_id,type_code,province\nx-4,soil_probe,can-tho\n")
    done = _ioc(["devices", "import", str(good), "--secrets-out", str(secrets)], database=database)
    assert done.code == 2 and "exists: secrets are never overwritten" in done.message, done
    assert secrets.read_text() == "device_id,secret\nkept,keep-me\n"
    assert _count(database, "SELECT count(*) FROM devices WHERE starts_with(device_id, 'x-')") == 0


def test_refused_credentials_end_the_run_at_once_with_status_2_and_a_hint(
    secure_broker: EmbeddedMosquitto, tmp_path: Path
) -> None:
    summary = tmp_path / "sum.json"
    done = _ioc(
        [
            "simulate",
            *FLEET,
            "--broker",
            secure_broker.device_url,
            "--duration",
            "60",
            "--interval",
            "0.2",
            "--quiet",
            "--json",
            str(summary),
        ]
    )
    assert done.code == 2, done
    assert done.message.startswith(
        f"ioc: the broker at {secure_broker.device_url.removeprefix('mqtt://')} (--broker) refused 6 devices' "
        "credentials (rt-"
    ), done.message
    assert "register them with `ioc simulate --register`" in done.message
    assert done.err.count("refused") == 1  # one message, not one per device
    stats = json.loads(summary.read_text())
    assert stats["failure"]["kind"] == "refused" and stats["failure"]["count"] == 6
    assert stats["elapsed_s"] < 10  # the refusals ended the run, not the 60 s duration
    # Nothing went out; what the devices sampled meanwhile is counted as lost, not hidden.
    assert stats["published"] == 0 and stats["lost_messages"] == stats["unacked"] == stats["generated"] > 0


def test_an_unreachable_broker_ends_the_run_with_status_2(tmp_path: Path) -> None:
    port = find_free_port()  # nobody listens there
    done = _ioc(["simulate", "--devices", "3", "--broker", f"mqtt://127.0.0.1:{port}", "--duration", "60", "--quiet"])
    assert done.code == 2, done
    assert done.message.startswith(f"ioc: cannot reach the broker at 127.0.0.1:{port} (--broker): ")
    assert "Connection refused" in done.message and "`ioc up`" in done.message
    assert done.wall_s < 30  # ended by the failure, not by the 60 s duration


def test_the_duration_is_kept_and_a_clean_run_reports_no_lost_messages(
    broker: EmbeddedMosquitto, tmp_path: Path
) -> None:
    summary = tmp_path / "sum.json"
    done = _ioc(
        [
            "simulate",
            "--devices",
            "20",
            "--broker",
            broker.url,
            "--interval",
            "1",
            "--duration",
            "10",
            "--faults",
            "offline:0.05",
            "--quiet",
            "--json",
            str(summary),
        ]
    )
    assert done.code == 0, done
    stats = json.loads(summary.read_text())
    # 10 s of publishing, then the flush of what is in flight: about 10 s in all (the old flush waited 30 s more).
    assert 10.0 <= stats["elapsed_s"] < 13.0, stats["elapsed_s"]
    assert stats["lost_messages"] == 0 and stats["disconnects"] == 0
    assert stats["fault_disconnects"] >= 1  # offline faults cut connections on purpose: not "lost"
    assert stats["backfilled"] == stats["buffered_total"] > 0


def test_register_makes_the_fleet_known_and_it_publishes(
    database: ScratchDatabase,
    secure_broker: EmbeddedMosquitto,
    run_monitor: Callable[..., RunningMonitor],
    run_secure_ingest: Callable[[], RunningIngest],
    tmp_path: Path,
) -> None:
    summary = tmp_path / "sum.json"
    with run_monitor(), run_secure_ingest():
        done = _ioc(
            [
                "simulate",
                *FLEET,
                "--register",
                "--broker",
                secure_broker.device_url,
                "--interval",
                "1",
                "--duration",
                "4",
                "--quiet",
                "--json",
                str(summary),
            ],
            database=database,
        )
        assert done.code == 0, done
        stats = json.loads(summary.read_text())
        assert stats["connects"] == 6 and stats["lost_messages"] == 0
        wait_for(lambda: _count(database, "SELECT count(DISTINCT device_id) FROM readings") == 6, what="readings")
    assert (
        _count(database, "SELECT count(*) FROM devices WHERE starts_with(device_id, 'rt-') AND status = 'active'") == 6
    )
    actions = _count(database, "SELECT count(*) FROM audit_log WHERE actor = 'ioc simulate'")
    assert actions == 6


def test_the_local_centers_broker_is_found_in_the_runtime_folder(runtime_root: Path, tmp_path: Path) -> None:
    runtime = runtime_root / f"sim-local-{os.getpid()}"
    summary = tmp_path / "sum.json"
    with EmbeddedMosquitto(runtime / "mosquitto"):  # as `ioc up` runs it: ports recorded in the folder
        done = _ioc(
            ["simulate", "--devices", "3", "--interval", "1", "--duration", "2", "--quiet", "--json", str(summary)],
            runtime_dir=runtime,
        )
    assert done.code == 0, done
    stats = json.loads(summary.read_text())
    assert stats["connects"] == 3 and stats["acked"] >= 3
    stopped = _ioc(["simulate", "--devices", "1", "--duration", "1"], runtime_dir=runtime)
    assert stopped.code == 2
    assert stopped.message.startswith(f"ioc: no broker: no center is running in {runtime}")
