"""One device cannot flood the quarantine: beyond its per-minute limit its bad messages are counted and sampled,
payloads are capped, old entries expire; an admin lists, inspects and purges within their provinces."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from datetime import timedelta

import psycopg
import pytest

from api.access.keys import create_api_key
from devices.catalog import Catalog
from embedded.runtime import EmbeddedMosquitto
from ingest.worker import IngestConfig
from protocol.topics import telemetry_topic
from store.quarantine import delete_expired
from store.scope import Scope
from tests.integration.conftest import ApiServer, RunningIngest, ScratchDatabase, wait_for
from tests.integration.device_fixtures import tokens_fixture  # noqa: F401
from tests.integration.publisher import Publisher

pytestmark = pytest.mark.integration

PER_MINUTE = 20
SAMPLE_EVERY = 50
PAYLOAD_CAP = 1024
FLOOD = 320
JUNK = b"{" + b"x" * 40_000  # 40 kB of invalid JSON


def test_a_flooding_device_is_counted_and_sampled_beyond_its_limit_and_payloads_are_capped(
    database: ScratchDatabase,
    broker: EmbeddedMosquitto,
    ingest_config: IngestConfig,
    catalog: Catalog,
    register: Callable[..., object],
) -> None:
    register("flood-hn-001", "vaccine_fridge", "ha-noi")
    config = dataclasses.replace(
        ingest_config,
        quarantine_per_minute=PER_MINUTE,
        quarantine_sample_every=SAMPLE_EVERY,
        quarantine_payload_max_bytes=PAYLOAD_CAP,
    )
    topic = telemetry_topic("ha-noi", "health", "flood-hn-001")
    with RunningIngest(config, catalog), Publisher(broker.url, client_id="flooder") as pub:
        for _ in range(FLOOD):
            pub.publish(topic, JUNK)

        def accounted() -> int:
            stored = database.scalar("SELECT count(*) FROM quarantine")
            counted = database.scalar("SELECT coalesce(sum(messages), 0) FROM quarantine_suppressed")
            return int(stored) + int(counted)

        wait_for(lambda: accounted() == FLOOD, what="every flooded message stored or counted")
    stored = int(database.scalar("SELECT count(*) FROM quarantine"))
    # The minute may roll over mid-flood: at most two windows' worth in full, plus the samples.
    assert PER_MINUTE + (FLOOD - PER_MINUTE) // SAMPLE_EVERY - 1 <= stored <= 2 * PER_MINUTE + FLOOD // SAMPLE_EVERY
    assert database.scalar("SELECT max(length(payload)) FROM quarantine") == PAYLOAD_CAP
    assert database.scalar("SELECT min(payload_size) FROM quarantine") == len(JUNK)
    kept_bytes = int(database.scalar("SELECT sum(length(payload)) FROM quarantine"))
    assert kept_bytes <= stored * PAYLOAD_CAP < FLOOD * len(JUNK) // 100
    assert database.scalar("SELECT array_agg(DISTINCT last_reason) FROM quarantine_suppressed") == ["invalid_json"]
    assert database.scalar("SELECT sum(bytes) FROM quarantine_suppressed") == (FLOOD - stored) * len(JUNK)


def test_retention_drops_old_entries_and_an_admin_sees_and_purges_only_their_provinces(
    database: ScratchDatabase, tokens: dict[str, dict[str, str]]
) -> None:
    with psycopg.connect(database.url) as conn:
        conn.execute(
            "INSERT INTO quarantine (topic, device_id, province, sector, reason, payload, payload_size, received_at) "
            "VALUES ('t/old', 'a-1', 'ha-noi', 'health', 'invalid_json', 'x', 1, now() - interval '20 days'), "
            "('t/new', 'a-1', 'ha-noi', 'health', 'invalid_json', '{\"a\":', 5, now()), "
            "('t/hue', 'b-1', 'hue', 'energy', 'unknown_metric', 'y', 1, now())"
        )
        assert delete_expired(conn, older_than=timedelta(days=14)) == 1
        hanoi = create_api_key(
            conn,
            name="hanoi-admin",
            role="admin",
            scope=Scope.of(provinces=["ha-noi"]),
            lifetime=timedelta(days=1),
            actor="test",
        )
        conn.commit()
    assert database.scalar("SELECT array_agg(topic ORDER BY topic) FROM quarantine") == ["t/hue", "t/new"]
    local = {"Authorization": f"Bearer {hanoi.secret}"}
    with ApiServer(database.url) as api:
        assert api.get("/quarantine").status_code == 401
        assert api.get("/quarantine", headers=tokens["operator"]).status_code == 403
        listed = api.get("/quarantine", headers=local)
        assert listed.status_code == 200, listed.text
        assert [e["topic"] for e in listed.json()] == ["t/new"]
        everything = api.get("/quarantine", params={"reason": "unknown_metric"}, headers=tokens["admin"]).json()
        assert [e["topic"] for e in everything] == ["t/hue"]
        entry_id = listed.json()[0]["id"]
        one = api.get(f"/quarantine/{entry_id}", headers=local).json()
        assert base64.b64decode(one["payload_base64"]) == b'{"a":'
        assert one["payload_text"] == '{"a":'
        hue_id = everything[0]["id"]
        assert api.get(f"/quarantine/{hue_id}", headers=local).status_code == 404  # outside Ha Noi
        assert api.delete("/quarantine", headers=local).json() == {"purged": 1}
        assert api.get(f"/quarantine/{hue_id}", headers=tokens["admin"]).status_code == 200  # Hue's stays
