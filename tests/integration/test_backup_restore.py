"""`ioc db backup` / `ioc db restore` on a running center: readings ingested from the broker, devices, an alarm
raised by the analytics job, users and keys → backup → restore into a fresh database (of the same cluster, and
of a freshly made cluster) → every table's row count and checksum equal, chunk metadata intact, and the restored
database takes new data. The comparison here is written independently of store/backup.py's own fingerprint
(`md5(string_agg(row text ORDER BY row text))` per table), so the module does not check itself."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from analytics.job import AnalyticsJob
from analytics.scoring import JobConfig
from api.access.users import create_user
from devices.catalog import Catalog
from devices.schema import migrate_database
from embedded.runtime import EmbeddedMosquitto, EmbeddedPostgres
from protocol.telemetry import encode_json
from protocol.topics import telemetry_topic
from store.backup import read_manifest
from store.pool import open_pool
from store.readings import write_readings
from tests.integration.conftest import RunningIngest, ScratchDatabase, wait_for
from tests.integration.device_fixtures import tokens_fixture  # noqa: F401
from tests.integration.publisher import Publisher

_COUNTER = itertools.count()
PROVINCE = "can-tho"
# Row text that does not depend on the session (time zone, float digits).
_STABLE = "SET TimeZone = 'UTC'; SET extra_float_digits = 1; SET DateStyle = 'ISO, YMD'"


def _tables(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    rows = conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' "
        "AND table_type = 'BASE TABLE' ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows]


def snapshot_of(url: str) -> dict[str, object]:
    """Per table: (rows, md5 of every row's text in order); and the chunks of every hypertable."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in _STABLE.split(";"):
            conn.execute(statement.encode())
        found: dict[str, object] = {}
        for table in _tables(conn):
            query = sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {} t"
            )
            row = conn.execute(query.format(sql.Identifier(table))).fetchone()
            assert row is not None
            found[table] = (int(row[0]), str(row[1]))
        found["(chunks)"] = conn.execute(
            "SELECT hypertable_name, range_start, range_end FROM timescaledb_information.chunks ORDER BY 1, 2"
        ).fetchall()
        found["(hypertables)"] = conn.execute(
            "SELECT hypertable_name, num_dimensions, num_chunks FROM timescaledb_information.hypertables ORDER BY 1"
        ).fetchall()
        return found


def _with_database(url: str, name: str) -> str:
    return make_conninfo(url, dbname=name)


