"""Cross-device views: KPIs per province and sector, latest values and totals, all within the caller's scope."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg

from api.access.keys import create_api_key
from store.scope import Scope
from tests.integration.conftest import ApiServer, ScratchDatabase


def _latest(database: ScratchDatabase, device_id: str, metric: str, value: float) -> None:
    with psycopg.connect(database.url) as conn:
        now = datetime.now(UTC)
        conn.execute(
            "INSERT INTO readings (ts, device_id, metric, value, quality) VALUES (%s, %s, %s, %s, 0)",
            (now - timedelta(seconds=30), device_id, metric, value),
        )
        conn.execute(
            "INSERT INTO device_latest (device_id, metric, ts, value, quality) VALUES (%s, %s, %s, %s, 0)",
            (device_id, metric, now - timedelta(seconds=30), value),
        )
        conn.commit()


def _headers(database: ScratchDatabase, name: str, provinces: list[str] | None) -> dict[str, str]:
    with psycopg.connect(database.url) as conn:
        key = create_api_key(
            conn, name=name, role="viewer", scope=Scope.of(provinces=provinces), lifetime=timedelta(hours=1), actor="t"
        )
        conn.commit()
    return {"Authorization": f"Bearer {key.secret}"}


def test_totals_latest_and_kpis_add_up_within_scope(
    database: ScratchDatabase, register: Callable[..., object], api: Callable[[], ApiServer]
) -> None:
    for device_id, province in (("m-ct-1", "can-tho"), ("m-ct-2", "can-tho"), ("m-hn-1", "ha-noi")):
        register(device_id, "smart_meter", province)
    _latest(database, "m-ct-1", "active_power", 2.5)
    _latest(database, "m-ct-2", "active_power", 4.0)
    _latest(database, "m-hn-1", "active_power", 100.0)
    can_tho = _headers(database, "ct", ["can-tho"])
    everyone = _headers(database, "all", None)
    with api() as client:
        totals = client.get("/totals", params={"metric": "active_power"}, headers=can_tho).json()
        assert [(t["province"], t["devices"], t["total"], t["maximum"]) for t in totals] == [("can-tho", 2, 6.5, 4.0)]
        all_totals = client.get("/totals", params={"metric": "active_power"}, headers=everyone).json()
        assert {t["province"]: t["total"] for t in all_totals} == {"can-tho": 6.5, "ha-noi": 100.0}

        latest = client.get("/latest", params={"metric": "active_power"}, headers=can_tho).json()
        assert [(v["device_id"], v["value"]) for v in latest] == [("m-ct-1", 2.5), ("m-ct-2", 4.0)]

        kpis = client.get("/kpis", headers=can_tho).json()
        assert [(k["province"], k["sector"], k["devices"]["total"]) for k in kpis] == [("can-tho", "energy", 2)]
        assert kpis[0]["readings_per_minute"] == round(2 * 60 / 600, 2)

        unknown = client.get("/totals", params={"metric": "nonsense"}, headers=can_tho)
        assert unknown.status_code == 422 and "nonsense" in unknown.json()["detail"]
        assert client.get("/kpis").status_code == 401
