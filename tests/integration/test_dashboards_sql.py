"""Every panel query of every exported dashboard, with Grafana's macros and variables expanded as Grafana does
(tests/grafana_sql.py), run as a read-only `pg_read_all_data` role (like the compose stack's "grafana" role) on a
TimescaleDB filled by the center itself: a simulated fleet through a real broker and ingest, the device monitor
recording status, and the analytics job raising alarms. Each query must return rows with the columns its panel
type draws from."""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql

from analytics.job import AnalyticsJob
from analytics.scoring import JobConfig
from core.lifecycle import running_in_thread
from dashboards.collection import build_dashboards
from dashboards.definitions import DashboardDefinition
from devices.catalog import Catalog, load_catalog
from devices.monitor import DeviceMonitor, MonitorConfig
from devices.provinces import load_provinces
from devices.registry import create_device
from devices.schema import migrate_database
from embedded.runtime import EmbeddedMosquitto, EmbeddedPostgres
from firmware_sim.clock import ScaledClock
from firmware_sim.faults import MALFORMED_REASONS, FaultSpec
from firmware_sim.fleet import FleetConfig, run_fleet
from firmware_sim.roster import build_devices
from ingest.worker import IngestConfig
from protocol.broker_url import parse_broker_url
from store.pool import open_pool
from tests.grafana_sql import TimeRange, Variable, expand
from tests.integration.conftest import RunningIngest, wait_for

# The device types the dashboards draw (two of each), in two provinces.
FLEET_TYPES = (
    "water_level_gauge",
    "salinity_sensor",
    "transformer_monitor",
    "smart_meter",
    "traffic_counter",
    "bus_tracker",
    "vaccine_fridge",
)
PROVINCES = ("can-tho", "ha-noi")
# 30 simulated minutes of reports every 30 s, at 120x: 15 s of wall time.
SIM_MINUTES = 30
SPEED = 120.0
INTERVAL_S = 30.0
# Silence is judged by the job's clock: three hours on, every device of the fleet has gone quiet.
JOB_CLOCK_AHEAD_S = 3 * 3600
VIETNAM_LAT = (8.0, 23.5)
VIETNAM_LON = (102.0, 110.0)

_COUNTER = itertools.count()


@dataclass(frozen=True, slots=True)
class FilledCenter:
    url: str
    reader: str
    time_range: TimeRange
    quarantined_device: str
    quarantined_province: str


def _centers() -> dict[str, tuple[float, float]]:
    return {p.code: p.center for p in load_provinces().values() if p.center is not None}


def _scalar(url: str, query: str) -> Any:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query.encode()).fetchone()
        assert row is not None
        return row[0]


@pytest.fixture(scope="module")
def filled(postgres: EmbeddedPostgres, runtime_root: Path) -> Iterator[FilledCenter]:
    name = f"dash{os.getpid()}_{next(_COUNTER)}"
    reader = f"grafana_reader_{os.getpid()}"
    admin_url = postgres.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
        # As deploy/timescaledb/initdb-grafana-reader.sh makes the compose stack's "grafana" role.
        conn.execute(pgsql.SQL("CREATE ROLE {} NOLOGIN").format(pgsql.Identifier(reader)))
        conn.execute(pgsql.SQL("GRANT pg_read_all_data TO {}").format(pgsql.Identifier(reader)))
    url = postgres.url.rsplit("/", 1)[0] + f"/{name}"
    try:
        migrate_database(url)
        yield _fill(url, reader=reader, root=runtime_root / f"mosquitto-dash-{next(_COUNTER)}", catalog=load_catalog())
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))
            conn.execute(pgsql.SQL("DROP ROLE IF EXISTS {}").format(pgsql.Identifier(reader)))