def _drop(url: str, name: str) -> None:
    with psycopg.connect(_with_database(url, "postgres"), autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def cli() -> Callable[..., tuple[int, str, str]]:
    """`ioc …` as an operator runs it, against a given database: (exit status, stdout, stderr)."""

    def _run(*argv: str, database_url: str) -> tuple[int, str, str]:
        env = {**os.environ, "IOC_DATABASE_URL": database_url}
        done = subprocess.run(
            [sys.executable, "-m", "ioc", *argv], capture_output=True, text=True, env=env, timeout=600, check=False
        )
        assert "Traceback" not in done.stderr, done.stderr
        return done.returncode, done.stdout, done.stderr

    return _run


@pytest.fixture
def restored_names(database: ScratchDatabase) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        _drop(database.url, name)


def _publish_history(
    pub: Publisher,
    *,
    device_id: str,
    sector: str,
    metric_values: Callable[[int], dict[str, float]],
    start: datetime,
    count: int,
    step: timedelta,
) -> None:
    topic = telemetry_topic(PROVINCE, sector, device_id)
    for i in range(count):
        pub.publish(topic, encode_json(metric_values(i), seq=i, ts=start + i * step), wait=False).wait_for_publish(30)


def _run_center(
    database: ScratchDatabase,
    broker: EmbeddedMosquitto,
    register: Callable[..., object],
    run_ingest: Callable[[], RunningIngest],
    catalog: Catalog,
) -> None:
    """A center that has been running: devices, readings through the broker across several chunks, a quarantined
    message, an alarm raised by the analytics job, and a user."""
    register("soil-ct-001", "soil_probe", PROVINCE)
    register("fridge-ct-001", "vaccine_fridge", PROVINCE)
    now = datetime.now(UTC).replace(microsecond=0)
    with run_ingest(), Publisher(broker.url, client_id="backup-test-devices") as pub:
        # Soil readings every 30 minutes over the last 22 hours, fridge readings every minute for the last 20
        # minutes (above 8 °C: an alarm), and one payload that is not JSON (quarantined).
        _publish_history(
            pub,
            device_id="soil-ct-001",
            sector="agriculture",
            start=now - timedelta(hours=22),
            count=44,
            step=timedelta(minutes=30),
            metric_values=lambda i: {
                "soil_moisture": 20.0 + i / 3,
                "soil_temperature": 27.125 + i / 7,
                "battery_v": 3.7,
            },
        )
        _publish_history(
            pub,
            device_id="fridge-ct-001",
            sector="health",
            start=now - timedelta(minutes=20),
            count=20,
            step=timedelta(minutes=1),
            metric_values=lambda i: {"temperature": 9.25 + i / 100},
        )
        pub.publish(telemetry_topic(PROVINCE, "health", "fridge-ct-001"), b"{not json")
        wait_for(lambda: database.scalar("SELECT count(*) FROM readings") == 44 * 3 + 20, what="readings stored")
        wait_for(lambda: database.scalar("SELECT count(*) FROM quarantine") == 1, what="quarantined message")
    # An import of older history (the store's own COPY path) so the hypertable spans several chunks.
    with psycopg.connect(database.url) as conn:
        write_readings(
            conn,
            [(now - timedelta(days=d, hours=1), "soil-ct-001", "soil_moisture", 30.0 + d / 4, 0) for d in range(2, 9)],
        )
        create_user(conn, username="ops-backup", password="a long enough secret 42", role="operator", actor="test")
        conn.commit()
    with open_pool(database.url, min_size=1, max_size=2, name="backup-test") as pool:
        job = AnalyticsJob(JobConfig(), pool=pool, catalog=catalog, clock=now.timestamp)
        job.tick()
    assert database.scalar("SELECT count(*) FROM alarms WHERE device_id = 'fridge-ct-001'") >= 1
    assert (
        database.scalar("SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = 'readings'") >= 3
    )


def test_a_running_center_restored_into_a_fresh_database_has_equal_counts_and_checksums(
    database: ScratchDatabase,
    broker: EmbeddedMosquitto,
    register: Callable[..., object],
    run_ingest: Callable[[], RunningIngest],
    catalog: Catalog,
    tokens: dict[str, dict[str, str]],
    cli: Callable[..., tuple[int, str, str]],
    restored_names: list[str],
    tmp_path: Path,
) -> None:
    _run_center(database, broker, register, run_ingest, catalog)
    dump = tmp_path / "center.dump"

    status, out, err = cli("db", "backup", str(dump), database_url=database.url)
    assert status == 0, err
    assert f"wrote {dump}" in out
    manifest = read_manifest(dump)
    assert manifest.fingerprint is not None
    assert manifest.fingerprint.tables["public.readings"].rows == 44 * 3 + 20 + 7
    assert manifest.versions.timescaledb == database.scalar(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    )
    assert dump.stat().st_size == manifest.dump_bytes > 0

    name = f"{database.name}_restored"
    restored_names.append(name)
    status, out, err = cli("db", "restore", str(dump), "--into", name, database_url=database.url)
    assert status == 0, err
    assert "equal to the backup" in out
    restored = _with_database(database.url, name)

    source, copy = snapshot_of(database.url), snapshot_of(restored)
    assert source == copy
    counts = {table: value[0] for table, value in source.items() if isinstance(value, tuple)}
    assert counts["readings"] == 44 * 3 + 20 + 7
    assert counts["devices"] == 2 and counts["quarantine"] == 1 and counts["alarms"] >= 1
    assert counts["users"] == 1 and counts["api_keys"] == len(tokens)
    assert len(source["(chunks)"]) >= 4  # type: ignore[arg-type]

    # The restored center works: out of restore mode, migrations recorded, new readings accepted.
    with psycopg.connect(restored) as conn:
        assert conn.execute("SHOW timescaledb.restoring").fetchone() == ("off",)
        write_readings(conn, [(datetime.now(UTC), "soil-ct-001", "soil_moisture", 33.5, 0)])
        conn.commit()
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (counts["readings"] + 1,)
    assert migrate_database(restored) == []


def test_a_backup_taken_while_ingest_writes_restores_exactly_what_its_snapshot_held(
    database: ScratchDatabase,
    broker: EmbeddedMosquitto,
    register: Callable[..., object],
    run_ingest: Callable[[], RunningIngest],
    cli: Callable[..., tuple[int, str, str]],
    restored_names: list[str],
    tmp_path: Path,
) -> None:
    register("soil-ct-002", "soil_probe", PROVINCE)
    stop = threading.Event()
    start = datetime.now(UTC) - timedelta(hours=2)
    dump = tmp_path / "live.dump"

    def publish_until_stopped(pub: Publisher) -> None:
        for i in itertools.count():
            if stop.is_set():
                return
            payload = encode_json(
                {"soil_moisture": 25.0 + i % 10, "battery_v": 3.6}, seq=i, ts=start + i * timedelta(seconds=1)
            )
            pub.publish(telemetry_topic(PROVINCE, "agriculture", "soil-ct-002"), payload)

    with run_ingest(), Publisher(broker.url, client_id="backup-live") as pub:
        writer = threading.Thread(target=publish_until_stopped, args=(pub,), daemon=True)
        writer.start()
        try:
            wait_for(lambda: database.scalar("SELECT count(*) FROM readings") > 200, what="ingest under way")
            status, _, err = cli("db", "backup", str(dump), database_url=database.url)
            assert status == 0, err
            during = database.scalar("SELECT count(*) FROM readings")
            wait_for(lambda: database.scalar("SELECT count(*) FROM readings") > during + 50, what="ingest went on")
        finally:
            stop.set()
            writer.join(timeout=30)

    manifest = read_manifest(dump)
    assert manifest.fingerprint is not None
    held = manifest.fingerprint.tables["public.readings"].rows
    assert 200 < held < database.scalar("SELECT count(*) FROM readings")

    name = f"{database.name}_live"
    restored_names.append(name)
    status, _, err = cli("db", "restore", str(dump), "--into", name, database_url=database.url)
    assert status == 0, err
    with psycopg.connect(_with_database(database.url, name)) as conn:
        assert conn.execute("SELECT count(*) FROM readings").fetchone() == (held,)
        # What the snapshot held is a prefix of what the device sent: sequence numbers 0 … held/2 - 1, no gaps.
        assert conn.execute("SELECT count(DISTINCT ts) FROM readings").fetchone() == (held // 2,)


def _as_cluster_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "ioc", "--", *argv] if os.geteuid() == 0 else argv


def test_a_restore_into_a_fresh_cluster_waits_for_its_transaction_ids_and_then_is_equal(
    database: ScratchDatabase,
    register: Callable[..., object],
    runtime_root: Path,
    cli: Callable[..., tuple[int, str, str]],
    tmp_path: Path,
) -> None:
    register("soil-ct-003", "soil_probe", PROVINCE)
    with psycopg.connect(database.url) as conn:
        now = datetime.now(UTC)
        write_readings(
            conn, [(now - timedelta(hours=h), "soil-ct-003", "battery_v", 3.5 + h / 100, 0) for h in range(50)]
        )
        conn.commit()
    dump = tmp_path / "to-new-cluster.dump"
    assert cli("db", "backup", str(dump), database_url=database.url)[0] == 0
    horizon = read_manifest(dump).xid_horizon

    with EmbeddedPostgres(runtime_root / f"fresh-cluster-{next(_COUNTER)}") as fresh:
        # A fresh cluster counts transactions from the start: restoring now would make the analytics job skip
        # new readings (it keeps its place by transaction id). Refused, with the way out spelled out.
        status, _, err = cli("db", "restore", str(dump), database_url=fresh.url)
        assert status == 2, err
        way_out = re.search(r"`pg_resetwal -e (\d+) -x (\d+) DATADIR`", err)
        assert way_out is not None, err
        with psycopg.connect(fresh.url) as conn:
            assert _tables(conn) == []  # nothing was restored

        fresh.stop()
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        resetwal = [str(Path(bindir) / "pg_resetwal"), "-e", way_out[1], "-x", way_out[2], str(fresh.data_dir)]
        subprocess.run(_as_cluster_owner(resetwal), check=True, capture_output=True)
        fresh.restart()
        status, _, err = cli("db", "restore", str(dump), database_url=fresh.url)
        assert status == 0, err
        assert snapshot_of(fresh.url) == snapshot_of(database.url)
        assert int(way_out[2]) > horizon & 0xFFFFFFFF


def test_restore_refuses_what_it_cannot_do_faithfully_with_a_clear_message(
    database: ScratchDatabase,
    cli: Callable[..., tuple[int, str, str]],
    restored_names: list[str],
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nothing.dump"
    status, _, err = cli("db", "restore", str(missing), database_url=database.url)
    assert status == 2 and "manifest" in err and "Traceback" not in err

    dump = tmp_path / "empty-center.dump"
    assert cli("db", "backup", str(dump), database_url=database.url)[0] == 0
    status, _, err = cli("db", "backup", str(dump), database_url=database.url)
    assert status == 2 and "never overwrites" in err

    # Into the database it came from: not empty.
    status, _, err = cli("db", "restore", str(dump), database_url=database.url)
    assert status == 2 and "not empty" in err

    # A damaged file is recognised before anything is created.
    damaged = tmp_path / "damaged.dump"
    damaged.write_bytes(dump.read_bytes()[:-10] + b"0123456789")
    (tmp_path / "damaged.dump.manifest.json").write_text(
        (tmp_path / "empty-center.dump.manifest.json").read_text(encoding="utf-8"), encoding="utf-8"
    )
    name = f"{database.name}_damaged"
    restored_names.append(name)
    status, _, err = cli("db", "restore", str(damaged), "--into", name, database_url=database.url)
    assert status == 2 and "sha256" in err
    status, _, err = cli("db", "restore", str(dump), "--into", database.name, database_url=database.url)
    assert status == 2 and "exists" in err
    assert str(conninfo_to_dict(database.url)["password"]) not in err
