"""Domain errors through the real API: each category answers with its one status code and the message the
domain wrote, as `{"detail": "…"}`, never a 500; a refused change leaves the database as it was; OpenAPI
documents the codes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from analytics.alarms import AlarmSignal, raise_alarm
from devices.provisioning import ProvisionedDevice
from devices.registry import DeviceRecord
from embedded.runtime import EmbeddedMosquitto
from tests.integration.conftest import ApiServer, ScratchDatabase
from tests.integration.device_fixtures import (
    provision_fixture,  # noqa: F401
    secure_api_fixture,  # noqa: F401
    secure_broker_fixture,  # noqa: F401
    tokens_fixture,  # noqa: F401
)

T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


def _error(response: httpx.Response, status: int) -> str:
    """The response's message, after checking its status and that the body is exactly `{"detail": str}`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["detail"] and isinstance(body["detail"], str), body
    return str(body["detail"])


def test_an_unknown_device_is_404_with_its_name_on_every_route(
    api: Callable[[], ApiServer], tokens: dict[str, dict[str, str]]
) -> None:
    admin = tokens["admin"]
    with api() as client:
        client.headers.update(tokens["viewer"])
        for response in (
            client.get("/devices/nope"),
            client.patch("/devices/nope", json={"name": "x"}, headers=admin),
            client.post("/devices/nope/decommission", json={}, headers=admin),
            client.post("/devices/nope/secret", headers=admin),
            client.post("/devices/nope/revoke", json={}, headers=admin),
            client.get("/devices/nope/readings"),
            client.get("/devices/nope/buckets"),
            client.get("/devices/nope/anomalies"),
            client.get("/devices/nope/commands"),
            client.get("/devices/nope/audit", headers=admin),
        ):
            assert _error(response, 404) == "unknown device 'nope'", response.request.url
        assert _error(client.get("/device-health/nope"), 404) == "unknown or decommissioned device 'nope'"


def test_registry_conflicts_are_409_and_bad_values_422(
    database: ScratchDatabase, api: Callable[[], ApiServer], tokens: dict[str, dict[str, str]]
) -> None:
    admin = tokens["admin"]
    body = {"device_id": "gauge-ag-009", "type_code": "water_level_gauge", "province": "an-giang"}
    with api() as client:
        assert client.post("/devices", json=body, headers=admin).status_code == 201
        assert _error(client.post("/devices", json=body, headers=admin), 409) == "device 'gauge-ag-009' already exists"
        assert (
            _error(
                client.post("/devices", json={**body, "device_id": "x1", "province": "atlantis"}, headers=admin), 422
            )
            == "unknown province 'atlantis'"
        )
        assert (
            _error(client.patch("/devices/gauge-ag-009", json={"province": "atlantis"}, headers=admin), 422)
            == "unknown province 'atlantis'"
        )
        header = _error(
            client.post("/devices/import", content="id,kind\n", headers={**admin, "Content-Type": "text/csv"}), 422
        )
        assert header == "CSV header lacks device_id, type_code, province (has id, kind)"

        assert client.post("/devices/gauge-ag-009/decommission", json={}, headers=admin).status_code == 200
        # A decommissioned device is a state the request clashes with (409), whichever change is asked.
        assert (
            _error(client.post("/devices/gauge-ag-009/decommission", json={}, headers=admin), 409)
            == "device 'gauge-ag-009' is already decommissioned"
        )
        assert (
            _error(client.patch("/devices/gauge-ag-009", json={"name": "again"}, headers=admin), 409)
            == "device 'gauge-ag-009' is decommissioned"
        )
        assert (
            _error(client.post("/devices/gauge-ag-009/secret", headers=admin), 409)
            == "device 'gauge-ag-009' is decommissioned"
        )
    assert database.scalar("SELECT name FROM devices WHERE device_id = 'gauge-ag-009'") == ""
    assert database.scalar("SELECT count(*) FROM audit_log WHERE target = 'gauge-ag-009'") == 2  # create, decommission


def test_clearing_a_cleared_alarm_is_409_and_changes_nothing(
    database: ScratchDatabase,
    register: Callable[..., DeviceRecord],
    api: Callable[[], ApiServer],
    tokens: dict[str, dict[str, str]],
) -> None:
    register("fridge-ct-9", "vaccine_fridge", "can-tho")
    signal = AlarmSignal(
        device_id="fridge-ct-9",
        metric="temperature",
        source="rule",
        kind="threshold",
        cause="temperature_high",
        province="can-tho",
        sector="health",
        severity="major",
        message="too warm",
        first_ts=T0,
        last_ts=T0,
        occurrences=1,
        value=9.5,
        score=None,
        received_at=T0,
    )
    with psycopg.connect(database.url) as conn:
        alarm, _ = raise_alarm(conn, signal, now=T0)
        conn.commit()
    with api() as client:
        client.headers.update(tokens["operator"])
        assert _error(client.get("/alarms/999999"), 404) == "no alarm 999999"
        assert _error(client.post("/alarms/999999/clear", json={}), 404) == "no alarm 999999"
        assert client.post(f"/alarms/{alarm.id}/clear", json={"note": "fixed"}).status_code == 200
        again = _error(client.post(f"/alarms/{alarm.id}/clear", json={"note": "me too"}), 409)
        assert again == f"alarm {alarm.id} is already cleared (by key:test-operator)"
        ack = _error(client.post(f"/alarms/{alarm.id}/ack"), 409)
        assert ack == f"alarm {alarm.id} is cleared; only an active alarm can be acknowledged"
        after = client.get(f"/alarms/{alarm.id}").json()
    assert (after["status"], after["cleared_by"], after["clear_note"], after["acknowledged_by"]) == (
        "cleared",
        "key:test-operator",
        "fixed",
        None,
    )


