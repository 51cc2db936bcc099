"""Bringing a real device on line in three steps against a running center: (1) `ioc devices create` with names as
people type them, (2) the `mosquitto_pub` line it printed, run by a shell as printed, (3) the reading through the
API. Also: the API's create answer carries the same onboarding fields and suggests names on a typo; `ioc devices
show` lists a device's refused messages; `ioc alarms list|ack|clear` go through the alarm lifecycle with the actor
in the audit log."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from analytics.alarms import AlarmSignal, raise_alarm
from api.access.keys import create_api_key
from embedded.runtime import EmbeddedMosquitto, EmbeddedPostgres
from protocol.topics import telemetry_topic
from store.quarantine import QuarantinedMessage, insert_quarantined
from store.scope import EVERYTHING
from tests.integration.conftest import ApiServer, ScratchDatabase, wait_for
from tests.integration.device_fixtures import (
    secure_api_fixture,  # noqa: F401
    secure_broker_fixture,  # noqa: F401
    tokens_fixture,  # noqa: F401
)

# `ioc up` in its own process on its own runtime folder, shared with the attach test.
from tests.integration.test_center_attach import running_center  # noqa: F401

pytestmark = pytest.mark.integration

IOC = str(Path(sys.executable).with_name("ioc"))


def _ioc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IOC, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def _printed_line(stdout: str, *, after: str) -> str:
    lines = stdout.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(after))
    return lines[index + 1].strip()


def test_a_device_comes_on_line_in_three_steps_against_a_running_center(
    running_center: tuple[dict[str, str], Path, int],  # noqa: F811 (the imported fixture)
) -> None:
    env, folder, port = running_center
    assert shutil.which("mosquitto_pub") is not None, "scripts/setup.sh installs mosquitto-clients"

    # (1) Register it the way a technician names things: a type alias, the province in Vietnamese.
    created = _ioc(env, "devices", "create", "fridge-hue-007", "--type", "fridge", "--province", "Huế")
    assert created.returncode == 0, created.stderr
    out = created.stdout
    assert "vaccine_fridge" in out and "hue/health" in out
    assert telemetry_topic("hue", "health", "fridge-hue-007") in out
    assert "temperature" in out and "Cel" in out and "[-40, 60]" in out
    assert "mqtts://127.0.0.1:" in out and str(folder / "mosquitto" / "tls" / "ca.crt") in out
    line = _printed_line(out, after="send one reading now")
    assert line.startswith("mosquitto_pub ")

    # (2) Run the printed line as printed. The running center's device monitor admits the new account within
    # a second or so; until then the broker refuses the connection and mosquitto_pub exits non-zero.
    def publish() -> bool:
        done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=30, check=False)
        return done.returncode == 0

    wait_for(publish, timeout_s=30, what="the printed mosquitto_pub line to publish")

    # (3) The reading, through the API.
    pg = EmbeddedPostgres(folder / "postgres")
    pg.attach()
    with psycopg.connect(pg.url) as conn:
        key = create_api_key(
            conn, name="onboarding-test", role="viewer", scope=EVERYTHING, lifetime=timedelta(days=1), actor="test"
        )
        conn.commit()
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key.secret}"}) as api:

        def readings() -> list[dict[str, object]]:
            response = api.get("/devices/fridge-hue-007/readings", params={"from": since})
            assert response.status_code == 200, response.text
            body: list[dict[str, object]] = response.json()
            return body

        wait_for(lambda: len(readings()) >= 5, timeout_s=30, what="the published reading through the API")
        by_metric = {r["metric"]: r["value"] for r in readings()}
    # The sample values the sheet chose: the middle of each range, 0 for a flag.
    assert by_metric["temperature"] == 10.0
    assert by_metric["door_open"] == 0.0


def test_the_api_create_answer_carries_the_onboarding_fields_and_suggests_names(
    secure_api: Callable[[], ApiServer], tokens: dict[str, dict[str, str]]
) -> None:
    admin = tokens["admin"]
    with secure_api() as client:
        body = {"device_id": "meter-hue-001", "type_code": "electricity meter", "province": "thua thien hue"}
        created = client.post("/devices", json=body, headers=admin)
        assert created.status_code == 201, created.text
        device = created.json()
        # The fields it always had, unchanged …
        assert (device["type_code"], device["province"], device["sector"]) == ("smart_meter", "hue", "energy")
        assert device["report_interval_s"] is None and len(device["secret"]) >= 32
        # … and what the technician needs.
        assert device["username"] == "meter-hue-001"
        assert device["topics"]["telemetry"] == telemetry_topic("hue", "energy", "meter-hue-001")
        assert device["topics"]["cmd"] == "ioc/v1/hue/energy/meter-hue-001/cmd"
        assert device["metrics"][0] == {
            "name": "active_power",
            "unit": "kW",
            "min": device["metrics"][0]["min"],
            "max": device["metrics"][0]["max"],
            "description": device["metrics"][0]["description"],
        }
        assert device["effective_report_interval_s"] == 900
        assert device["broker_url"] is not None and device["broker_url"].startswith("mqtt://127.0.0.1:")
        assert "@" not in device["broker_url"]  # the center's own credentials never reach the answer
        assert device["mosquitto_pub"].startswith("mosquitto_pub -h 127.0.0.1 ")
        assert f"-P {device['secret']}" in device["mosquitto_pub"]

        typo = client.post("/devices", json={**body, "device_id": "m2", "province": "Hue2"}, headers=admin)
        assert typo.status_code == 422
        assert typo.json()["detail"] == "unknown province 'Hue2' — did you mean 'hue' (Huế)?"
        bad_type = client.post("/devices", json={**body, "device_id": "m3", "type_code": "fridge2"}, headers=admin)
        assert bad_type.status_code == 422
        assert "did you mean 'vaccine_fridge'" in bad_type.json()["detail"]


def _cli_env(database: ScratchDatabase, broker: EmbeddedMosquitto) -> dict[str, str]:
    """`ioc` on this test's database and broker: nothing embedded is started for the command."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    return env | {"IOC_DATABASE_URL": database.url, "IOC_MQTT_URL": broker.url, "IOC_LOG_LEVEL": "WARNING"}