def _fill(url: str, *, reader: str, root: Path, catalog: Catalog) -> FilledCenter:
    devices = [
        d
        for province in PROVINCES
        for d in build_devices(len(FLEET_TYPES) * 2, types=FLEET_TYPES, provinces=(province,), prefix=province)
    ]
    with psycopg.connect(url) as conn:
        for d in devices:
            create_device(conn, device_id=d.device_id, type_code=d.type_code, province=d.province, catalog=catalog)
        conn.commit()
    start = (datetime.now(UTC) - timedelta(minutes=SIM_MINUTES)).replace(microsecond=0)
    with EmbeddedMosquitto(root) as broker:
        address = parse_broker_url(broker.url)
        ingest = IngestConfig(database_url=url, broker=address, client_id=f"ingest-dash-{next(_COUNTER)}")
        monitor = DeviceMonitor(MonitorConfig(database_url=url, broker=address, client_id="monitor-dash"))
        fleet = FleetConfig(
            broker=address,
            devices=devices,
            seed=12,
            interval_s=INTERVAL_S,
            faults=FaultSpec(probabilities={"malformed": 0.03}),
        )
        with RunningIngest(ingest, catalog), running_in_thread(monitor.run, name="monitor-dash"):
            assert monitor.wait_connected(15)
            result = run_fleet(fleet, duration_s=SIM_MINUTES * 60, clock=ScaledClock(start.timestamp(), speed=SPEED))
            stats = result.stats
            assert stats.unacked == 0 and stats.dropped == 0 and stats.malformed > 0
            wait_for(
                lambda: (
                    _scalar(url, "SELECT count(*) FROM readings") >= stats.expected_rows
                    and _scalar(url, "SELECT count(*) FROM quarantine") >= stats.expected_quarantined
                ),
                timeout_s=60,
                what="the fleet's readings and quarantined messages stored",
            )
            wait_for(lambda: _scalar(url, "SELECT count(*) FROM device_status") > 0, what="device status recorded")
    # The analytics job reads everything, then finds the fleet silent three hours on: alarms are raised.
    with open_pool(url, max_size=2, name="analytics-dash") as pool:
        job = AnalyticsJob(JobConfig(), pool=pool, catalog=catalog, clock=lambda: time.time() + JOB_CLOCK_AHEAD_S)
        deadline = time.monotonic() + 60
        while _scalar(url, "SELECT count(*) FROM alarms WHERE status <> 'cleared'") == 0:
            assert time.monotonic() < deadline, "the analytics job raised no alarm"
            job.tick()
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            b"SELECT q.device_id, d.province FROM quarantine q JOIN devices d USING (device_id) "
            b"GROUP BY 1, 2 ORDER BY count(*) DESC, 1 LIMIT 1"
        ).fetchone()
    assert row is not None
    return FilledCenter(
        url=url,
        reader=reader,
        time_range=TimeRange(start=start - timedelta(minutes=5), end=datetime.now(UTC) + timedelta(minutes=1)),
        quarantined_device=str(row[0]),
        quarantined_province=str(row[1]),
    )


class ReaderSession:
    """Queries as the read-only reader role, in read-only transactions, with Grafana's statement timeout."""

    def __init__(self, center: FilledCenter) -> None:
        self._conn = psycopg.connect(center.url, autocommit=True)
        self._conn.execute(pgsql.SQL("SET ROLE {}").format(pgsql.Identifier(center.reader)))
        self._conn.execute(b"SET default_transaction_read_only = on")
        self._conn.execute(b"SET statement_timeout = '60s'")

    def run(self, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        cursor = self._conn.execute(query.encode())
        assert cursor.description is not None, query
        return [c.name for c in cursor.description], cursor.fetchall()

    def close(self) -> None:
        self._conn.close()


def _is_number(value: object) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool) and math.isfinite(float(value))


