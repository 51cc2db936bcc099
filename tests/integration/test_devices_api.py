"""The registry over HTTP: create, import, update and move, decommission, rotate and revoke; roles; and no
secret anywhere in the database dump or the logs."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from embedded.runtime import EmbeddedMosquitto, EmbeddedPostgres
from store.readings import upsert_latest, write_readings
from tests.integration.conftest import ApiServer, ScratchDatabase
from tests.integration.device_fixtures import (
    DeviceClient,
    RunningMonitor,
    run_monitor_fixture,  # noqa: F401
    secure_api_fixture,  # noqa: F401
    secure_broker_fixture,  # noqa: F401
    tokens_fixture,  # noqa: F401
)
from tests.mosquitto_passwords import verify_secret


def test_registry_changes_over_http(
    database: ScratchDatabase,
    secure_api: Callable[[], ApiServer],
    tokens: dict[str, dict[str, str]],
) -> None:
    admin = tokens["admin"]
    body = {"device_id": "gauge-ag-001", "type_code": "water_level_gauge", "province": "an-giang", "name": "Kênh 7"}
    with secure_api() as client:
        assert client.post("/devices", json=body).status_code == 401
        assert client.post("/devices", json=body, headers=tokens["viewer"]).status_code == 403
        assert client.post("/devices", json=body, headers=tokens["operator"]).status_code == 403
        created = client.post("/devices", json=body, headers=admin)
        assert created.status_code == 201, created.text
        device = created.json()
        assert device["sector"] == "agriculture"
        assert device["credential_status"] == "active"
        stored = database.scalar("SELECT secret_hash FROM devices WHERE device_id = 'gauge-ag-001'")
        assert isinstance(stored, str)
        assert verify_secret(device["secret"], stored)
        assert device["secret"] not in stored

        dup = client.post("/devices", json=body, headers=admin)
        assert dup.status_code == 409
        assert "already exists" in dup.json()["detail"]
        bad_province = client.post("/devices", json={**body, "device_id": "x1", "province": "atlantis"}, headers=admin)
        assert bad_province.status_code == 422
        assert "unknown province 'atlantis'" in bad_province.json()["detail"]
        bad_type = client.post("/devices", json={**body, "device_id": "x2", "type_code": "toaster"}, headers=admin)
        assert bad_type.status_code == 422
        assert "unknown device type" in bad_type.json()["detail"]
        assert client.patch("/devices/nope", json={"name": "x"}, headers=admin).status_code == 404

        # Readings before the move stay with the device after it.
        with psycopg.connect(database.url) as conn:
            ts = datetime.now(UTC) - timedelta(minutes=1)
            rows = [(ts, "gauge-ag-001", "water_level", 1.25, 0)]
            write_readings(conn, rows)
            upsert_latest(conn, rows)
            conn.commit()
        moved = client.patch("/devices/gauge-ag-001", json={"province": "dong-thap"}, headers=admin)
        assert moved.status_code == 200, moved.text
        assert moved.json()["province"] == "dong-thap"
        latest = client.get("/devices/gauge-ag-001", headers=tokens["viewer"]).json()["latest"]
        assert [(v["metric"], v["value"]) for v in latest] == [("water_level", 1.25)]
        assert client.get("/devices/gauge-ag-001/audit", headers=tokens["operator"]).status_code == 403
        audit = client.get("/devices/gauge-ag-001/audit", headers=admin).json()
        assert [a["action"] for a in audit] == ["device.move", "device.create"]
        assert audit[0]["details"] == {"province": {"from": "an-giang", "to": "dong-thap"}}
        assert audit[0]["actor"] == "key:test-admin"

        interval = client.patch("/devices/gauge-ag-001", json={"report_interval_s": 30}, headers=admin)
        assert interval.json()["report_interval_s"] == 30
        reset = client.patch("/devices/gauge-ag-001", json={"report_interval_s": None}, headers=admin)
        assert reset.json()["report_interval_s"] is None

        rotated = client.post("/devices/gauge-ag-001/secret", headers=admin).json()
        new_hash = database.scalar("SELECT secret_hash FROM devices WHERE device_id = 'gauge-ag-001'")
        assert isinstance(new_hash, str)
        assert verify_secret(rotated["secret"], new_hash)
        assert not verify_secret(device["secret"], new_hash)

        revoked = client.post("/devices/gauge-ag-001/revoke", json={"reason": "stolen"}, headers=admin).json()
        assert revoked["credential_status"] == "revoked"
        gone = client.post("/devices/gauge-ag-001/decommission", json={"reason": "flooded"}, headers=admin)
        assert gone.json()["status"] == "decommissioned"
        again = client.post("/devices/gauge-ag-001/decommission", json={}, headers=admin)
        assert again.status_code == 409


def test_csv_import_reports_every_row_and_keeps_the_good_ones(
    database: ScratchDatabase,
    secure_api: Callable[[], ApiServer],
    tokens: dict[str, dict[str, str]],
) -> None:
    csv_text = "\n".join(
        [
            "device_id,type_code,province,name,report_interval_s",
            "meter-dn-001,smart_meter,da-nang,Trạm 1,",
            "meter-dn-002,smart_meter,quang-nam,Trạm 2,",  # merged into da-nang in 2025: no longer a province
            "meter-dn-003,toaster,da-nang,,",
            "meter dn 004,smart_meter,da-nang,,",
            "meter-dn-001,smart_meter,da-nang,again,",
            "meter-dn-005,smart_meter,da-nang,,-5",
            "meter-dn-006,smart_meter,da-nang,,60",
            "existing-1,smart_meter,da-nang,,",
        ]
    )
    with database.connect() as conn:
        conn.execute(
            "INSERT INTO devices (device_id, type_code, province, sector) VALUES "
            "('existing-1', 'smart_meter', 'da-nang', 'energy')"
        )
    with secure_api() as client:
        response = client.post(
            "/devices/import", content=csv_text.encode(), headers={**tokens["admin"], "Content-Type": "text/csv"}
        )
        assert response.status_code == 200, response.text
        report = response.json()
    rows = {r["row"]: r for r in report["rows"]}
    assert (report["ok"], report["failed"]) == (2, 6)
    assert rows[2]["ok"]
    assert rows[2]["secret"]
    assert "unknown province 'quang-nam'" in rows[3]["reason"]
    assert "unknown device type 'toaster'" in rows[4]["reason"]
    assert "bad device id" in rows[5]["reason"]
    assert "repeats row 2" in rows[6]["reason"]
    assert "must be positive" in rows[7]["reason"]
    assert rows[8]["ok"]
    assert "already exists" in rows[9]["reason"]
    assert all(r["secret"] is None for r in report["rows"] if not r["ok"])
    assert database.scalar("SELECT report_interval_s FROM devices WHERE device_id = 'meter-dn-006'") == 60
    assert database.scalar("SELECT count(*) FROM devices WHERE device_id LIKE %s", ("meter-dn-%",)) == 2


def test_no_secret_is_stored_or_logged_in_clear(
    database: ScratchDatabase,
    postgres: EmbeddedPostgres,
    secure_broker: EmbeddedMosquitto,
    secure_api: Callable[[], ApiServer],
    run_monitor: Callable[..., RunningMonitor],
    tokens: dict[str, dict[str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    admin = tokens["admin"]
    secrets: list[str] = [h["Authorization"].removeprefix("Bearer ") for h in tokens.values()]
    with run_monitor() as monitor, secure_api() as client:
        body = {"device_id": "bus-hp-001", "type_code": "bus_tracker", "province": "hai-phong"}
        secrets.append(client.post("/devices", json=body, headers=admin).json()["secret"])
        secrets.append(client.post("/devices/bus-hp-001/secret", headers=admin).json()["secret"])
        csv_text = "device_id,type_code,province\nbus-hp-002,bus_tracker,hai-phong\nbus-hp-003,bus_tracker,hai-phong\n"
        report = client.post("/devices/import", content=csv_text, headers={**admin, "Content-Type": "text/csv"}).json()
        secrets.extend(r["secret"] for r in report["rows"])
        monitor.wait_synced(database)
        # The device uses its secret: the broker sees it too.
        with DeviceClient(secure_broker.device_url, device_id="bus-hp-001", password=secrets[-3]) as dev:
            assert dev.connected.wait(10), dev.reasons
    assert len(secrets) == 7
    assert all(len(s) >= 32 for s in secrets)

    pg_dump = Path(shutil.which("pg_config") or "pg_config")
    bindir = subprocess.run([pg_dump, "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
    dump = subprocess.run(
        [f"{bindir}/pg_dump", "--data-only", database.url], capture_output=True, text=True, check=True
    ).stdout
    assert "bus-hp-003" in dump  # the dump holds the registry
    logs = {
        "captured log": caplog.text,
        "broker log": secure_broker.log_file.read_text(errors="replace"),
        "database log": postgres.log_file.read_text(errors="replace"),
        "broker password file": secure_broker.password_file.read_text(),
        "database dump": dump,
    }
    for where, text in logs.items():
        for secret in secrets:
            assert secret not in text, f"a secret in clear in the {where}"
