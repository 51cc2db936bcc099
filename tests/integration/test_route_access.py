"""Who may call which route, and what a caller scoped to one province sees of another, through the real API over
data that came in through the registry, the broker, ingest and the analytics job.

`ROUTES` lists every route of the application with the lowest access it needs and how it keeps another province's
data from a viewer; `test_every_route_of_the_app_is_in_the_access_table` fails when a route is added without a row.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import httpx
import psycopg
import pytest
from fastapi.routing import iter_route_contexts

from analytics.job import AnalyticsJob
from analytics.scoring import JobConfig
from api.access.keys import create_api_key, revoke_key
from api.app import create_app
from core.settings import Settings
from devices.catalog import Catalog
from devices.provisioning import ProvisionedDevice
from embedded.runtime import EmbeddedMosquitto
from protocol.telemetry import encode_json
from protocol.topics import telemetry_topic
from store.pool import open_pool
from store.scope import EVERYTHING, Scope
from tests.integration.conftest import ApiServer, RunningIngest, ScratchDatabase, wait_for
from tests.integration.device_fixtures import provision_fixture  # noqa: F401
from tests.integration.publisher import Publisher

HOME: Final = "can-tho"  # the scoped callers' province
OTHER: Final = "ha-noi"
HOME_FRIDGE: Final = "fridge-ct-1"
OTHER_FRIDGE: Final = "fridge-hn-1"

Access = Literal["open", "self", "viewer", "operator", "admin"]
# How a route keeps another province's data from a viewer scoped to one province:
#   not_found   the path names the other province's thing: 404, as for an unknown one
#   absent      a list, count or summary: 200 without any of the other province's things
#   forbidden   a write above a viewer's role: 403, and nothing changes
#   unscoped    holds no province's data (the catalog, a schema, the caller's own account)
#   elsewhere   tested in the file `note` names (a live stream needs its own harness)
Other = Literal["not_found", "absent", "forbidden", "unscoped", "elsewhere"]


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    access: Access
    other: Other
    params: Mapping[str, str] = field(default_factory=dict)
    # For `absent`: a text the answer must hold (the caller's own province's data), so the check is not vacuous.
    own: str | None = None
    note: str = ""


ROUTES: Final[tuple[Route, ...]] = (
    # Open: probes, the documentation and logging in.
    Route("GET", "/healthz", "open", "unscoped"),
    Route("GET", "/readyz", "open", "unscoped"),
    Route("GET", "/", "open", "unscoped"),
    Route("GET", "/openapi.json", "open", "unscoped"),
    Route("GET", "/docs", "open", "unscoped"),
    Route("GET", "/docs/oauth2-redirect", "open", "unscoped"),
    Route("GET", "/redoc", "open", "unscoped"),
    Route("GET", "/static/docs/{path}", "open", "unscoped"),
    Route("GET", "/console", "open", "unscoped"),
    Route("GET", "/console/assets/{path}", "open", "unscoped"),
    Route("POST", "/auth/login", "open", "unscoped"),
    Route("POST", "/auth/token", "open", "unscoped"),
    Route("POST", "/auth/refresh", "open", "unscoped"),
    # The caller's own account.
    Route("GET", "/auth/me", "self", "unscoped"),
    Route("POST", "/auth/logout", "self", "unscoped"),
    Route("POST", "/auth/password", "self", "unscoped"),
    # Devices and their data.
    Route("GET", "/devices", "viewer", "absent", own=HOME_FRIDGE),
    Route("POST", "/devices", "admin", "forbidden"),
    Route("POST", "/devices/import", "admin", "forbidden"),
    Route("GET", "/devices/{device_id}", "viewer", "not_found"),
    Route("PATCH", "/devices/{device_id}", "admin", "forbidden"),
    Route("POST", "/devices/{device_id}/decommission", "admin", "forbidden"),
    Route("POST", "/devices/{device_id}/secret", "admin", "forbidden"),
    Route("POST", "/devices/{device_id}/revoke", "admin", "forbidden"),
    Route("GET", "/devices/{device_id}/audit", "admin", "forbidden"),
    Route("GET", "/devices/{device_id}/readings", "viewer", "not_found"),
    Route("GET", "/devices/{device_id}/buckets", "viewer", "not_found"),
    Route("GET", "/devices/{device_id}/anomalies", "viewer", "not_found"),
    Route("GET", "/devices/{device_id}/commands", "viewer", "not_found"),
    Route("GET", "/devices/{device_id}/quarantine", "viewer", "not_found"),
    Route("POST", "/devices/{device_id}/commands", "operator", "forbidden"),
    Route("GET", "/device-health", "viewer", "absent", own=HOME_FRIDGE),
    Route("GET", "/device-health/summary", "viewer", "absent", own=HOME),
    Route("GET", "/device-health/{device_id}", "viewer", "not_found"),
    # Alarms.
    Route("GET", "/alarms", "viewer", "absent", own=HOME_FRIDGE),
    Route("GET", "/alarms/{alarm_id}", "viewer", "not_found"),
    Route("POST", "/alarms/{alarm_id}/ack", "operator", "forbidden"),
    Route("POST", "/alarms/{alarm_id}/clear", "operator", "forbidden"),
    Route("POST", "/alarms/{alarm_id}/comment", "operator", "forbidden"),
    Route("POST", "/alarms/{alarm_id}/assign", "operator", "forbidden"),
    Route("GET", "/maintenance", "viewer", "absent"),
    Route("GET", "/maintenance/{window_id}", "viewer", "not_found"),
    Route("POST", "/maintenance", "operator", "forbidden"),
    Route("POST", "/maintenance/{window_id}/cancel", "operator", "forbidden"),
    # Overviews, export, live, federation.
    Route("GET", "/kpis", "viewer", "absent", own=HOME),
    Route("GET", "/latest", "viewer", "absent", own=HOME_FRIDGE),
    Route("GET", "/totals", "viewer", "absent", params={"metric": "temperature"}),
    Route("GET", "/export/readings.csv", "viewer", "absent", own=HOME_FRIDGE),
    Route(
        "GET",
        "/stream",
        "viewer",
        "elsewhere",
        note="tests/integration/test_stream.py::test_a_reading_reaches_the_subscriber_in_scope_and_no_other",
    ),
    Route("GET", "/federation/summary", "viewer", "not_found", params={"province": OTHER}),
    Route("GET", "/federation/schema", "viewer", "unscoped"),
    Route("GET", "/catalog/device-types", "viewer", "unscoped"),
    Route("GET", "/catalog/device-types/{code}", "viewer", "unscoped"),
    Route("GET", "/catalog/provinces", "viewer", "unscoped"),
    Route("GET", "/catalog/sectors", "viewer", "unscoped"),
    # Administration.
    Route("GET", "/audit", "admin", "forbidden"),
    Route("GET", "/metrics", "admin", "forbidden"),
    Route("GET", "/users", "admin", "forbidden"),
    Route("POST", "/users", "admin", "forbidden"),
    Route("GET", "/users/{username}", "admin", "forbidden"),
    Route("PATCH", "/users/{username}", "admin", "forbidden"),
    Route("POST", "/users/{username}/password", "admin", "forbidden"),
    Route("GET", "/keys", "admin", "forbidden"),
    Route("POST", "/keys", "admin", "forbidden"),
    Route("DELETE", "/keys/{name}", "admin", "forbidden"),
    Route("GET", "/quarantine", "admin", "forbidden"),
    Route("GET", "/quarantine/suppressed", "admin", "forbidden"),
    Route("GET", "/quarantine/{entry_id}", "admin", "forbidden"),
    Route("DELETE", "/quarantine", "admin", "forbidden"),
)
PROTECTED: Final = tuple(r for r in ROUTES if r.access != "open")


def _ident(route: Route) -> str:
    return f"{route.method} {route.path}"


def _app_routes() -> set[tuple[str, str]]:
    """(method, path) of every route the application answers, included routers and mounts too."""
    app = create_app(Settings(), database_url="postgresql://unused/none")  # the lifespan (and the pool) never runs
    found = set()
    for route in iter_route_contexts(app.routes):
        assert route.path_format is not None
        for method in route.methods or {"GET"}:  # a mount (static files) has no methods: it answers GET
            if method != "HEAD":  # answered with every GET
                found.add((method, route.path_format))
    return found


def test_every_route_of_the_app_is_in_the_access_table() -> None:
    in_app = _app_routes()
    in_table = {(r.method, r.path) for r in ROUTES}
    assert len(in_table) == len(ROUTES), "a route is listed twice"
    assert sorted(in_app - in_table) == [], "routes without a row in ROUTES: say who may call them"
    assert sorted(in_table - in_app) == [], "rows of ROUTES for routes the app does not have"


@dataclass(frozen=True, slots=True)
class World:
    """What the scoped callers act on: a fridge with a readings history, an alarm and a command in each province."""

    client: httpx.Client
    database: ScratchDatabase
    all_scope: dict[str, dict[str, str]]  # headers per role, every province
    home: dict[str, dict[str, str]]  # headers per role, HOME only
    alarm: dict[str, int]  # device id -> its alarm id

    def url(self, route: Route, *, device_id: str = OTHER_FRIDGE) -> str:
        alarm_id = self.alarm[device_id]
        return route.path.format(
            device_id=device_id,
            alarm_id=alarm_id,
            code="vaccine_fridge",
            username="nobody",
            name="nobody",
            entry_id=1,
            window_id=1,
            path="swagger-ui.css",
        )


def _headers(database: ScratchDatabase, *, prefix: str, scope: Scope) -> dict[str, dict[str, str]]:
    headers = {}
    with psycopg.connect(database.url) as conn:
        for role in ("viewer", "operator", "admin"):
            key = create_api_key(
                conn, name=f"{prefix}-{role}", role=role, scope=scope, lifetime=timedelta(days=1), actor="test"
            )
            headers[role] = {"Authorization": f"Bearer {key.secret}"}
        conn.commit()
    return headers


def _count(database: ScratchDatabase, sql: str, *params: object) -> int:
    return int(database.scalar(sql, params))


def _publish_history(
    broker: EmbeddedMosquitto,
    devices: Mapping[str, tuple[str, str]],
    readings: Callable[[int], dict[str, float]],
    *,
    now: datetime,
    minutes: int,
) -> None:
    """One message a minute for `minutes` + 1 minutes up to `now`, from each device (id -> province, sector)."""
    with Publisher(broker.url, client_id="route-access-fleet") as pub:
        for device_id, (province, sector) in devices.items():
            topic = telemetry_topic(province, sector, device_id)
            for i in range(minutes + 1):
                ts = now - timedelta(minutes=minutes - i)
                pub.publish(topic, encode_json(readings(i), seq=i, ts=ts))


@pytest.fixture(name="world")
def world_fixture(
    database: ScratchDatabase,
    broker: EmbeddedMosquitto,
    provision: Callable[..., ProvisionedDevice],
    run_ingest: Callable[[], RunningIngest],
    catalog: Catalog,
) -> Iterator[World]:
    """Two vaccine fridges, one per province, too warm for 12 minutes: their readings come in over MQTT through
    ingest, the analytics job raises an alarm for each, and an all-scope operator has sent each a command."""
    fridges = {HOME_FRIDGE: (HOME, "health"), OTHER_FRIDGE: (OTHER, "health")}
    for device_id, (province, _) in fridges.items():
        provision(device_id, "vaccine_fridge", province)
    now = datetime.now(UTC).replace(microsecond=0)
    with run_ingest():
        _publish_history(broker, fridges, lambda i: {"temperature": 9.5, "battery_v": 3.9}, now=now, minutes=12)
        wait_for(lambda: _count(database, "SELECT count(*) FROM readings") == 2 * 13 * 2, what="readings stored")
    query = "SELECT device_id, id FROM alarms WHERE cause = 'threshold_above@8' AND status = 'active'"
    with open_pool(database.url, min_size=1, max_size=2, name="route-access-job") as pool:
        job = AnalyticsJob(JobConfig(), pool=pool, catalog=catalog, clock=now.timestamp)
        # The job scores what is final (below the oldest open transaction): on a busy machine that may take more
        # than one tick.
        wait_for(
            lambda: job.tick() is not None and _count(database, f"SELECT count(*) FROM ({query}) raised") == 2,
            what="both alarms raised",
        )
    with database.connect() as conn:
        rows = conn.execute(query).fetchall()
    alarm = {str(device_id): int(alarm_id) for device_id, alarm_id in rows}
    assert set(alarm) == set(fridges), rows
    all_scope = _headers(database, prefix="all", scope=EVERYTHING)
    home = _headers(database, prefix=HOME, scope=Scope.of(provinces=[HOME]))
    with ApiServer(database.url, mqtt_url=broker.url) as client:
        for device_id in fridges:
            sent = client.post(f"/devices/{device_id}/commands", json={"name": "ping"}, headers=all_scope["operator"])
            assert sent.status_code == 202, sent.text
        yield World(client=client, database=database, all_scope=all_scope, home=home, alarm=alarm)


def _request(world: World, route: Route, headers: Mapping[str, str]) -> httpx.Response:
    body: dict[str, Any] | None = None if route.method == "GET" else {}
    return world.client.request(route.method, world.url(route), params=route.params, json=body, headers=headers)


# Reads that are audited (who exported or watched what): the only entries a viewer's requests may add.
AUDITED_READS: Final = frozenset({"export.readings", "location.read"})


def _snapshot(database: ScratchDatabase) -> dict[str, list[tuple[object, ...]]]:
    """Every row a refused request must leave as it was (api_keys is left out: each request marks its key used)."""
    reads = sorted(AUDITED_READS)
    tables = {
        "devices": "SELECT * FROM devices ORDER BY device_id",
        "alarms": "SELECT * FROM alarms ORDER BY id",
        "device_commands": "SELECT * FROM device_commands ORDER BY id",
        "audit_log": f"SELECT * FROM audit_log WHERE action <> ALL(ARRAY{reads}) ORDER BY id",
        "users": "SELECT * FROM users ORDER BY user_id",
    }
    with database.connect() as conn:
        return {table: conn.execute(query.encode()).fetchall() for table, query in tables.items()}


def test_a_viewer_of_one_province_gets_nothing_of_another_and_cannot_write(world: World) -> None:
    viewer = world.home["viewer"]
    before = _snapshot(world.database)
    problems = []
    checked = set()
    for route in PROTECTED:
        if route.access == "self" or route.other == "elsewhere":
            continue
        response = _request(world, route, viewer)
        checked.add(route.other)
        status = response.status_code
        text = response.text
        if route.other == "not_found":
            ok = status == 404  # worded as for an unknown one: see the test below
        elif route.other == "absent":
            ok = status == 200 and OTHER_FRIDGE not in text and OTHER not in text
            ok = ok and (route.own is None or route.own in text)
        elif route.other == "forbidden":
            ok = status == 403
        else:  # unscoped
            ok = status == 200 and OTHER_FRIDGE not in text
        if not ok:
            problems.append(f"{_ident(route)} ({route.other}): {status} {text[:300]}")
    assert problems == []
    assert checked == {"not_found", "absent", "forbidden", "unscoped"}
    assert _snapshot(world.database) == before, "a refused request changed something"


def test_an_unknown_device_and_one_of_another_province_get_the_same_answer(world: World) -> None:
    viewer = world.home["viewer"]
    for route in (r for r in PROTECTED if r.other == "not_found" and "{device_id}" in r.path):
        other = world.client.get(world.url(route), params=route.params, headers=viewer)
        unknown = world.client.get(world.url(route).replace(OTHER_FRIDGE, "fridge-xx-9"), headers=viewer)
        assert other.status_code == unknown.status_code == 404, _ident(route)
        assert other.json()["detail"] == unknown.json()["detail"].replace("fridge-xx-9", OTHER_FRIDGE), _ident(route)
    # An all-scope viewer sees the same device: the 404 above is the scope's doing.
    assert world.client.get(f"/devices/{OTHER_FRIDGE}", headers=world.all_scope["viewer"]).status_code == 200


def test_every_protected_route_refuses_no_token_an_expired_key_and_a_revoked_key(
    database: ScratchDatabase, api: Callable[[], ApiServer]
) -> None:
    expiring = _headers(database, prefix="expiring", scope=EVERYTHING)["admin"]
    revoked = _headers(database, prefix="revoked", scope=EVERYTHING)["admin"]
    with api() as client:
        # Both keys work until they expire or are revoked.
        for headers in (expiring, revoked):
            assert client.get("/devices", headers=headers).status_code == 200
        with psycopg.connect(database.url) as conn:
            conn.execute("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE name = 'expiring-admin'")
            revoke_key(conn, name="revoked-admin", actor="test")
            conn.commit()
        problems = []
        for route in PROTECTED:
            url = route.path.format(
                device_id="fridge-ct-1",
                alarm_id=1,
                code="x",
                username="nobody",
                name="nobody",
                entry_id=1,
                window_id=1,
                path="x",
            )
            body: dict[str, Any] | None = None if route.method == "GET" else {}
            for label, headers in (("no token", {}), ("expired key", expiring), ("revoked key", revoked)):
                response = client.request(route.method, url, params=route.params, json=body, headers=headers)
                if response.status_code != 401 or response.headers.get("www-authenticate") != "Bearer":
                    problems.append(f"{_ident(route)} with {label}: {response.status_code} {response.text[:200]}")
        assert problems == []
        assert client.get("/healthz").status_code == 200  # the probe stays open


def test_an_operator_acts_within_their_province_and_is_the_audited_actor(world: World) -> None:
    operator = world.home["operator"]
    home_alarm, other_alarm = world.alarm[HOME_FRIDGE], world.alarm[OTHER_FRIDGE]
    client = world.client
    commands_before = _count(world.database, "SELECT count(*) FROM device_commands")

    # Another province's alarm and device are unknown to this operator: nothing happens to them.
    for action, body in (
        ("ack", {}),
        ("clear", {"note": "not mine"}),
        ("comment", {"note": "not mine"}),
        ("assign", {"assignee": None}),
    ):
        refused = client.post(f"/alarms/{other_alarm}/{action}", json=body, headers=operator)
        assert (refused.status_code, refused.json()) == (404, {"detail": f"no alarm {other_alarm}"}), action
    refused = client.post(f"/devices/{OTHER_FRIDGE}/commands", json={"name": "ping"}, headers=operator)
    assert (refused.status_code, refused.json()) == (404, {"detail": f"unknown device '{OTHER_FRIDGE}'"})
    untouched = client.get(f"/alarms/{other_alarm}", headers=world.all_scope["viewer"]).json()
    assert (untouched["status"], untouched["acknowledged_by"], untouched["comments"]) == ("active", None, [])
    assert _count(world.database, "SELECT count(*) FROM device_commands") == commands_before

    # A name in the body is refused: the actor is the token's principal.
    assert client.post(f"/alarms/{home_alarm}/ack", json={"by": "someone else"}, headers=operator).status_code == 422
    acked = client.post(f"/alarms/{home_alarm}/ack", json={"note": "on my way"}, headers=operator)
    assert acked.status_code == 200, acked.text
    assert (acked.json()["status"], acked.json()["acknowledged_by"]) == ("acknowledged", f"key:{HOME}-operator")
    commented = client.post(f"/alarms/{home_alarm}/comment", json={"note": "door seal torn"}, headers=operator)
    assert commented.status_code == 200, commented.text
    assert [(c["actor"], c["note"]) for c in commented.json()["comments"]] == [
        (f"key:{HOME}-operator", "door seal torn")
    ]
    assert (
        client.post(f"/alarms/{home_alarm}/comment", json={"note": "x"}, headers=world.home["viewer"]).status_code
        == 403
    )
    cleared = client.post(f"/alarms/{home_alarm}/clear", json={"note": "seal replaced"}, headers=operator)
    assert (cleared.json()["status"], cleared.json()["cleared_by"]) == ("cleared", f"key:{HOME}-operator")
    sent = client.post(f"/devices/{HOME_FRIDGE}/commands", json={"name": "reboot"}, headers=operator)
    assert (sent.status_code, sent.json()["actor"]) == (202, f"key:{HOME}-operator")

    with world.database.connect() as conn:
        audited = conn.execute(
            "SELECT actor, action, target, details->>'note', address FROM audit_log WHERE actor = %s ORDER BY id",
            (f"key:{HOME}-operator",),
        ).fetchall()
    target = f"alarm:{home_alarm}"
    assert audited == [
        (f"key:{HOME}-operator", "alarm.acknowledge", target, "on my way", "127.0.0.1"),
        (f"key:{HOME}-operator", "alarm.comment", target, "door seal torn", "127.0.0.1"),
        (f"key:{HOME}-operator", "alarm.clear", target, "seal replaced", "127.0.0.1"),
        (f"key:{HOME}-operator", "command.send", HOME_FRIDGE, None, "127.0.0.1"),
    ]


def test_a_province_admin_changes_devices_only_in_their_province(world: World) -> None:
    admin = world.home["admin"]
    client = world.client
    new = {"device_id": "fridge-hn-2", "type_code": "vaccine_fridge", "province": OTHER}
    refused = client.post("/devices", json=new, headers=admin)
    assert (refused.status_code, refused.json()) == (403, {"detail": f"{OTHER}/health is outside your scope"})
    created = client.post("/devices", json={**new, "device_id": "fridge-ct-2", "province": HOME}, headers=admin)
    assert created.status_code == 201, created.text

    moved = client.patch(f"/devices/{HOME_FRIDGE}", json={"province": OTHER}, headers=admin)
    assert (moved.status_code, moved.json()) == (403, {"detail": f"{OTHER}/health is outside your scope"})
    for method, path, body in (
        ("PATCH", f"/devices/{OTHER_FRIDGE}", {"name": "mine now"}),
        ("POST", f"/devices/{OTHER_FRIDGE}/decommission", {}),
        ("POST", f"/devices/{OTHER_FRIDGE}/secret", None),
        ("POST", f"/devices/{OTHER_FRIDGE}/revoke", {}),
        ("GET", f"/devices/{OTHER_FRIDGE}/audit", None),
    ):
        response = client.request(method, path, json=body, headers=admin)
        assert (response.status_code, response.json()) == (404, {"detail": f"unknown device '{OTHER_FRIDGE}'"}), path
    renamed = client.patch(f"/devices/{HOME_FRIDGE}", json={"name": "Trạm y tế Ninh Kiều"}, headers=admin)
    assert renamed.json()["name"] == "Trạm y tế Ninh Kiều"
    csv_text = f"device_id,type_code,province\nfridge-ct-3,vaccine_fridge,{HOME}\nfridge-hn-3,vaccine_fridge,{OTHER}\n"
    report = client.post("/devices/import", content=csv_text, headers={**admin, "Content-Type": "text/csv"}).json()
    assert [(r["device_id"], r["ok"], r["reason"]) for r in report["rows"]] == [
        ("fridge-ct-3", True, ""),
        ("fridge-hn-3", False, f"{OTHER}/health is outside your scope"),
    ]
    with world.database.connect() as conn:
        devices = conn.execute("SELECT device_id, province, name, status FROM devices ORDER BY device_id").fetchall()
    assert devices == [
        ("fridge-ct-1", HOME, "Trạm y tế Ninh Kiều", "active"),
        ("fridge-ct-2", HOME, "", "active"),
        ("fridge-ct-3", HOME, "", "active"),
        ("fridge-hn-1", OTHER, "", "active"),
    ]

    # The audit log: this admin sees what happened to devices of their province and their own actions.
    mine = client.get("/audit", headers=admin).json()
    assert {e["target"] for e in mine} == {HOME_FRIDGE, "fridge-ct-2", "fridge-ct-3"}
    assert all(e["actor"] == f"key:{HOME}-admin" or e["target"] == HOME_FRIDGE for e in mine)
    everything = client.get("/audit", headers=world.all_scope["admin"]).json()
    assert {OTHER_FRIDGE, "key:can-tho-admin"} <= {e["target"] for e in everything}
    assert client.get("/audit", headers=world.home["operator"]).status_code == 403


def test_the_audit_log_filters_newest_first(world: World) -> None:
    admin = world.all_scope["admin"]
    client = world.client
    newest = client.get("/audit", headers=admin).json()
    assert [e["id"] for e in newest] == sorted((e["id"] for e in newest), reverse=True)
    sends = client.get("/audit", params={"action": "command.send"}, headers=admin).json()
    assert sorted(e["target"] for e in sends) == [HOME_FRIDGE, OTHER_FRIDGE]
    assert all(e["actor"] == "key:all-operator" and e["address"] == "127.0.0.1" for e in sends)
    by_target = client.get("/audit", params={"target": OTHER_FRIDGE, "actor": "test"}, headers=admin).json()
    assert [e["action"] for e in by_target] == ["device.create"]
    assert len(client.get("/audit", params={"limit": 2}, headers=admin).json()) == 2
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert client.get("/audit", params={"from": later}, headers=admin).json() == []
    assert len(client.get("/audit", params={"to": later}, headers=admin).json()) == len(newest)
    for params in ({"limit": "1001"}, {"limit": "0"}, {"from": "2026-11-22T08:00:00"}, {"from": later, "to": later}):
        assert client.get("/audit", params=params, headers=admin).status_code == 422, params


def test_reading_bus_positions_is_audited_and_other_readings_are_not(
    database: ScratchDatabase,
    broker: EmbeddedMosquitto,
    provision: Callable[..., ProvisionedDevice],
    run_ingest: Callable[[], RunningIngest],
) -> None:
    provision("bus-ct-1", "bus_tracker", HOME)
    provision("fridge-ct-9", "vaccine_fridge", HOME)
    now = datetime.now(UTC).replace(microsecond=0)
    with run_ingest():
        _publish_history(
            broker,
            {"bus-ct-1": (HOME, "transport")},
            lambda i: {"latitude": 10.03 + i / 1000, "longitude": 105.78, "speed": 30.0},
            now=now,
            minutes=4,
        )
        _publish_history(broker, {"fridge-ct-9": (HOME, "health")}, lambda i: {"temperature": 5.0}, now=now, minutes=4)
        wait_for(lambda: _count(database, "SELECT count(*) FROM readings") == 5 * 3 + 5, what="readings stored")
    viewer = _headers(database, prefix="dispatch", scope=Scope.of(provinces=[HOME], sectors=["transport", "health"]))
    viewer_headers = viewer["viewer"]

    def location_reads() -> list[tuple[Any, ...]]:
        with database.connect() as conn:
            return conn.execute(
                "SELECT actor, target, details->>'via', details->'metrics', address FROM audit_log "
                "WHERE action = 'location.read' ORDER BY id"
            ).fetchall()

    span = {"from": (now - timedelta(hours=1)).isoformat()}
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(ApiServer(database.url))
        client.headers.update(viewer_headers)
        speeds = client.get("/devices/bus-ct-1/readings", params={**span, "metric": "speed"}).json()
        assert len(speeds) == 5
        assert client.get("/devices/fridge-ct-9/readings", params=span).json() != []
        assert client.get("/devices/fridge-ct-9").json()["latest"] != []
        assert location_reads() == []  # no position in any of these answers

        positions = client.get("/devices/bus-ct-1/readings", params=span).json()
        assert {r["metric"] for r in positions} == {"latitude", "longitude", "speed"}
        assert client.get("/devices/bus-ct-1/buckets", params={**span, "metric": "latitude"}).json() != []
        assert {v["metric"] for v in client.get("/devices/bus-ct-1").json()["latest"]} >= {"latitude"}
    actor = "key:dispatch-viewer"
    assert location_reads() == [
        (actor, "bus-ct-1", "readings", ["latitude", "longitude"], "127.0.0.1"),
        (actor, "bus-ct-1", "buckets", ["latitude"], "127.0.0.1"),
        (actor, "bus-ct-1", "device", ["latitude", "longitude"], "127.0.0.1"),
    ]
