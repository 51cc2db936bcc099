"""CSV export: streamed, within the caller's scope, audited."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg

from api.access.keys import create_api_key
from store.scope import Scope
from tests.integration.conftest import ApiServer, ScratchDatabase

START = datetime(2026, 11, 1, tzinfo=UTC)


def _seed(database: ScratchDatabase, device_id: str, *, minutes: int) -> None:
    with psycopg.connect(database.url) as conn:
        conn.execute(
            "INSERT INTO readings (ts, device_id, metric, value, quality) "
            "SELECT %s + make_interval(mins => i), %s, m, i + 0.5, 0 "
            "FROM generate_series(0, %s - 1) AS i, unnest(ARRAY['voltage', 'current']) AS m",
            (START, device_id, minutes),
        )
        conn.commit()


def _viewer(database: ScratchDatabase, provinces: list[str] | None) -> dict[str, str]:
    with psycopg.connect(database.url) as conn:
        key = create_api_key(
            conn,
            name=f"export-{'-'.join(provinces or ['all'])}",
            role="viewer",
            scope=Scope.of(provinces=provinces),
            lifetime=timedelta(hours=1),
            actor="test",
        )
        conn.commit()
    return {"Authorization": f"Bearer {key.secret}"}


def test_export_streams_the_range_within_scope_and_is_audited(
    database: ScratchDatabase, register: Callable[..., object], api: Callable[[], ApiServer]
) -> None:
    register("meter-ct-1", "smart_meter", "can-tho")
    register("meter-hn-1", "smart_meter", "ha-noi")
    _seed(database, "meter-ct-1", minutes=3000)
    _seed(database, "meter-hn-1", minutes=3000)
    can_tho = _viewer(database, ["can-tho"])
    params = {"from": START.isoformat(), "to": (START + timedelta(days=3)).isoformat()}
    with api() as client:
        response = client.get("/export/readings.csv", params=params, headers=can_tho)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(response.text)))
        assert rows[0] == ["ts", "device_id", "metric", "value", "quality", "province", "sector"]
        assert len(rows) - 1 == 6000
        assert {r[1] for r in rows[1:]} == {"meter-ct-1"}
        assert {r[5] for r in rows[1:]} == {"can-tho"}
        stamps = [datetime.fromisoformat(r[0]) for r in rows[1:]]
        assert stamps == sorted(stamps) and stamps[0] == START

        narrowed = client.get(
            "/export/readings.csv", params={**params, "device_id": "meter-hn-1", "metric": "voltage"}, headers=can_tho
        )
        assert narrowed.status_code == 200
        assert narrowed.text.strip().splitlines() == ["ts,device_id,metric,value,quality,province,sector"]

        everywhere = _viewer(database, None)
        both = client.get("/export/readings.csv", params={**params, "metric": "voltage"}, headers=everywhere)
        assert len(both.text.strip().splitlines()) - 1 == 6000

        assert client.get("/export/readings.csv", params=params).status_code == 401
        bad = client.get("/export/readings.csv", params={"from": params["to"], "to": params["from"]}, headers=can_tho)
        assert bad.status_code == 422

    audited = database.scalar(
        "SELECT count(*) FROM audit_log WHERE action = 'export.readings' AND actor = 'key:export-can-tho' "
        "AND address = '127.0.0.1'"
    )
    assert audited == 2  # the refused request exported nothing
