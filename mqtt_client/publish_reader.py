"""The lean reader of received QoS 1 MQTT 5 PUBLISH packets: pure functions over the packet's bytes, no socket.

It reads what ingest needs (topic, packet id, Content Type, payload) and says "leave it to paho" for anything else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_U16 = struct.Struct("!H")


@dataclass(slots=True)
class ReceivedPublish:
    """A received PUBLISH, as the ingest hot path needs it."""

    mid: int
    qos: int
    topic: str
    payload: bytes
    content_type: str | None


class _Unsupported(Exception):
    """A PUBLISH the lean decoder leaves to paho (topic alias, unexpected property)."""


def _varint(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 21:
            raise _Unsupported("bad variable byte integer")


# MQTT 5 PUBLISH properties (spec 3.3.2.3) by how their value is encoded. A Topic Alias (0x23) is not among
# them on purpose: such a packet goes to paho.
_FIXED_PROPERTY_BYTES = {0x01: 1, 0x02: 4}  # payload format indicator, message expiry interval
_STRING_PROPERTIES = frozenset({0x03, 0x08, 0x09})  # content type, response topic, correlation data
_USER_PROPERTY = 0x26
_SUBSCRIPTION_IDENTIFIER = 0x0B


def _content_type(data: bytes | bytearray, pos: int, end: int) -> str | None:
    """The Content Type among a PUBLISH's properties; other properties are skipped."""
    found = None
    while pos < end:
        prop = data[pos]
        pos += 1
        if prop in _FIXED_PROPERTY_BYTES:
            pos += _FIXED_PROPERTY_BYTES[prop]
        elif prop in _STRING_PROPERTIES:
            (size,) = _U16.unpack_from(data, pos)
            if prop == 0x03:
                found = data[pos + 2 : pos + 2 + size].decode("utf-8", errors="replace")
            pos += 2 + size
        elif prop == _USER_PROPERTY:
            for _ in range(2):
                (size,) = _U16.unpack_from(data, pos)
                pos += 2 + size
        elif prop == _SUBSCRIPTION_IDENTIFIER:
            _, pos = _varint(data, pos)
        else:
            raise _Unsupported(f"property {prop:#x}")
    return found


def decode_qos1_publish(packet: bytes | bytearray) -> ReceivedPublish | None:
    """A QoS 1 MQTT 5 PUBLISH from everything after its fixed header (variable header and payload), or None when
    paho should decode it: a topic alias, a property the reader does not know, a packet too short to read."""
    try:
        (topic_len,) = _U16.unpack_from(packet, 0)
        if topic_len == 0:  # a topic alias: paho's business
            return None
        pos = 2 + topic_len
        (mid,) = _U16.unpack_from(packet, pos)
        props_len, pos = _varint(packet, pos + 2)
        content_type = _content_type(packet, pos, pos + props_len) if props_len else None
    except (_Unsupported, struct.error, IndexError):
        return None
    topic = packet[2 : 2 + topic_len].decode("utf-8", errors="replace")
    return ReceivedPublish(mid, 1, topic, bytes(packet[pos + props_len :]), content_type)