def resolve_variables(
    session: ReaderSession, document: Mapping[str, Any], time_range: TimeRange, *, prefer: Mapping[str, str]
) -> dict[str, Variable]:
    """Each variable's own SQL run in order (a later one may use an earlier one); multi-value variables take
    All (every option), single ones the preferred option, or the first."""
    chosen: dict[str, Variable] = {}
    for variable in document.get("templating", {}).get("list", []):
        columns, rows = session.run(expand(variable["query"], time_range=time_range, variables=chosen))
        column = columns.index("__value") if "__value" in columns else 0
        options = [str(row[column]) for row in rows]
        assert options, f"variable {variable['name']} has no options"
        multi = bool(variable.get("multi") or variable.get("includeAll"))
        if multi:
            chosen[variable["name"]] = Variable(tuple(options), quoted=True)
        else:
            value = prefer.get(variable["name"], options[0])
            assert value in options, f"{value!r} is not an option of {variable['name']}: {options}"
            chosen[variable["name"]] = Variable((value,), quoted=False)
    return chosen


def check_columns(panel_type: str, fmt: str, columns: list[str], rows: list[tuple[Any, ...]], *, what: str) -> None:
    """The columns the panel draws from, with values of the right kind."""
    assert rows, f"{what}: no rows"
    if panel_type == "timeseries":
        assert fmt == "time_series", what
        assert "time" in columns, f"{what}: no time column in {columns}"
        at = columns.index("time")
        times = [row[at] for row in rows]
        assert all(isinstance(t, datetime) for t in times), f"{what}: time is not a timestamp"
        assert times == sorted(times), f"{what}: not ordered by time"
        values = [i for i, c in enumerate(columns) if c not in ("time", "metric")]
        assert values, f"{what}: no value column"
        assert all(_is_number(row[i]) or row[i] is None for row in rows for i in values), f"{what}: non-numeric value"
        assert any(_is_number(row[i]) for row in rows for i in values), f"{what}: every value is null"
        if "metric" in columns:
            assert all(isinstance(row[columns.index("metric")], str) for row in rows), f"{what}: metric not text"
    elif panel_type == "stat":
        assert fmt == "table", what
        assert len(rows) == 1, f"{what}: {len(rows)} rows, a stat shows one number"
        assert any(_is_number(v) for v in rows[0]), f"{what}: no number in {rows[0]}"
    elif panel_type == "geomap":
        assert fmt == "table", what
        assert {"latitude", "longitude"} <= set(columns), f"{what}: columns {columns}"
        lat, lon = columns.index("latitude"), columns.index("longitude")
        for row in rows:
            assert _is_number(row[lat]) and _is_number(row[lon]), f"{what}: position {row[lat]}, {row[lon]}"
            assert VIETNAM_LAT[0] <= float(row[lat]) <= VIETNAM_LAT[1], f"{what}: latitude {row[lat]}"
            assert VIETNAM_LON[0] <= float(row[lon]) <= VIETNAM_LON[1], f"{what}: longitude {row[lon]}"
    elif panel_type == "table":
        assert fmt == "table", what
        assert len(set(columns)) == len(columns), f"{what}: repeated column names {columns}"
    else:
        raise AssertionError(f"{what}: no check for panel type {panel_type}")


DASHBOARDS = {d.uid: d for d in build_dashboards(province_centers=_centers())}


def _run_dashboard(center: FilledCenter, dashboard: DashboardDefinition, *, prefer: Mapping[str, str]) -> int:
    session = ReaderSession(center)
    checked = 0
    try:
        document = dashboard.document
        variables = resolve_variables(session, document, center.time_range, prefer=prefer)
        for panel in document["panels"]:
            for target in panel["targets"]:
                what = f"{dashboard.uid} panel {panel['id']} {panel['title']!r} target {target['refId']}"
                query = expand(target["rawSql"], time_range=center.time_range, variables=variables)
                assert "$" not in query.replace("$$", ""), f"{what}: unexpanded {query}"
                columns, rows = session.run(query)
                check_columns(panel["type"], target["format"], columns, rows, what=what)
                # Field overrides (hidden columns, drill-down links) name columns the query returns.
                named = {o["matcher"]["options"] for o in panel.get("fieldConfig", {}).get("overrides", [])}
                assert named <= set(columns), f"{what}: overrides name {named - set(columns)}"
                checked += 1
    finally:
        session.close()
    return checked