def test_request_values_the_api_refuses_are_422_with_a_message(
    register: Callable[..., DeviceRecord], api: Callable[[], ApiServer], tokens: dict[str, dict[str, str]]
) -> None:
    register("soil-ct-9", "soil_probe", "can-tho")
    naive = "2026-11-22T08:00:00"
    start, end = T0.isoformat(), (T0 + timedelta(hours=1)).isoformat()
    with api() as client:
        client.headers.update(tokens["operator"])
        for path in ("/devices/soil-ct-9/readings", "/devices/soil-ct-9/buckets", "/devices/soil-ct-9/anomalies"):
            assert (
                _error(client.get(path, params={"from": naive}), 422)
                == "'from' needs a timezone, e.g. 2026-11-22T08:00:00Z"
            )
            assert (
                _error(client.get(path, params={"to": naive}), 422)
                == "'to' needs a timezone, e.g. 2026-11-22T08:00:00Z"
            )
            assert _error(client.get(path, params={"from": end, "to": start}), 422) == "'from' must be before 'to'"
            assert client.get(path, params={"from": start, "to": end}).json() == []
        wide = {"from": T0.isoformat(), "to": (T0 + timedelta(days=365)).isoformat(), "bucket_s": "60"}
        assert (
            _error(client.get("/devices/soil-ct-9/buckets", params=wide), 422)
            == "too many buckets: widen bucket_s or narrow the range"
        )
        assert (
            _error(client.get("/device-health", params={"state": "asleep"}), 422)
            == "state must be one of online, silent, offline, unknown"
        )
        # FastAPI's own validation keeps its shape: a list of the fields at fault. The actor is the token's
        # principal: a name in the body is refused, not silently ignored.
        invalid = client.post("/alarms/1/ack", json={"by": "someone else"})
        assert invalid.status_code == 422
        assert [(p["loc"], p["type"]) for p in invalid.json()["detail"]] == [(["body", "by"], "extra_forbidden")]
        # Integers the database cannot hold are refused at the edge.
        for path, params in (
            ("/devices", {"offset": str(2**63)}),
            ("/alarms", {"offset": str(2**63)}),
            ("/device-health", {"offset": str(2**63)}),
            (f"/alarms/{2**63}", {}),
        ):
            assert client.get(path, params=params).status_code == 422, path
        assert client.post(f"/alarms/{2**63}/ack").status_code == 422


def test_commands_to_a_decommissioned_device_are_409_and_bad_ones_422(
    database: ScratchDatabase,
    secure_broker: EmbeddedMosquitto,
    provision: Callable[..., ProvisionedDevice],
    secure_api: Callable[[], ApiServer],
    tokens: dict[str, dict[str, str]],
) -> None:
    provision("pump-vl-009", "pump_station", "vinh-long")
    operator, admin = tokens["operator"], tokens["admin"]
    with secure_api() as client:
        unknown = client.post("/devices/nope/commands", json={"name": "ping"}, headers=operator)
        assert _error(unknown, 404) == "unknown device 'nope'"
        bad = client.post("/devices/pump-vl-009/commands", json={"name": "dance"}, headers=operator)
        assert _error(bad, 422) == "unknown command 'dance'"
        assert client.post("/devices/pump-vl-009/decommission", json={}, headers=admin).status_code == 200
        retired = client.post("/devices/pump-vl-009/commands", json={"name": "ping"}, headers=operator)
        assert _error(retired, 409) == "device 'pump-vl-009' is decommissioned"
        assert client.get("/devices/pump-vl-009/commands", headers=operator).json() == []
    assert database.scalar("SELECT count(*) FROM device_commands") == 0


def test_openapi_documents_the_error_codes_of_each_route(api: Callable[[], ApiServer]) -> None:
    with api() as client:
        paths = client.get("/openapi.json").json()["paths"]

    def codes(path: str, method: str) -> set[str]:
        return {c for c in paths[path][method]["responses"] if c.startswith("4")}

    # Every route but the probes needs a principal (401); a role above viewer can also be refused (403).
    assert codes("/devices", "post") >= {"401", "403", "409", "422"}
    assert codes("/devices/{device_id}", "get") >= {"401", "404"}
    assert codes("/devices/{device_id}", "patch") >= {"401", "403", "404", "409", "422"}
    assert codes("/devices/{device_id}/decommission", "post") >= {"401", "403", "404", "409"}
    assert codes("/devices/{device_id}/commands", "post") >= {"401", "403", "404", "409", "422"}
    assert codes("/devices/{device_id}/readings", "get") >= {"401", "404", "422"}
    assert codes("/alarms/{alarm_id}/clear", "post") >= {"401", "403", "404", "409", "422"}
    assert codes("/alarms/{alarm_id}/comment", "post") >= {"401", "403", "404", "422"}
    assert codes("/audit", "get") >= {"401", "403", "422"}
    assert codes("/metrics", "get") >= {"401", "403"}
    not_found = paths["/alarms/{alarm_id}"]["get"]["responses"]["404"]["content"]["application/json"]["schema"]
    assert not_found == {"$ref": "#/components/schemas/ErrorBody"}