def test_devices_show_lists_the_devices_refused_messages_with_reasons(
    database: ScratchDatabase, register: Callable[..., object], broker: EmbeddedMosquitto
) -> None:
    register("probe-ct-001", "soil_probe", "can-tho")
    topic = telemetry_topic("can-tho", "agriculture", "probe-ct-001")
    with psycopg.connect(database.url) as conn:
        insert_quarantined(
            conn,
            [
                QuarantinedMessage(
                    topic=topic,
                    device_id="probe-ct-001",
                    reason="out_of_range",
                    detail="soil_moisture 140 above 100",
                    payload=b"{}",
                    province="can-tho",
                    sector="agriculture",
                )
            ],
        )
        conn.commit()
    shown = _ioc(_cli_env(database, broker), "devices", "show", "probe-ct-001")
    assert shown.returncode == 0, shown.stderr
    refusals = _printed_line(shown.stdout, after="refused messages")
    assert "out_of_range" in refusals and "soil_moisture 140 above 100" in refusals and topic in refusals


def test_alarms_are_listed_acknowledged_and_cleared_from_the_command_line_with_the_actor_audited(
    database: ScratchDatabase, register: Callable[..., object], broker: EmbeddedMosquitto
) -> None:
    register("fridge-hue-001", "vaccine_fridge", "hue")
    now = datetime.now(UTC)
    with psycopg.connect(database.url) as conn:
        alarm, _ = raise_alarm(
            conn,
            AlarmSignal(
                device_id="fridge-hue-001",
                metric="temperature",
                source="rule",
                kind="threshold_above",
                cause="rule:threshold_above:temperature",
                province="hue",
                sector="health",
                severity="critical",
                message="vaccine fridge above 8 Cel",
                first_ts=now - timedelta(minutes=5),
                last_ts=now,
                occurrences=3,
                value=9.5,
                score=None,
                received_at=now,
            ),
            now=now,
        )
        conn.commit()
    env = _cli_env(database, broker)

    listed = _ioc(env, "alarms", "list", "--province", "Huế", "--severity", "critical", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(a["id"], a["status"]) for a in json.loads(listed.stdout)] == [(alarm.id, "active")]
    elsewhere = _ioc(env, "alarms", "list", "--province", "can-tho", "--json")
    assert json.loads(elsewhere.stdout) == []

    acked = _ioc(env, "alarms", "ack", str(alarm.id), "--comment", "technician on the way", "--by", "cli:lan", "--json")
    assert acked.returncode == 0, acked.stderr
    body = json.loads(acked.stdout)
    assert (body["status"], body["acknowledged_by"], body["ack_note"]) == (
        "acknowledged",
        "cli:lan",
        "technician on the way",
    )
    again = _ioc(env, "alarms", "ack", str(alarm.id))
    assert again.returncode == 2
    assert "only an active alarm can be acknowledged" in again.stderr

    cleared = _ioc(env, "alarms", "clear", str(alarm.id), "-m", "door closed, back to 5 Cel", "--by", "cli:lan")
    assert cleared.returncode == 0, cleared.stderr
    assert f"#{alarm.id}\tcleared" in cleared.stdout
    assert _ioc(env, "alarms", "list", "--json").stdout.strip() == "[]"  # open ones by default
    with psycopg.connect(database.url) as conn:
        audit = conn.execute(
            "SELECT actor, action, details->>'note' FROM audit_log WHERE target = %s ORDER BY id",
            (f"alarm:{alarm.id}",),
        ).fetchall()
    assert audit == [
        ("cli:lan", "alarm.acknowledge", "technician on the way"),
        ("cli:lan", "alarm.clear", "door closed, back to 5 Cel"),
    ]
