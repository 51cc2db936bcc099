"""One reading's whole way: device → broker → ingest → TimescaleDB → API, with values and timestamps compared."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from devices.schema import migrate_database
from embedded.runtime import EmbeddedMosquitto
from protocol.telemetry import encode_json
from protocol.topics import telemetry_topic
from tests.integration.conftest import ApiServer, ScratchDatabase, wait_for
from tests.integration.device_fixtures import tokens_fixture  # noqa: F401
from tests.integration.publisher import Publisher


def _count_rows(database: ScratchDatabase, device_id: str) -> int:
    return int(database.scalar("SELECT count(*) FROM readings WHERE device_id = %s", (device_id,)))


def test_published_readings_come_back_through_the_api(
    database: ScratchDatabase,
    broker: EmbeddedMosquitto,
    register: Callable[..., object],
    run_ingest: Callable[[], object],
    api: Callable[[], ApiServer],
    tokens: dict[str, dict[str, str]],
) -> None:
    register("soil-ct-001", "soil_probe", "can-tho")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    sent = []
    with run_ingest(), Publisher(broker.url, client_id="soil-ct-001") as pub:  # type: ignore[attr-defined]
        for i in range(20):
            ts = start + timedelta(seconds=10 * i, milliseconds=250)
            readings = {"soil_moisture": 20.0 + i * 0.5, "soil_temperature": 27.125 + i / 8, "battery_v": 3.7}
            pub.publish(telemetry_topic("can-tho", "agriculture", "soil-ct-001"), encode_json(readings, seq=i, ts=ts))
            sent.append((ts, readings))
        wait_for(lambda: _count_rows(database, "soil-ct-001") == 60, what="60 rows stored")

    with api() as client:
        client.headers.update(tokens["viewer"])
        response = client.get(
            "/devices/soil-ct-001/readings",
            params={
                "metric": "soil_moisture",
                "from": (start - timedelta(seconds=1)).isoformat(),
                "to": datetime.now(UTC).isoformat(),
            },
        )
        assert response.status_code == 200, response.text
        body = response.json()
        newest_first = [(ts, readings["soil_moisture"]) for ts, readings in reversed(sent)]
        assert [(datetime.fromisoformat(r["ts"]), r["value"]) for r in body] == newest_first
        assert all(r["quality"] == 0 for r in body)

        pages, cursor = [], None
        while True:
            params = {"metric": "soil_moisture", "from": (start - timedelta(seconds=1)).isoformat(), "limit": "7"}
            page = client.get("/devices/soil-ct-001/readings", params=params | ({"cursor": cursor} if cursor else {}))
            pages.append([(datetime.fromisoformat(r["ts"]), r["value"]) for r in page.json()])
            cursor = page.headers.get("X-Next-Cursor")
            if cursor is None:
                break
        assert [len(p) for p in pages] == [7, 7, 6]
        assert [item for p in pages for item in p] == newest_first
        oldest_first = client.get(
            "/devices/soil-ct-001/readings",
            params={"metric": "soil_moisture", "from": start.isoformat(), "order": "oldest"},
        ).json()
        assert [r["value"] for r in oldest_first] == [value for _, value in reversed(newest_first)]

        unknown = client.get("/devices/soil-ct-001/readings", params={"metric": "salinity"})
        assert unknown.status_code == 422 and "soil_moisture" in unknown.json()["detail"]
        buckets = client.get(
            "/devices/soil-ct-001/buckets", params={"metric": "soil_moisture", "from": start.isoformat()}
        )
        assert buckets.status_code == 200
        assert buckets.headers["X-Bucket-Seconds"] == "10"  # about 5 minutes: 10-second buckets
        assert sum(b["count"] for b in buckets.json()) == 20

        everything = client.get("/devices/soil-ct-001/readings", params={"from": start.isoformat()}).json()
        assert len(everything) == 60
        assert {(r["metric"], r["value"]) for r in everything if datetime.fromisoformat(r["ts"]) == sent[3][0]} == {
            (name, value) for name, value in sent[3][1].items()
        }

        detail = client.get("/devices/soil-ct-001").json()
        latest = {v["metric"]: v for v in detail["latest"]}
        assert latest["soil_moisture"]["value"] == sent[-1][1]["soil_moisture"]
        assert datetime.fromisoformat(latest["soil_moisture"]["ts"]) == sent[-1][0]

        assert client.get("/devices/nope/readings").status_code == 404
        bad = client.get(
            "/devices/soil-ct-001/readings", params={"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
        )
        assert bad.status_code == 422
        assert "before" in bad.json()["detail"]


def test_migrate_twice_changes_nothing(database: ScratchDatabase) -> None:
    def schema() -> list[tuple[object, ...]]:
        with database.connect() as conn:
            return conn.execute(
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = 'public' ORDER BY 1, 2"
            ).fetchall()

    before = schema()
    migrations = database.scalar("SELECT count(*) FROM schema_migrations")
    types = database.scalar("SELECT max(updated_at) FROM device_types")
    assert migrate_database(database.url) == []
    assert schema() == before
    assert database.scalar("SELECT count(*) FROM schema_migrations") == migrations
    assert database.scalar("SELECT max(updated_at) FROM device_types") == types
