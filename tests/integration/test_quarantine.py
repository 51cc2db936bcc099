"""A corpus of bad messages: each lands in quarantine with its own reason and raw bytes, and ingest keeps going."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import cbor2

from embedded.runtime import EmbeddedMosquitto
from protocol.telemetry import CONTENT_TYPE_SENML_CBOR, CONTENT_TYPE_SENML_JSON, encode_json
from protocol.topics import telemetry_topic
from tests.integration.conftest import ScratchDatabase, wait_for
from tests.integration.publisher import Publisher

DEVICE = "fridge-qt-001"
TOPIC = telemetry_topic("quang-tri", "health", DEVICE)
NOW = datetime.now(UTC).replace(microsecond=0)
GOOD = encode_json({"temperature": 4.5, "battery_v": 3.9}, seq=1, ts=NOW)

# (name, topic, payload, content type, expected reason)
CORPUS: list[tuple[str, str, bytes, str | None, str]] = [
    ("truncated json", TOPIC, GOOD[: len(GOOD) // 2], None, "invalid_json"),
    (
        "wrong type",
        TOPIC,
        b'{"seq": 2, "ts": "2026-11-22T08:00:00Z", "readings": {"temperature": "cold"}}',
        None,
        "wrong_type",
    ),
    (
        "NaN",
        TOPIC,
        b'{"seq": 3, "ts": "2026-11-22T08:00:00Z", "readings": {"temperature": NaN}}',
        None,
        "non_finite_value",
    ),
    (
        "Infinity",
        TOPIC,
        b'{"seq": 4, "ts": "2026-11-22T08:00:00Z", "readings": {"temperature": Infinity}}',
        None,
        "non_finite_value",
    ),
    ("huge payload", TOPIC, b'{"seq": 5, "pad": "' + b"x" * 400_000 + b'"}', None, "payload_too_large"),
    (
        "unknown device",
        telemetry_topic("quang-tri", "health", "ghost-device"),
        encode_json({"temperature": 4.0}, seq=6, ts=NOW),
        None,
        "unknown_device",
    ),
    ("unknown metric", TOPIC, encode_json({"heart_rate": 70.0}, seq=7, ts=NOW), None, "unknown_metric"),
    (
        "timestamp in 2099",
        TOPIC,
        encode_json({"temperature": 4.0}, seq=8, ts=datetime(2099, 1, 1, tzinfo=UTC)),
        None,
        "timestamp_in_future",
    ),
    (
        "senml bad base time",
        TOPIC + "/senml",
        json.dumps([{"bn": f"{DEVICE}/", "bt": "yesterday", "n": "temperature", "v": 4.0}]).encode(),
        CONTENT_TYPE_SENML_JSON,
        "bad_senml_base_time",
    ),
    ("not cbor", TOPIC + "/senml", b"\xff\xfe\x00garbage", CONTENT_TYPE_SENML_CBOR, "invalid_cbor"),
    ("bad topic", "ioc/v1/quang-tri/space/" + DEVICE + "/telemetry", GOOD, None, "bad_topic"),
    ("wrong province", telemetry_topic("ha-noi", "health", DEVICE), GOOD, None, "topic_mismatch"),
]


def test_bad_messages_are_quarantined_with_distinct_reasons_and_ingest_keeps_running(
    database: ScratchDatabase,
    broker: EmbeddedMosquitto,
    register: Callable[..., object],
    run_ingest: Callable[[], object],
) -> None:
    register(DEVICE, "vaccine_fridge", "quang-tri")
    assert len({reason for *_, reason in CORPUS}) == len(CORPUS) - 1  # NaN and Infinity share one reason

    with run_ingest(), Publisher(broker.url, client_id="corpus-publisher") as pub:  # type: ignore[attr-defined]
        for _, topic, payload, content_type, _ in CORPUS:
            pub.publish(topic, payload, content_type=content_type)
        # After all of that, a good message (and a good SenML one) still goes through.
        pub.publish(TOPIC, GOOD)
        senml = cbor2.dumps(
            [{-2: f"{DEVICE}/", -3: (NOW + timedelta(seconds=1)).timestamp(), 0: "temperature", 2: 5.25}]
        )
        pub.publish(TOPIC + "/senml", senml, content_type=CONTENT_TYPE_SENML_CBOR)
        wait_for(
            lambda: (
                database.scalar("SELECT count(*) FROM quarantine") == len(CORPUS)
                and database.scalar("SELECT count(*) FROM readings") == 3
            ),
            what="quarantine and readings",
        )

    with database.connect() as conn:
        stored = conn.execute(
            "SELECT topic, reason, payload, payload_size, detail FROM quarantine ORDER BY id"
        ).fetchall()
        readings = conn.execute("SELECT metric, ts, value FROM readings ORDER BY ts, metric").fetchall()
    assert [row[1] for row in stored] == [reason for *_, reason in CORPUS]
    for (name, topic, payload, _, _), (stored_topic, _, stored_payload, size, detail) in zip(
        CORPUS, stored, strict=True
    ):
        assert stored_topic == topic, name
        assert size == len(payload), name
        assert bytes(stored_payload) == payload[: len(stored_payload)], name  # raw bytes kept (capped)
        assert isinstance(detail, str)
    assert readings == [
        ("battery_v", NOW, 3.9),
        ("temperature", NOW, 4.5),
        ("temperature", NOW + timedelta(seconds=1), 5.25),
    ]
