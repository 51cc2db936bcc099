"""MQTT topic names of the ioc wire contract: building them, parsing them, and the subscription filters."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from core.errors import DecodeError

SECTORS: Final = ("agriculture", "energy", "transport", "health")
TOPIC_ROOT: Final = "ioc/v1"

Channel = Literal["telemetry", "status", "cmd", "cmd/ack"]

TELEMETRY_FILTER: Final = f"{TOPIC_ROOT}/+/+/+/telemetry"
TELEMETRY_SENML_FILTER: Final = f"{TOPIC_ROOT}/+/+/+/telemetry/senml"
STATUS_FILTER: Final = f"{TOPIC_ROOT}/+/+/+/status"
COMMAND_ACK_FILTER: Final = f"{TOPIC_ROOT}/+/+/+/cmd/ack"
ALERTS_FILTER: Final = f"{TOPIC_ROOT}/+/alerts"

_ID_PATTERN: Final = r"[A-Za-z0-9_.-]{1,64}"
_ID_RE: Final = re.compile(_ID_PATTERN)
# One match per topic on the ingest hot path; group 4 is the channel incl. the optional "/senml".
_TOPIC_RE: Final = re.compile(
    rf"ioc/v1/({_ID_PATTERN})/({'|'.join(SECTORS)})/({_ID_PATTERN})/(telemetry(?:/senml)?|status|cmd(?:/ack)?)"
)
# A shared-subscription group name is one topic level without wildcards (MQTT 5, 4.8.2).
_GROUP_RE: Final = re.compile(r"[^/+#\x00]{1,64}")
_CHANNEL_OF_TAIL: Final[dict[str, tuple[Channel, bool]]] = {
    "telemetry": ("telemetry", False),
    "telemetry/senml": ("telemetry", True),
    "status": ("status", False),
    "cmd": ("cmd", False),
    "cmd/ack": ("cmd/ack", False),
}


@dataclass(frozen=True, slots=True)
class TopicAddress:
    """Where a device topic points: the device and which of its channels."""

    province: str
    sector: str
    device_id: str
    channel: Channel
    senml: bool


def is_valid_id(value: str) -> bool:
    """True when `value` may be a province or device id (`[A-Za-z0-9_.-]{1,64}`)."""
    return _ID_RE.fullmatch(value) is not None


def parse_topic(topic: str) -> TopicAddress:
    """Parse a device topic (`ioc/v1/{province}/{sector}/{device_id}/{channel}`); DecodeError("bad_topic") otherwise."""
    match = _TOPIC_RE.fullmatch(topic)
    if match is None:
        raise DecodeError("bad_topic", _explain_bad_topic(topic))
    province, sector, device_id, tail = match.groups()
    channel, senml = _CHANNEL_OF_TAIL[tail]
    return TopicAddress(province, sector, device_id, channel, senml)


def _explain_bad_topic(topic: str) -> str:
    # Slow path, only for the quarantine detail: say which part is wrong.
    if "+" in topic or "#" in topic:
        return f"wildcard in topic {topic[:200]!r}"
    parts = topic.split("/")
    if parts[:2] != ["ioc", "v1"]:
        return f"topic does not start with {TOPIC_ROOT!r}"
    if len(parts) < 6:
        return f"too few levels in {topic[:200]!r}"
    if not is_valid_id(parts[2]):
        return f"bad province id {parts[2][:80]!r}"
    if parts[3] not in SECTORS:
        return f"unknown sector {parts[3][:80]!r}"
    if not is_valid_id(parts[4]):
        return f"bad device id {parts[4][:80]!r}"
    return f"unknown channel {'/'.join(parts[5:])[:80]!r}"


def _check_device(province: str, sector: str, device_id: str) -> None:
    if not is_valid_id(province):
        raise ValueError(f"bad province id {province!r}")
    if sector not in SECTORS:
        raise ValueError(f"unknown sector {sector!r}")
    if not is_valid_id(device_id):
        raise ValueError(f"bad device id {device_id!r}")


def device_prefix(province: str, sector: str, device_id: str) -> str:
    """`ioc/v1/{province}/{sector}/{device_id}`, the level every topic of one device lives under."""
    _check_device(province, sector, device_id)
    return f"{TOPIC_ROOT}/{province}/{sector}/{device_id}"


def telemetry_topic(province: str, sector: str, device_id: str, *, senml: bool = False) -> str:
    """Topic a device publishes readings on; `senml=True` adds the `/senml` suffix."""
    suffix = "/telemetry/senml" if senml else "/telemetry"
    return device_prefix(province, sector, device_id) + suffix


def status_topic(province: str, sector: str, device_id: str) -> str:
    """Retained `online`/`offline` topic of a device (also its Last Will)."""
    return device_prefix(province, sector, device_id) + "/status"


def command_topic(province: str, sector: str, device_id: str) -> str:
    """Topic the center sends commands to a device on."""
    return device_prefix(province, sector, device_id) + "/cmd"


def command_ack_topic(province: str, sector: str, device_id: str) -> str:
    """Topic a device acknowledges commands on."""
    return device_prefix(province, sector, device_id) + "/cmd/ack"


def alerts_topic(province: str) -> str:
    """`ioc/v1/{province}/alerts`, where the center publishes alarm events of one province."""
    if not is_valid_id(province):
        raise ValueError(f"bad province id {province!r}")
    return f"{TOPIC_ROOT}/{province}/alerts"


def shared_filter(group: str, topic_filter: str) -> str:
    """`$share/{group}/{topic_filter}`: an MQTT 5 shared subscription, so ingest workers split the load."""
    if _GROUP_RE.fullmatch(group) is None:
        raise ValueError(f"bad shared subscription group {group!r}")
    if not topic_filter or topic_filter.startswith("$share/"):
        raise ValueError(f"bad topic filter {topic_filter!r}")
    return f"$share/{group}/{topic_filter}"
