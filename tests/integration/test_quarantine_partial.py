"""A message with some bad readings keeps its good ones (issue 16): through a real broker, ingest and database the
good readings are stored, each bad one is quarantined with its reason, and the API's quarantine routes show the
partial refusals; a message that is bad as a whole is still refused whole."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from embedded.runtime import EmbeddedMosquitto
from protocol.telemetry import CONTENT_TYPE_SENML_JSON, encode_json, encode_json_batch
from protocol.topics import telemetry_topic
from store.quarantine import QuarantinedMessage, QuarantinedReading, insert_quarantined
from tests.integration.conftest import ApiServer, RunningIngest, ScratchDatabase, wait_for
from tests.integration.device_fixtures import tokens_fixture  # noqa: F401
from tests.integration.publisher import Publisher

pytestmark = pytest.mark.integration

DEVICE = "air-hn-001"
TOPIC = telemetry_topic("ha-noi", "health", DEVICE)


def _counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_mixed_message_stores_its_good_readings_and_quarantines_each_bad_one_with_its_reason(
    database: ScratchDatabase,
    broker: EmbeddedMosquitto,
    register: Callable[..., object],
    run_ingest: Callable[[], RunningIngest],
    tokens: dict[str, dict[str, str]],
) -> None:
    register(DEVICE, "air_quality_monitor", "ha-noi")
    now = datetime.now(UTC).replace(microsecond=0)
    hour_ahead = now + timedelta(hours=1)
    typo = encode_json({"pm2_5": 12.5, "humidty": 55.0, "temperature": 28.5}, seq=1, ts=now)
    senml = json.dumps(
        [
            {"bn": f"{DEVICE}/", "bt": (now + timedelta(seconds=1)).timestamp(), "n": "co2", "u": "[ppm]", "v": 410},
            {"n": "temperature", "u": "[degF]", "v": 82.4},  # Fahrenheit: not converted, refused
            {"n": "pm10", "u": "ug/m3", "t": 3600, "v": 30.0},  # an hour ahead of the clock
            {"n": "humidity", "vs": "humid"},  # a text value
            {"n": "humidity", "u": "%", "v": 60.0},
        ]
    ).encode()
    backfill = encode_json_batch([(3, now - timedelta(minutes=10), {"pm2_5": 10.0}), (4, hour_ahead, {"pm2_5": 11.0})])
    # Bad as a whole: not JSON, a device nobody registered, and a message whose only reading is unknown.
    not_json = b'{"seq": 5, "readings": '
    ghost_topic = telemetry_topic("ha-noi", "health", "ghost-hn-001")
    ghost = encode_json({"pm2_5": 1.0}, seq=6, ts=now)
    all_bad = encode_json({"heart_rate": 70.0}, seq=7, ts=now)
    good = encode_json({"pm2_5": 13.0}, seq=8, ts=now + timedelta(seconds=2))

    partial_before = _counter("ioc_ingest_partial_messages_total")
    refused_before = {
        reason: _counter("ioc_ingest_refused_readings_total", reason=reason)
        for reason in ("unknown_metric", "unit_mismatch", "timestamp_in_future", "text_value")
    }
    whole_before = _counter("ioc_ingest_quarantined_total", reason="unknown_metric")
    with run_ingest(), Publisher(broker.url, client_id="air-publisher") as pub:
        pub.publish(TOPIC, typo)
        pub.publish(TOPIC + "/senml", senml, content_type=CONTENT_TYPE_SENML_JSON)
        pub.publish(TOPIC, backfill)
        pub.publish(TOPIC, not_json)
        pub.publish(ghost_topic, ghost)
        pub.publish(TOPIC, all_bad)
        pub.publish(TOPIC, good)
        wait_for(
            lambda: (
                database.scalar("SELECT count(*) FROM quarantine") == 6
                and database.scalar("SELECT count(*) FROM readings") == 6
            ),
            what="readings and quarantine",
        )

    # The good readings of every message are stored, and only they.
    with database.connect() as conn:
        readings = conn.execute("SELECT ts, metric, value FROM readings ORDER BY ts, metric").fetchall()
        entries = {
            bytes(payload): (reason, stored, refused, rows)
            for payload, reason, stored, refused, rows in conn.execute(
                "SELECT payload, reason, readings_stored, readings_refused, refused_readings FROM quarantine"
            ).fetchall()
        }
    assert readings == [
        (now - timedelta(minutes=10), "pm2_5", 10.0),
        (now, "pm2_5", 12.5),
        (now, "temperature", 28.5),
        (now + timedelta(seconds=1), "co2", 410.0),
        (now + timedelta(seconds=1), "humidity", 60.0),
        (now + timedelta(seconds=2), "pm2_5", 13.0),
    ]
    # One entry per message with something refused: its raw bytes, how many readings were stored, each refusal.
    assert {payload: entry[:3] for payload, entry in entries.items()} == {
        typo: ("unknown_metric", 2, 1),
        senml: ("unit_mismatch", 2, 3),
        backfill: ("timestamp_in_future", 1, 1),
        not_json: ("invalid_json", 0, 0),
        ghost: ("unknown_device", 0, 0),
        all_bad: ("unknown_metric", 0, 1),
    }
    assert [(r["metric"], r["value"], r["reason"]) for r in entries[senml][3]] == [
        ("temperature", 82.4, "unit_mismatch"),
        ("pm10", 30.0, "timestamp_in_future"),
        ("humidity", None, "text_value"),
    ]

    # Ingest counts messages stored in part and the readings refused one by one.
    assert _counter("ioc_ingest_partial_messages_total") - partial_before == 3
    refused_after = {reason: _counter("ioc_ingest_refused_readings_total", reason=reason) for reason in refused_before}
    assert {reason: refused_after[reason] - refused_before[reason] for reason in refused_before} == {
        "unknown_metric": 2,
        "unit_mismatch": 1,
        "timestamp_in_future": 2,
        "text_value": 1,
    }
    assert _counter("ioc_ingest_quarantined_total", reason="unknown_metric") - whole_before == 1

    with ApiServer(database.url) as api:
        admin, viewer = tokens["admin"], tokens["viewer"]
        partial = api.get("/quarantine", params={"partial": "true"}, headers=admin)
        assert partial.status_code == 200, partial.text
        by_topic = {(e["topic"], e["reason"]): e for e in partial.json()}
        assert set(by_topic) == {
            (TOPIC, "unknown_metric"),
            (TOPIC + "/senml", "unit_mismatch"),
            (TOPIC, "timestamp_in_future"),
        }
        typo_entry = by_topic[TOPIC, "unknown_metric"]
        assert typo_entry["partial"] is True
        assert (typo_entry["readings_stored"], typo_entry["readings_refused"]) == (2, 1)
        assert typo_entry["detail"] == (
            "1 of 3 readings refused, 2 stored: "
            "metric 'humidty' is not a metric of air_quality_monitor (did you mean 'humidity'?)"
        )
        assert typo_entry["refused_readings"] == [
            {
                "metric": "humidty",
                "ts": now.isoformat().replace("+00:00", "Z"),
                "reason": "unknown_metric",
                "detail": "metric 'humidty' is not a metric of air_quality_monitor (did you mean 'humidity'?)",
            }
        ]
        senml_entry = by_topic[TOPIC + "/senml", "unit_mismatch"]
        assert senml_entry["detail"].startswith("3 of 5 readings refused, 2 stored: ")
        assert [r["detail"] for r in senml_entry["refused_readings"]][::2] == [
            "metric 'temperature' in '[degF]', air_quality_monitor reports it in 'Cel'",
            "metric 'humidity' has a text value; air_quality_monitor reports it as a number in '%'",
        ]

        # Filtering by a reason finds the entries that refused any reading for it, not only by their first reason.
        future = api.get("/quarantine", params={"reason": "timestamp_in_future"}, headers=admin).json()
        assert sorted(e["topic"] for e in future) == [TOPIC, TOPIC + "/senml"]
        whole = api.get("/quarantine", params={"partial": "false"}, headers=admin).json()
        assert sorted((e["reason"], e["readings_refused"]) for e in whole) == [
            ("invalid_json", 0),
            ("unknown_device", 0),
            ("unknown_metric", 1),
        ]

        # The device's recent refusals, for anyone who may see the device: reasons, without the refused values.
        recent = api.get(f"/devices/{DEVICE}/quarantine", headers=viewer)
        assert recent.status_code == 200, recent.text
        assert sorted((e["reason"], e["partial"]) for e in recent.json()) == [
            ("invalid_json", False),
            ("timestamp_in_future", True),
            ("unit_mismatch", True),
            ("unknown_metric", False),
            ("unknown_metric", True),
        ]
        assert all("value" not in r for e in recent.json() for r in e["refused_readings"])

        # One entry, for an admin: the refused values with the raw bytes.
        one = api.get(f"/quarantine/{senml_entry['id']}", headers=admin)
        assert one.status_code == 200, one.text
        assert [(r["metric"], r["value"]) for r in one.json()["refused_readings"]] == [
            ("temperature", 82.4),
            ("pm10", 30.0),
            ("humidity", None),
        ]
        assert one.json()["payload_text"] == senml.decode()
        assert api.get("/quarantine", params={"partial": "maybe"}, headers=admin).status_code == 422

    # The same split on the center's machine: `ioc quarantine list --partial | --whole`.
    def listed(flag: str) -> list[str]:
        done = subprocess.run(
            [sys.executable, "-m", "ioc", "quarantine", "list", flag],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
            env={**os.environ, "IOC_DATABASE_URL": database.url},
        )
        return done.stdout.splitlines()

    partial_lines = listed("--partial")
    assert len(partial_lines) == 3
    assert any(line.endswith(f"{TOPIC}/senml  2 stored, 3 refused") for line in partial_lines), partial_lines
    assert sorted(line.split()[3] for line in listed("--whole")) == ["invalid_json", "unknown_device", "unknown_metric"]


def test_reading_a_bus_trackers_quarantined_message_with_its_position_is_an_audited_location_read(
    database: ScratchDatabase, tokens: dict[str, dict[str, str]]
) -> None:
    ts = datetime.now(UTC).replace(microsecond=0)
    payload = encode_json({"latitude": 16.46, "longitude": 107.59, "spede": 31.0}, seq=1, ts=ts)
    refused = QuarantinedReading("spede", ts, 31.0, "unknown_metric", "metric 'spede' is not a metric of bus_tracker")
    entries = [
        QuarantinedMessage(
            topic=telemetry_topic("hue", "transport", "bus-hue-001"),
            device_id="bus-hue-001",
            reason="unknown_metric",
            detail="1 of 3 readings refused, 2 stored: …",
            payload=payload,
            province="hue",
            sector="transport",
            readings_stored=2,
            refused_readings=(refused,),
        ),
        QuarantinedMessage(  # a pump's message names no position: reading it is no location read
            topic=telemetry_topic("hue", "energy", "pump-hue-001"),
            device_id="pump-hue-001",
            reason="invalid_json",
            detail="",
            payload=b"{",
            province="hue",
            sector="energy",
        ),
    ]
    with database.connect() as conn:
        insert_quarantined(conn, entries)
        conn.commit()
    with ApiServer(database.url) as api:
        listed = api.get("/quarantine", headers=tokens["admin"]).json()
        ids = {e["device_id"]: e["id"] for e in listed}
        assert database.scalar("SELECT count(*) FROM audit_log WHERE action = 'location.read'") == 0  # lists: no values
        bus = api.get(f"/quarantine/{ids['bus-hue-001']}", headers=tokens["admin"])
        assert bus.status_code == 200, bus.text
        assert bus.json()["refused_readings"][0]["value"] == 31.0
        assert api.get(f"/quarantine/{ids['pump-hue-001']}", headers=tokens["admin"]).status_code == 200
    with database.connect() as conn:
        audits = conn.execute("SELECT target, details FROM audit_log WHERE action = 'location.read'").fetchall()
    assert audits == [
        ("bus-hue-001", {"via": "quarantine", "metrics": ["latitude", "longitude"], "entry": ids["bus-hue-001"]})
    ]
