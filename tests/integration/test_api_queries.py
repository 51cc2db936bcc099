"""What operations staff ask of the API: devices by type, health and name; health counts grouped as asked; alarms
by sector and openness; the catalog."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from tests.integration.conftest import ApiServer, ScratchDatabase
from tests.integration.device_fixtures import tokens_fixture  # noqa: F401


def _alarm(database: ScratchDatabase, device_id: str, *, sector: str, severity: str, status: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(database.url) as conn:
        conn.execute(
            "INSERT INTO alarms (device_id, metric, source, kind, cause, province, sector, severity, initial_severity, "
            "status, message, first_reading_ts, last_reading_ts, acknowledged_at, cleared_at) "
            "VALUES (%s, 'x', 'rule', 'threshold_above', %s, 'can-tho', %s, %s, %s, %s, 'm', %s, %s, %s, %s)",
            (
                device_id,
                f"c-{status}-{severity}",
                sector,
                severity,
                severity,
                status,
                now,
                now,
                now if status != "active" else None,
                now if status == "cleared" else None,
            ),
        )
        conn.commit()


def test_devices_health_alarms_and_catalog_answer_the_filters_asked(
    database: ScratchDatabase,
    register: Callable[..., object],
    api: Callable[[], ApiServer],
    tokens: dict[str, dict[str, str]],
) -> None:
    register("meter-ct-1", "smart_meter", "can-tho")
    register("meter-ct-2", "smart_meter", "can-tho")
    register("fridge-ct-1", "vaccine_fridge", "can-tho")
    with psycopg.connect(database.url) as conn:
        for device_id, name in (("meter-ct-1", "Trạm biến áp Ninh Kiều"), ("meter-ct-2", "Chợ nổi Cái Răng")):
            conn.execute("UPDATE devices SET name = %s WHERE device_id = %s", (name, device_id))
        conn.execute(
            "INSERT INTO device_latest (device_id, metric, ts, value, quality) VALUES ('meter-ct-1', 'voltage', %s, 230, 0)",
            (datetime.now(UTC) - timedelta(seconds=5),),
        )
        conn.commit()
    with psycopg.connect(database.url) as conn:
        for minutes_ago, reason, detail, payload in (
            (2, "bad_json", "line 1", b"{not json"),
            (1, "out_of_range", "voltage 9000 > 300", b'{"seq":1,"readings":{"voltage":9000}}   '),
        ):
            conn.execute(
                "INSERT INTO quarantine (received_at, topic, device_id, province, sector, reason, detail, payload, "
                "payload_size) VALUES (now() - make_interval(mins => %s), 'ioc/v1/can-tho/energy/meter-ct-2/telemetry', "
                "'meter-ct-2', 'can-tho', 'energy', %s, %s, %s, %s)",
                (minutes_ago, reason, detail, payload, len(payload)),
            )
        conn.commit()
    _alarm(database, "fridge-ct-1", sector="health", severity="critical", status="active")
    _alarm(database, "meter-ct-1", sector="energy", severity="minor", status="cleared")
    with api() as client:
        client.headers.update(tokens["viewer"])

        def ids(response: httpx.Response) -> list[str]:
            return [str(d["device_id"]) for d in response.json()]

        assert ids(client.get("/devices", params={"type": "smart_meter"})) == ["meter-ct-1", "meter-ct-2"]
        assert ids(client.get("/devices", params={"q": "cái răng"})) == ["meter-ct-2"]
        assert ids(client.get("/devices", params={"q": "%"})) == []  # a literal percent sign, not a wildcard
        assert ids(client.get("/devices", params={"health": "online"})) == ["meter-ct-1"]
        assert ids(client.get("/devices", params={"health": "unknown", "sector": "health"})) == ["fridge-ct-1"]

        by_sector = client.get("/device-health/summary", params={"by": "sector"}).json()
        assert {(s["province"], s["sector"], s["total"]) for s in by_sector} == {("*", "energy", 2), ("*", "health", 1)}
        energy = client.get("/device-health/summary", params={"sector": "energy", "by": ["province", "type_code"]})
        assert [(s["province"], s["type_code"], s["total"], s["online"]) for s in energy.json()] == [
            ("can-tho", "smart_meter", 2, 1)
        ]

        open_alarms = client.get("/alarms", params={"open": "true"}).json()
        assert [(a["device_id"], a["severity"]) for a in open_alarms] == [("fridge-ct-1", "critical")]
        assert [a["device_id"] for a in client.get("/alarms", params={"sector": "energy"}).json()] == ["meter-ct-1"]

        refused = client.get("/devices/meter-ct-2/quarantine").json()
        assert [(q["reason"], q["detail"], q["payload_size"]) for q in refused] == [
            ("out_of_range", "voltage 9000 > 300", 40),
            ("bad_json", "line 1", 9),
        ]
        assert "payload" not in refused[0] and "payload_base64" not in refused[0]
        assert client.get("/devices/nope/quarantine").status_code == 404

        types = client.get("/catalog/device-types").json()
        fridge = next(t for t in types if t["code"] == "vaccine_fridge")
        assert fridge["sector"] == "health" and any(m["unit"] == "Cel" for m in fridge["metrics"])
        provinces = {p["code"]: p for p in client.get("/catalog/provinces").json()}
        assert len(provinces) == 34 and provinces["can-tho"]["name"] == "Cần Thơ"
        assert client.get("/catalog/device-types/nope").status_code == 404
