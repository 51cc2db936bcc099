"""What a field technician needs to bring a newly registered device on line: the broker's address (and the CA
its TLS listener is signed by), the device's account, the exact topics (from `protocol.topics`), the metrics it
reports with their units (from the catalog), and a `mosquitto_pub` line that publishes one reading as printed.
Pure: the caller says where the broker is; nothing here connects.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from devices.catalog import DeviceType, MetricSpec
from devices.registry import DeviceRecord
from protocol.broker_url import parse_broker_url
from protocol.topics import command_ack_topic, command_topic, status_topic, telemetry_topic

# The shell computes the reading's time when the line runs, so it can be run again later (a fixed `ts` would be
# absorbed as a duplicate by the store's unique key).
TS_NOW_SHELL: Final = "$(date +%s)"
MQTT_QOS: Final = 1


@dataclass(frozen=True, slots=True)
class DeviceBroker:
    """Where devices connect: a plain `mqtt://host:port` and/or a TLS `mqtts://host:port` with the CA certificate
    devices must trust. Never carries credentials."""

    url: str | None = None
    tls_url: str | None = None
    ca_file: Path | None = None

    @classmethod
    def from_urls(
        cls, *, public_url: str | None, center_url: str | None, tls_url: str | None, ca_file: Path | None
    ) -> DeviceBroker:
        """The broker as devices see it: `public_url` when the operator set one (a public name in front of the
        broker), else the center's own addresses with their credentials removed."""
        if public_url:
            address = parse_broker_url(public_url)
            clean = _clean_url(public_url)
            return cls(url=None, tls_url=clean, ca_file=ca_file) if address.tls else cls(url=clean)
        plain = _clean_url(center_url) if center_url else None
        if plain is not None and parse_broker_url(plain).tls:
            tls_url, plain = tls_url or plain, None
        return cls(url=plain, tls_url=_clean_url(tls_url) if tls_url else None, ca_file=ca_file)


def _clean_url(url: str) -> str:
    address = parse_broker_url(url)
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{'mqtts' if address.tls else 'mqtt'}://{host}:{address.port}"


@dataclass(frozen=True, slots=True)
class DeviceTopics:
    telemetry: str
    telemetry_senml: str
    status: str
    command: str
    command_ack: str


@dataclass(frozen=True, slots=True)
class OnboardingSheet:
    """Everything to configure the device with. `secret` exists only here, once: never logged or printed by repr."""

    device: DeviceRecord
    username: str
    secret: str
    broker: DeviceBroker
    topics: DeviceTopics
    metrics: tuple[MetricSpec, ...]
    report_interval_s: float
    sample_payload: str
    mosquitto_pub: str | None

    def __repr__(self) -> str:  # never print a secret
        return f"OnboardingSheet(device={self.device.device_id!r}, broker={self.broker!r})"

    def as_json(self) -> dict[str, object]:
        """Plain JSON values for `--json` and scripts."""
        return {
            "device_id": self.device.device_id,
            "type_code": self.device.type_code,
            "province": self.device.province,
            "sector": self.device.sector,
            "name": self.device.name,
            "username": self.username,
            "secret": self.secret,
            "broker_url": self.broker.url,
            "broker_tls_url": self.broker.tls_url,
            "ca_file": None if self.broker.ca_file is None else str(self.broker.ca_file),
            "topics": {
                "telemetry": self.topics.telemetry,
                "telemetry_senml": self.topics.telemetry_senml,
                "status": self.topics.status,
                "cmd": self.topics.command,
                "cmd_ack": self.topics.command_ack,
            },
            "metrics": [
                {"name": m.name, "unit": m.unit, "min": m.min, "max": m.max, "description": m.description}
                for m in self.metrics
            ],
            "report_interval_s": self.report_interval_s,
            "sample_payload": self.sample_payload,
            "mosquitto_pub": self.mosquitto_pub,
        }


def device_topics(device: DeviceRecord) -> DeviceTopics:
    where = (device.province, device.sector, device.device_id)
    return DeviceTopics(
        telemetry=telemetry_topic(*where),
        telemetry_senml=telemetry_topic(*where, senml=True),
        status=status_topic(*where),
        command=command_topic(*where),
        command_ack=command_ack_topic(*where),
    )


def sample_value(metric: MetricSpec) -> float:
    """A plausible in-range value: the middle of the range, or the low end of a 0/1 flag."""
    if metric.min == 0 and metric.max == 1:
        return 0.0
    return round((metric.min + metric.max) / 2, 1)


def sample_readings(device_type: DeviceType) -> dict[str, float]:
    return {m.name: sample_value(m) for m in device_type.metrics}


def build_onboarding_sheet(
    device: DeviceRecord, *, device_type: DeviceType, secret: str, broker: DeviceBroker
) -> OnboardingSheet:
    """The sheet for a device just created with `secret`; `mosquitto_pub` is None when no broker address is known."""
    topics = device_topics(device)
    readings = json.dumps(sample_readings(device_type), separators=(", ", ": "))
    payload = '{"ts": ' + TS_NOW_SHELL + ', "readings": ' + readings + "}"
    return OnboardingSheet(
        device=device,
        username=device.device_id,
        secret=secret,
        broker=broker,
        topics=topics,
        metrics=device_type.metrics,
        report_interval_s=device.report_interval_s or device_type.report_interval_s,
        sample_payload=payload,
        mosquitto_pub=_mosquitto_pub(device, topics=topics, readings=readings, secret=secret, broker=broker),
    )


def _mosquitto_pub(
    device: DeviceRecord, *, topics: DeviceTopics, readings: str, secret: str, broker: DeviceBroker
) -> str | None:
    """One `mosquitto_pub` (Debian's mosquitto-clients) line: TLS when the broker has a TLS listener and its CA is
    known, else plain. The payload is single-quoted around the shell's `$(date +%s)`, so it runs as printed."""
    tls = broker.tls_url is not None and broker.ca_file is not None
    url = broker.tls_url if tls else broker.url
    if url is None:
        return None
    address = parse_broker_url(url)
    argv = ["mosquitto_pub", "-h", address.host, "-p", str(address.port)]
    if tls:
        argv += ["--cafile", str(broker.ca_file)]
    argv += ["-i", device.device_id, "-u", device.device_id, "-P", secret, "-q", str(MQTT_QOS)]
    argv += ["-t", topics.telemetry]
    command = " ".join(shlex.quote(part) for part in argv)
    # '{"ts": '"$(date +%s)"', "readings": {…}}': quoted JSON around an unquoted-safe command substitution.
    payload = shlex.quote('{"ts": ') + f'"{TS_NOW_SHELL}"' + shlex.quote(f', "readings": {readings}}}')
    return f"{command} -m {payload}"
