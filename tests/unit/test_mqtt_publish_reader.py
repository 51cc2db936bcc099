"""The lean PUBLISH reader agrees with the MQTT 5 encoding (checked against paho's own encoder), without a socket."""

from __future__ import annotations

import struct

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqtt_client.publish_reader import ReceivedPublish, _content_type, _Unsupported, _varint, decode_qos1_publish


def _encoded(props: Properties) -> bytes:
    raw = props.pack()  # type: ignore[no-untyped-call]  # variable byte length + properties, as on the wire
    return bytes(raw)


def _properties(**values: object) -> Properties:
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    for name, value in values.items():
        setattr(props, name, value)
    return props


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, None),
        ({"ContentType": "application/senml+cbor"}, "application/senml+cbor"),
        ({"PayloadFormatIndicator": 1, "ContentType": "application/json"}, "application/json"),
        ({"MessageExpiryInterval": 3600, "ResponseTopic": "a/b", "CorrelationData": b"\x00\x01"}, None),
        (
            {"UserProperty": [("k", "v"), ("site", "can-tho")], "ContentType": "application/senml+json"},
            "application/senml+json",
        ),
        ({"SubscriptionIdentifier": [300], "ContentType": "x/y"}, "x/y"),
    ],
)
def test_content_type_is_read_among_any_publish_properties(values: dict[str, object], expected: str | None) -> None:
    wire = _encoded(_properties(**values))
    length, pos = _varint(wire, 0)
    assert pos + length == len(wire)
    assert _content_type(wire, pos, pos + length) == expected


def test_an_unknown_property_is_left_to_paho() -> None:
    wire = b"\x7f\x00"  # no such property id
    with pytest.raises(_Unsupported):
        _content_type(wire, 0, len(wire))


def test_variable_byte_integers() -> None:
    for value in (0, 1, 127, 128, 16_383, 16_384, 2_097_151, 268_435_455):
        encoded = bytearray()
        n = value
        while True:
            byte, n = n % 128, n // 128
            encoded.append(byte | (0x80 if n else 0))
            if not n:
                break
        assert _varint(bytes(encoded) + b"\xff", 0) == (value, len(encoded))


def _qos1_publish(topic: bytes, mid: int, props: Properties, payload: bytes) -> bytes:
    """A PUBLISH's variable header and payload: everything after the fixed header."""
    return struct.pack("!H", len(topic)) + topic + struct.pack("!H", mid) + _encoded(props) + payload


def test_a_qos1_publish_is_read_into_topic_packet_id_content_type_and_payload() -> None:
    props = _properties(UserProperty=[("site", "can-tho")], ContentType="application/senml+cbor")
    packet = _qos1_publish("ioc/v1/cần-thơ/energy/m-1/telemetry".encode(), 513, props, b"\xa1\x00\x01")

    assert decode_qos1_publish(packet) == ReceivedPublish(
        mid=513,
        qos=1,
        topic="ioc/v1/cần-thơ/energy/m-1/telemetry",
        payload=b"\xa1\x00\x01",
        content_type="application/senml+cbor",
    )


def test_a_payload_after_a_multi_byte_property_length_is_read_whole() -> None:
    props = _properties(UserProperty=[("k", "v" * 200)])  # property length > 127: two bytes
    payload = bytes(range(256)) * 100
    packet = _qos1_publish(b"a/b", 1, props, payload)

    message = decode_qos1_publish(bytearray(packet))  # paho hands over a bytearray

    assert message is not None
    assert message.payload == payload
    assert message.content_type is None


@pytest.mark.parametrize(
    "packet",
    [
        _qos1_publish(b"", 7, _properties(TopicAlias=3), b"{}"),  # names only a topic alias
        _qos1_publish(b"a/b", 7, _properties(TopicAlias=3), b"{}"),  # sets a topic alias
        b"\x00\x03a/",  # too short for its topic
        b"\x00\x03a/b\x00",  # too short for its packet id
        b"\x00\x03a/b\x00\x07\xff\xff\xff\xff\x01",  # a property length of five bytes
    ],
    ids=["alias-only", "alias-set", "short-topic", "short-packet-id", "bad-property-length"],
)
def test_what_the_reader_cannot_read_is_left_to_paho(packet: bytes) -> None:
    assert decode_qos1_publish(packet) is None
