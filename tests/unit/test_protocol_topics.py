"""Topic names of the wire contract: builders, parser and subscription filters agree with each other."""

from __future__ import annotations

import random
import string

import pytest

from core.errors import DecodeError
from protocol.topics import (
    ALERTS_FILTER,
    COMMAND_ACK_FILTER,
    SECTORS,
    STATUS_FILTER,
    TELEMETRY_FILTER,
    TELEMETRY_SENML_FILTER,
    TOPIC_ROOT,
    TopicAddress,
    alerts_topic,
    command_ack_topic,
    command_topic,
    device_prefix,
    is_valid_id,
    parse_topic,
    shared_filter,
    status_topic,
    telemetry_topic,
)

ID_CHARS = string.ascii_letters + string.digits + "_.-"


def mqtt_match(topic_filter: str, topic: str) -> bool:
    """Minimal MQTT topic-filter matching, enough to check our filters against our topics."""
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for position, level in enumerate(filter_levels):
        if level == "#":
            return True
        if position >= len(topic_levels) or (level not in ("+", topic_levels[position])):
            return False
    return len(filter_levels) == len(topic_levels)


def test_constants() -> None:
    assert SECTORS == ("agriculture", "energy", "transport", "health")
    assert TOPIC_ROOT == "ioc/v1"
    assert TELEMETRY_FILTER == "ioc/v1/+/+/+/telemetry"
    assert TELEMETRY_SENML_FILTER == "ioc/v1/+/+/+/telemetry/senml"
    assert STATUS_FILTER == "ioc/v1/+/+/+/status"
    assert COMMAND_ACK_FILTER == "ioc/v1/+/+/+/cmd/ack"
    assert ALERTS_FILTER == "ioc/v1/+/alerts"


def test_builders_give_the_contract_topics() -> None:
    assert device_prefix("hanoi", "energy", "meter-01") == "ioc/v1/hanoi/energy/meter-01"
    assert telemetry_topic("hanoi", "energy", "meter-01") == "ioc/v1/hanoi/energy/meter-01/telemetry"
    assert telemetry_topic("hanoi", "energy", "meter-01", senml=True) == "ioc/v1/hanoi/energy/meter-01/telemetry/senml"
    assert status_topic("hanoi", "energy", "meter-01") == "ioc/v1/hanoi/energy/meter-01/status"
    assert command_topic("hanoi", "energy", "meter-01") == "ioc/v1/hanoi/energy/meter-01/cmd"
    assert command_ack_topic("hanoi", "energy", "meter-01") == "ioc/v1/hanoi/energy/meter-01/cmd/ack"
    assert alerts_topic("hanoi") == "ioc/v1/hanoi/alerts"


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("ioc/v1/HN/agriculture/soil_7/telemetry", TopicAddress("HN", "agriculture", "soil_7", "telemetry", False)),
        (
            "ioc/v1/HN/agriculture/soil_7/telemetry/senml",
            TopicAddress("HN", "agriculture", "soil_7", "telemetry", True),
        ),
        ("ioc/v1/p.1/energy/m-2/status", TopicAddress("p.1", "energy", "m-2", "status", False)),
        ("ioc/v1/p/transport/bus.42/cmd", TopicAddress("p", "transport", "bus.42", "cmd", False)),
        ("ioc/v1/p/health/x/cmd/ack", TopicAddress("p", "health", "x", "cmd/ack", False)),
    ],
)
def test_parse_topic(topic: str, expected: TopicAddress) -> None:
    assert parse_topic(topic) == expected


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "ioc/v1",
        "ioc/v2/HN/energy/dev/telemetry",
        "iot/v1/HN/energy/dev/telemetry",
        "/ioc/v1/HN/energy/dev/telemetry",
        "ioc/v1/HN/mining/dev/telemetry",  # unknown sector
        "ioc/v1/HN/Energy/dev/telemetry",  # sectors are lower case
        "ioc/v1//energy/dev/telemetry",  # empty province
        "ioc/v1/HN/energy//telemetry",  # empty device
        "ioc/v1/HN/energy/dev/",
        "ioc/v1/HN/energy/dev/telemetry/",
        "ioc/v1/HN/energy/dev/telemetry/cbor",
        "ioc/v1/HN/energy/dev/senml",
        "ioc/v1/HN/energy/dev/cmd/nack",
        "ioc/v1/HN/energy/dev/events",
        "ioc/v1/+/energy/dev/telemetry",
        "ioc/v1/HN/+/dev/telemetry",
        "ioc/v1/HN/energy/+/telemetry",
        "ioc/v1/HN/energy/#",
        "ioc/v1/HN/energy/dev/#",
        "ioc/v1/HN/energy/de v/telemetry",
        "ioc/v1/HN/energy/dév/telemetry",
        "ioc/v1/HN/energy/" + "d" * 65 + "/telemetry",
        "ioc/v1/HN/alerts",  # a center topic, not a device topic
        "ioc/v1/HN/energy/dev/telemetry\n",
    ],
)
def test_parse_topic_rejects(topic: str) -> None:
    with pytest.raises(DecodeError) as caught:
        parse_topic(topic)
    assert caught.value.reason == "bad_topic"
    assert caught.value.detail


