"""The pure steps of an ingest worker around `to_rows`: the bounded inbox between paho's thread and the writer,
counting a batch, and turning a batch of received messages into rows and quarantine entries.

No broker and no database: the worker is built but never run, and its device cache is filled by hand as
`_resolve_devices` would fill it from the registry.
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from core.errors import DecodeError
from devices.catalog import load_catalog
from devices.registry import DeviceRecord
from ingest.worker import IngestConfig, IngestWorker, _Batch, _Inbound, _Inbox
from protocol.broker_url import BrokerAddress
from protocol.telemetry import decode_telemetry, encode_json
from protocol.topics import parse_topic, telemetry_topic
from store.quarantine import QuarantinedMessage
from store.readings import QUALITY_GOOD, QUALITY_OUT_OF_RANGE

DEVICE = "fridge-qt-001"
TOPIC = telemetry_topic("quang-tri", "health", DEVICE)
FRIDGE = DeviceRecord(
    device_id=DEVICE,
    type_code="vaccine_fridge",
    province="quang-tri",
    sector="health",
    name="",
    status="active",
    created_at=datetime(2026, 1, 1, tzinfo=UTC),
)


def inbound(topic: str = TOPIC, payload: bytes = b"", *, mid: int = 1, decode: bool = True) -> _Inbound:
    """A received message as `_on_publish` leaves it: decoded, or carrying the DecodeError that refused it."""
    item = _Inbound(mid=mid, qos=1, generation=1, topic=topic, payload=payload)
    if decode:
        try:
            item.address = parse_topic(topic)
            item.telemetry = decode_telemetry(payload, content_type=None, senml_topic=item.address.senml)
        except DecodeError as exc:
            item.error = exc
    return item


def now_payload(readings: dict[str, float], *, seq: int = 1, offset: timedelta = timedelta(0)) -> bytes:
    # _prepare validates against the wall clock: readings are stamped close to it.
    return encode_json(readings, seq=seq, ts=datetime.now(UTC).replace(microsecond=0) + offset)


def backpressure_count() -> float:
    return REGISTRY.get_sample_value("ioc_ingest_backpressure_total") or 0.0


@pytest.fixture
def worker() -> IngestWorker:
    config = IngestConfig(database_url="postgresql://unused", broker=BrokerAddress("localhost", 1), client_id="unit")
    built = IngestWorker(config, catalog=load_catalog())
    built._devices[DEVICE] = FRIDGE
    return built


# --------------------------------------------------------------------------------------------- inbox


def test_inbox_hands_items_over_in_arrival_order() -> None:
    inbox = _Inbox(capacity=10)
    stop = threading.Event()
    first, second = inbound(mid=1, decode=False), inbound(mid=2, decode=False)
    assert inbox.put(first, stop)
    assert inbox.put(second, stop)
    assert len(inbox) == 2
    assert inbox.wait(0)
    assert inbox.pop() is first
    assert inbox.pop() is second
    assert inbox.pop() is None
    assert len(inbox) == 0


def test_inbox_wait_times_out_when_empty_and_wakes_on_put() -> None:
    inbox = _Inbox(capacity=1)
    assert not inbox.wait(0.01)
    woke = threading.Event()

    def waiter() -> None:
        if inbox.wait(5.0):
            woke.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    assert inbox.put(inbound(decode=False), threading.Event())
    thread.join(5.0)
    assert woke.is_set()


def test_a_full_inbox_refuses_when_stopping_and_counts_back_pressure() -> None:
    inbox = _Inbox(capacity=1)
    stop = threading.Event()
    assert inbox.put(inbound(mid=1, decode=False), stop)
    stop.set()
    before = backpressure_count()
    assert not inbox.put(inbound(mid=2, decode=False), stop)  # unacknowledged: the broker delivers it again
    assert backpressure_count() == before + 1
    assert len(inbox) == 1


def test_a_full_inbox_blocks_the_producer_until_the_writer_pops() -> None:
    inbox = _Inbox(capacity=1)
    stop = threading.Event()
    assert inbox.put(inbound(mid=1, decode=False), stop)
    done = threading.Event()

    def producer() -> None:
        if inbox.put(inbound(mid=2, decode=False), stop):
            done.set()

    thread = threading.Thread(target=producer)
    thread.start()
    assert not done.wait(0.05)  # still blocked: the network thread stops reading (back-pressure)
    popped = inbox.pop()
    thread.join(5.0)
    assert popped is not None
    assert popped.mid == 1
    assert done.is_set()
    last = inbox.pop()
    assert last is not None
    assert last.mid == 2


# --------------------------------------------------------------------------------------------- batch


def test_a_batch_counts_readings_of_decoded_messages_only() -> None:
    batch = _Batch()
    IngestWorker._add(batch, inbound(payload=now_payload({"temperature": 4.0, "battery_v": 3.9})))
    IngestWorker._add(batch, inbound(payload=b"{not json"))
    IngestWorker._add(batch, inbound(payload=now_payload({"temperature": 4.1}, seq=2)))
    assert len(batch.items) == 3
    assert batch.readings == 3


# --------------------------------------------------------------------------------------------- prepare


def test_prepare_turns_good_messages_into_rows_and_bad_ones_into_quarantine_entries(worker: IngestWorker) -> None:
    good = now_payload({"temperature": 4.5, "battery_v": 9.0})
    bad_json = b'{"ts": "2026-11-22T08:00:00Z", "readings": '
    unknown_metric = now_payload({"heart_rate": 70.0}, seq=2)
    rows, bad = worker._prepare([inbound(payload=good), inbound(payload=bad_json), inbound(payload=unknown_metric)])
    assert [(row[1], row[2], row[3], row[4]) for row in rows] == [
        (DEVICE, "temperature", 4.5, QUALITY_GOOD),
        (DEVICE, "battery_v", 9.0, QUALITY_OUT_OF_RANGE),
    ]
    assert [(q.topic, q.device_id, q.reason, q.payload) for q in bad] == [
        (TOPIC, DEVICE, "invalid_json", bad_json),
        (TOPIC, DEVICE, "unknown_metric", unknown_metric),
    ]
    assert bad[1].detail == (
        "metric 'heart_rate' is not a metric of vaccine_fridge "
        "(its metrics: temperature, door_open, compressor_on, mains_on, battery_v)"
    )
    assert [(q.readings_stored, [r.metric for r in q.refused_readings]) for q in bad] == [(0, []), (0, ["heart_rate"])]


def test_prepare_stores_the_good_readings_of_a_mixed_message_and_quarantines_only_its_bad_ones(
    worker: IngestWorker,
) -> None:
    before = worker._prepare([inbound(payload=now_payload({"temperature": 4.0}))])[0]
    mixed = now_payload({"temperature": 4.5, "temprature": 4.6, "battery_v": 3.9, "door_open": 0.0}, seq=2)
    after = now_payload({"temperature": 4.7}, seq=3)
    rows, bad = worker._prepare([inbound(payload=mixed, mid=2), inbound(payload=after, mid=3)])
    assert [(row[2], row[3]) for row in rows] == [
        ("temperature", 4.5),
        ("battery_v", 3.9),
        ("door_open", 0.0),
        ("temperature", 4.7),
    ]
    assert len(bad) == 1
    entry = bad[0]
    ts = before[0][0].replace(microsecond=0)
    assert (entry.topic, entry.device_id, entry.payload, entry.province, entry.sector) == (
        TOPIC,
        DEVICE,
        mixed,
        "quang-tri",
        "health",
    )
    assert (entry.reason, entry.readings_stored) == ("unknown_metric", 3)
    assert entry.detail == (
        "1 of 4 readings refused, 3 stored: "
        "metric 'temprature' is not a metric of vaccine_fridge (did you mean 'temperature'?)"
    )
    assert [(r.metric, r.value, r.reason) for r in entry.refused_readings] == [("temprature", 4.6, "unknown_metric")]
    assert abs((entry.refused_readings[0].ts - ts).total_seconds()) < 5


def test_prepare_judges_a_retried_batch_afresh(worker: IngestWorker) -> None:
    # After a database outage the same items are prepared again: an entry from the first try does not linger.
    item = inbound(payload=now_payload({"temperature": 4.0, "heart_rate": 60.0}))
    first = worker._prepare([item])[1]
    second = worker._prepare([item])[1]
    assert first == second
    assert item.quarantined is second[0]
    assert second[0].readings_stored == 1
    good = inbound(payload=now_payload({"temperature": 4.0}))
    good.quarantined = first[0]  # as a first try that refused it would have left it
    assert worker._prepare([good])[1] == []
    assert good.quarantined is None


def test_prepare_quarantines_a_device_not_in_the_registry_as_unknown_device(worker: IngestWorker) -> None:
    topic = telemetry_topic("quang-tri", "health", "ghost-001")
    payload = now_payload({"temperature": 4.0})
    rows, bad = worker._prepare([inbound(topic, payload)])
    assert rows == []
    assert bad == [
        QuarantinedMessage(
            topic=topic,
            device_id="ghost-001",
            reason="unknown_device",
            detail="ghost-001",
            payload=payload,
            province="quang-tri",
            sector="health",
        )
    ]


def test_prepare_quarantines_a_device_whose_type_left_the_catalog(worker: IngestWorker) -> None:
    worker._devices[DEVICE] = dataclasses.replace(FRIDGE, type_code="retired_type")
    rows, bad = worker._prepare([inbound(payload=now_payload({"temperature": 4.0}))])
    assert rows == []
    assert [(q.reason, q.detail) for q in bad] == [("unknown_device_type", "retired_type")]


def test_prepare_quarantines_a_bad_topic_without_a_device_id(worker: IngestWorker) -> None:
    topic = f"ioc/v1/quang-tri/space/{DEVICE}/telemetry"
    payload = now_payload({"temperature": 4.0})
    rows, bad = worker._prepare([inbound(topic, payload)])
    assert rows == []
    assert [(q.topic, q.device_id, q.reason, q.payload) for q in bad] == [(topic, None, "bad_topic", payload)]
    assert bad[0].detail == "unknown sector 'space'"


def test_prepare_judges_the_future_by_the_configured_skew(worker: IngestWorker) -> None:
    # max_future_s defaults to 300 s.
    near = now_payload({"temperature": 4.0}, offset=timedelta(seconds=120))
    far = now_payload({"temperature": 4.0}, seq=2, offset=timedelta(seconds=900))
    rows, bad = worker._prepare([inbound(payload=near), inbound(payload=far)])
    assert len(rows) == 1
    assert [q.reason for q in bad] == ["timestamp_in_future"]


def test_address_is_parsed_once_per_topic_and_bad_topics_raise(worker: IngestWorker) -> None:
    first = worker._address(TOPIC)
    assert first == parse_topic(TOPIC)
    assert worker._address(TOPIC) is first
    with pytest.raises(DecodeError) as caught:
        worker._address("ioc/v1/quang-tri/health")
    assert caught.value.reason == "bad_topic"
