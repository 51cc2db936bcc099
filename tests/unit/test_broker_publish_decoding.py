"""The lean PUBLISH property reader agrees with the MQTT 5 encoding (checked against paho's own encoder)."""

from __future__ import annotations

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from devices.broker import _content_type, _Unsupported, _varint


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