def test_id_length_limit() -> None:
    longest = "d" * 64
    assert parse_topic(f"ioc/v1/{longest}/energy/{longest}/status").device_id == longest
    assert is_valid_id(longest)
    assert not is_valid_id("d" * 65)
    assert not is_valid_id("")


def test_build_parse_round_trip_random_ids() -> None:
    rng = random.Random(20261122)
    for _ in range(2000):
        province = "".join(rng.choices(ID_CHARS, k=rng.randint(1, 64)))
        device_id = "".join(rng.choices(ID_CHARS, k=rng.randint(1, 64)))
        sector = rng.choice(SECTORS)
        senml = rng.random() < 0.5
        topic = telemetry_topic(province, sector, device_id, senml=senml)
        assert parse_topic(topic) == TopicAddress(province, sector, device_id, "telemetry", senml)
        assert mqtt_match(TELEMETRY_SENML_FILTER if senml else TELEMETRY_FILTER, topic)
        assert not mqtt_match(TELEMETRY_FILTER if senml else TELEMETRY_SENML_FILTER, topic)
        assert parse_topic(status_topic(province, sector, device_id)).channel == "status"
        assert mqtt_match(STATUS_FILTER, status_topic(province, sector, device_id))
        assert parse_topic(command_topic(province, sector, device_id)).channel == "cmd"
        ack = command_ack_topic(province, sector, device_id)
        assert parse_topic(ack) == TopicAddress(province, sector, device_id, "cmd/ack", False)
        assert mqtt_match(COMMAND_ACK_FILTER, ack)
        assert not mqtt_match(STATUS_FILTER, ack)
        assert mqtt_match(ALERTS_FILTER, alerts_topic(province))
        assert topic.startswith(device_prefix(province, sector, device_id) + "/")


@pytest.mark.parametrize(
    ("province", "sector", "device_id"),
    [("", "energy", "d"), ("p", "energy", ""), ("p", "mining", "d"), ("p/q", "energy", "d"), ("p", "energy", "+")],
)
def test_builders_reject_bad_ids(province: str, sector: str, device_id: str) -> None:
    with pytest.raises(ValueError, match=r"bad|unknown"):
        telemetry_topic(province, sector, device_id)
    with pytest.raises(ValueError, match=r"bad|unknown"):
        command_topic(province, sector, device_id)


def test_alerts_topic_rejects_bad_province() -> None:
    with pytest.raises(ValueError, match="province"):
        alerts_topic("a/b")


def test_shared_filter() -> None:
    assert shared_filter("ingest", TELEMETRY_FILTER) == "$share/ingest/ioc/v1/+/+/+/telemetry"
    assert shared_filter("ingest-2", TELEMETRY_SENML_FILTER) == "$share/ingest-2/ioc/v1/+/+/+/telemetry/senml"
    for bad_group in ("", "a/b", "a+", "#"):
        with pytest.raises(ValueError, match="group"):
            shared_filter(bad_group, TELEMETRY_FILTER)
    with pytest.raises(ValueError, match="filter"):
        shared_filter("ingest", "")