@pytest.mark.parametrize("uid", sorted(DASHBOARDS))
def test_every_panel_query_returns_rows_with_the_columns_its_panel_draws(filled: FilledCenter, uid: str) -> None:
    prefer = {"province": filled.quarantined_province, "device": filled.quarantined_device}
    dashboard = DASHBOARDS[uid]
    checked = _run_dashboard(filled, dashboard, prefer=prefer)
    assert checked == sum(len(p["targets"]) for p in dashboard.document["panels"]) > 0


def test_the_device_drilldown_shows_the_chosen_device_and_its_quarantined_messages(filled: FilledCenter) -> None:
    document = DASHBOARDS["ioc-device-drilldown"].document
    session = ReaderSession(filled)
    try:
        variables = resolve_variables(
            session,
            document,
            filled.time_range,
            prefer={"province": filled.quarantined_province, "device": filled.quarantined_device},
        )
        assert variables["device"].values == (filled.quarantined_device,)
        panels = {p["title"]: p for p in document["panels"]}
        quarantine = panels["Tin nhắn bị cách ly / Quarantined messages"]["targets"][0]["rawSql"]
        columns, rows = session.run(expand(quarantine, time_range=filled.time_range, variables=variables))
        expected = _scalar(
            filled.url, f"SELECT count(*) FROM quarantine WHERE device_id = '{filled.quarantined_device}'"
        )
        assert len(rows) == expected > 0
        with psycopg.connect(filled.url, autocommit=True) as conn:
            stored = conn.execute(
                b"SELECT reason FROM quarantine WHERE device_id = %s ORDER BY reason", (filled.quarantined_device,)
            ).fetchall()
        assert sorted(row[columns.index("reason")] for row in rows) == [r for (r,) in stored]
        assert {r for (r,) in stored} <= set(MALFORMED_REASONS)
        device = panels["Thiết bị / Device"]["targets"][0]["rawSql"]
        columns, rows = session.run(expand(device, time_range=filled.time_range, variables=variables))
        assert [row[columns.index("device_id")] for row in rows] == [filled.quarantined_device]
        # The metric variable offers exactly what the device reported, and the series draws each of them.
        series = panels["Chỉ số / Metrics"]["targets"][0]["rawSql"]
        columns, rows = session.run(expand(series, time_range=filled.time_range, variables=variables))
        assert {row[columns.index("metric")] for row in rows} == set(variables["metric"].values)
    finally:
        session.close()


def test_the_overview_map_puts_fixed_devices_at_their_province_seat_and_buses_at_their_fix(
    filled: FilledCenter,
) -> None:
    document = DASHBOARDS["ioc-province-overview"].document
    (geomap,) = [p for p in document["panels"] if p["type"] == "geomap"]
    session = ReaderSession(filled)
    try:
        variables = resolve_variables(session, document, filled.time_range, prefer={})
        fixed, moving = (
            session.run(expand(t["rawSql"], time_range=filled.time_range, variables=variables))
            for t in geomap["targets"]
        )
    finally:
        session.close()
    centers = load_provinces()
    columns, rows = fixed
    by_name = {row[columns.index("province")]: row for row in rows}
    assert set(by_name) == {centers[code].name for code in PROVINCES}
    for code in PROVINCES:
        row = by_name[centers[code].name]
        position = (float(row[columns.index("latitude")]), float(row[columns.index("longitude")]))
        assert position == centers[code].center
        # Every fixed device of the province (all but the two buses), counted per sector.
        assert row[columns.index("devices")] == 2 * (len(FLEET_TYPES) - 1)
        assert row[columns.index("transport")] == 2  # the traffic counters; buses are drawn where they are
        assert row[columns.index("open_alarms")] > 0
    columns, rows = moving
    buses = sorted(row[columns.index("device_id")] for row in rows)
    assert len(buses) == 2 * len(PROVINCES) and all("bus-tracker" in b for b in buses)
    latest = _scalar(
        filled.url,
        f"SELECT value FROM device_latest WHERE device_id = '{buses[0]}' AND metric = 'latitude'",
    )
    assert [row[columns.index("latitude")] for row in rows if row[columns.index("device_id")] == buses[0]] == [latest]
