"""Flood control against the real database: maintenance windows through the API (operators only, inside their
scope) suppressing the job's alarms; a province's devices going silent together linked as one incident; a silent
device reminded until someone acknowledges."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from analytics.alarms import acknowledge_alarm
from analytics.job import AnalyticsJob
from analytics.scoring import JobConfig
from api.access.keys import create_api_key
from api.principal import Role
from devices.catalog import Catalog
from store.pool import Pool, open_pool
from store.readings import write_readings
from store.scope import EVERYTHING, Scope
from tests.integration.conftest import ApiServer, ScratchDatabase

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now.timestamp()


@pytest.fixture
def pool(database: ScratchDatabase) -> Iterator[Pool]:
    with open_pool(database.url, min_size=1, max_size=3, name="test-flood") as p:
        yield p


def _key(database: ScratchDatabase, name: str, role: Role, scope: Scope) -> dict[str, str]:
    with psycopg.connect(database.url) as conn:
        key = create_api_key(conn, name=name, role=role, scope=scope, lifetime=timedelta(days=1), actor="test")
        conn.commit()
    return {"Authorization": f"Bearer {key.secret}"}


def _write(database: ScratchDatabase, device_id: str, metric: str, points: list[tuple[datetime, float]]) -> None:
    with psycopg.connect(database.url) as conn:
        write_readings(conn, [(ts, device_id, metric, value, 0) for ts, value in points])
        conn.commit()


def _alarms(database: ScratchDatabase) -> list[tuple[int, str, str, int | None, int, str]]:
    with database.connect() as conn:
        rows = conn.execute("SELECT id, device_id, cause, incident_id, reminders, status FROM alarms ORDER BY id")
        return [(int(r[0]), str(r[1]), str(r[2]), r[3], int(r[4]), str(r[5])) for r in rows]


def _job(pool: Pool, catalog: Catalog, clock: Clock, **config: object) -> AnalyticsJob:
    return AnalyticsJob(JobConfig(**config), pool=pool, catalog=catalog, notifier=None, clock=clock)  # type: ignore[arg-type]


def test_maintenance_windows_are_operators_work_inside_their_scope(
    database: ScratchDatabase, register: Callable[..., object], api: Callable[[], ApiServer]
) -> None:
    register("pump-ct-1", "pump_station", "can-tho")
    register("pump-hn-1", "pump_station", "ha-noi")
    can_tho = _key(database, "op-ct", "operator", Scope.of(provinces=["can-tho"]))
    viewer = _key(database, "viewer", "viewer", EVERYTHING)
    admin = _key(database, "admin", "admin", EVERYTHING)
    window = {"starts_at": "2026-12-01T08:00:00+07:00", "ends_at": "2026-12-01T12:00:00+07:00", "reason": "pump swap"}
    with api() as client:
        assert client.post("/maintenance", json={**window, "device_id": "pump-ct-1"}).status_code == 401
        assert client.post("/maintenance", json={**window, "device_id": "pump-ct-1"}, headers=viewer).status_code == 403
        created = client.post("/maintenance", json={**window, "device_id": "pump-ct-1"}, headers=can_tho)
        assert created.status_code == 201, created.text
        body = created.json()
        assert (body["device_id"], body["province"], body["sector"], body["created_by"]) == (
            "pump-ct-1",
            "can-tho",
            "energy",
            "key:op-ct",
        )
        # A device outside the caller's scope is unknown; a window wider than the scope is refused.
        assert (
            client.post("/maintenance", json={**window, "device_id": "pump-hn-1"}, headers=can_tho).status_code == 404
        )
        assert client.post("/maintenance", json={**window, "province": "ha-noi"}, headers=can_tho).status_code == 403
        assert client.post("/maintenance", json={**window, "sector": "energy"}, headers=can_tho).status_code == 403
        wide = client.post("/maintenance", json={**window, "province": "ha-noi", "sector": "energy"}, headers=admin)
        assert wide.status_code == 201
        # Bad input is a 4xx, never a 500.
        for bad in (
            {**window, "ends_at": "2026-12-01T07:00:00+07:00", "device_id": "pump-ct-1"},
            {**window, "starts_at": "2026-12-01T08:00:00", "device_id": "pump-ct-1"},
            {**window, "ends_at": "2027-03-01T08:00:00+07:00", "province": "can-tho"},
            {**window},
            {**window, "site": "station-7"},
            {**window, "device_id": "pump-ct-1", "province": "can-tho"},
        ):
            assert client.post("/maintenance", json=bad, headers=admin).status_code == 422, bad
        assert client.get("/maintenance/99999999", headers=admin).status_code == 404
        assert client.get("/maintenance/0", headers=admin).status_code == 422
        # Each sees the windows in their scope; cancelling one outside it is not found.
        assert [w["id"] for w in client.get("/maintenance", headers=can_tho).json()] == [body["id"]]
        assert len(client.get("/maintenance", headers=viewer).json()) == 2
        assert client.post(f"/maintenance/{wide.json()['id']}/cancel", headers=can_tho).status_code == 404
        cancelled = client.post(f"/maintenance/{body['id']}/cancel", headers=can_tho)
        assert cancelled.status_code == 200 and cancelled.json()["cancelled_by"] == "key:op-ct"
        assert client.get("/maintenance", headers=can_tho).json() == []
        assert len(client.get("/maintenance?include_cancelled=true", headers=can_tho).json()) == 1
    with database.connect() as conn:
        actions = [
            r[0] for r in conn.execute("SELECT action FROM audit_log WHERE target LIKE 'maintenance:%' ORDER BY id")
        ]
    assert actions == ["maintenance.create", "maintenance.create", "maintenance.cancel"]


def test_no_alarm_is_raised_for_a_device_under_maintenance(
    database: ScratchDatabase, register: Callable[..., object], catalog: Catalog, pool: Pool
) -> None:
    from store.maintenance import create_window

    register("fridge-ct-m", "vaccine_fridge", "can-tho")
    register("fridge-hn-m", "vaccine_fridge", "ha-noi")
    with psycopg.connect(database.url) as conn:
        create_window(
            conn,
            device_id=None,
            site=None,
            province="can-tho",
            sector="health",
            starts_at=T0,
            ends_at=T0 + timedelta(hours=1),
            reason="cold room service",
            by="test",
        )
        conn.commit()
    warm = [(T0 + timedelta(minutes=i), 9.5) for i in range(15)]
    _write(database, "fridge-ct-m", "temperature", warm)
    _write(database, "fridge-hn-m", "temperature", warm)
    job = _job(pool, catalog, Clock(T0 + timedelta(minutes=15)))
    stats = job.tick()
    assert (stats.raised, stats.suppressed) == (1, 1)
    assert [a[1] for a in _alarms(database)] == ["fridge-hn-m"]
    # After the window, the same condition raises again.
    _write(database, "fridge-ct-m", "temperature", [(T0 + timedelta(minutes=61 + i), 9.5) for i in range(12)])
    job.tick()
    assert sorted(a[1] for a in _alarms(database)) == ["fridge-ct-m", "fridge-hn-m"]


def test_a_provinces_silent_devices_form_one_incident_and_silence_is_reminded_until_acknowledged(
    database: ScratchDatabase, register: Callable[..., object], catalog: Catalog, pool: Pool
) -> None:
    for i in range(3):
        register(f"fridge-ct-s{i}", "vaccine_fridge", "can-tho")
        _write(database, f"fridge-ct-s{i}", "temperature", [(T0 + timedelta(minutes=m), 5.0) for m in range(3)])
    clock = Clock(T0 + timedelta(minutes=2))
    job = _job(pool, catalog, clock, silence_reminder_s=1800.0)
    job.tick()
    clock.now += timedelta(seconds=800)  # 2.5 reports of 5 minutes missed
    stats = job.tick()
    assert stats.raised == 3
    alarms = _alarms(database)
    leader = alarms[0][0]
    assert [(a[2], a[3]) for a in alarms] == [("silent", None), ("silent", leader), ("silent", leader)]
    clock.now += timedelta(seconds=1700)
    assert job.tick().reminded == 0
    clock.now += timedelta(seconds=200)
    assert job.tick().reminded == 3
    assert [a[4] for a in _alarms(database)] == [1, 1, 1]
    with psycopg.connect(database.url) as conn:
        acknowledge_alarm(conn, leader, by="user:an", note=None, now=clock.now, scope=EVERYTHING)
        conn.commit()
    clock.now += timedelta(seconds=1800)
    assert job.tick().reminded == 2  # the acknowledged one is in hand
    _write(database, "fridge-ct-s1", "temperature", [(clock.now - timedelta(seconds=10), 5.0)])
    assert job.tick().cleared == 1
