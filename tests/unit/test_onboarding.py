"""The onboarding sheet (devices.onboarding): topics from the protocol's builders, metrics from the catalog, and a
`mosquitto_pub` line that, run by a real shell, publishes a payload the center's decoder accepts."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from devices.catalog import Catalog, load_catalog
from devices.onboarding import DeviceBroker, build_onboarding_sheet
from devices.registry import DeviceRecord
from protocol.telemetry import decode_telemetry
from protocol.topics import command_ack_topic, command_topic, status_topic, telemetry_topic

SECRET = "s3cr3t-with_dash"


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _fridge() -> DeviceRecord:
    return DeviceRecord(
        device_id="fridge-hue-001",
        type_code="vaccine_fridge",
        province="hue",
        sector="health",
        name="Trạm y tế Phú Hội",
        status="active",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        credential_status="active",
    )


def _run_line(line: str) -> list[str]:
    """The arguments mosquitto_pub would get when bash runs `line` (a shell function stands in for it)."""
    bash = shutil.which("bash")
    assert bash is not None
    script = 'mosquitto_pub() { printf "%s\\0" "$@"; }\n' + line
    done = subprocess.run([bash, "-c", script], capture_output=True, check=True, timeout=10)
    return done.stdout.decode().split("\0")[:-1]


def test_the_sheet_names_the_protocol_topics_and_the_catalog_metrics_with_units(catalog: Catalog) -> None:
    device = _fridge()
    broker = DeviceBroker(url="mqtt://10.0.0.5:1883")
    sheet = build_onboarding_sheet(device, device_type=catalog.types["vaccine_fridge"], secret=SECRET, broker=broker)
    where = ("hue", "health", "fridge-hue-001")
    assert sheet.topics.telemetry == telemetry_topic(*where) == "ioc/v1/hue/health/fridge-hue-001/telemetry"
    assert sheet.topics.telemetry_senml == telemetry_topic(*where, senml=True)
    assert (sheet.topics.status, sheet.topics.command, sheet.topics.command_ack) == (
        status_topic(*where),
        command_topic(*where),
        command_ack_topic(*where),
    )
    assert [(m.name, m.unit) for m in sheet.metrics][:2] == [("temperature", "Cel"), ("door_open", "1")]
    assert sheet.report_interval_s == 300
    assert sheet.username == "fridge-hue-001"
    document = sheet.as_json()
    assert document["secret"] == SECRET and document["broker_url"] == "mqtt://10.0.0.5:1883"
    assert document["topics"] == {
        "telemetry": sheet.topics.telemetry,
        "telemetry_senml": sheet.topics.telemetry_senml,
        "status": sheet.topics.status,
        "cmd": sheet.topics.command,
        "cmd_ack": sheet.topics.command_ack,
    }
    json.dumps(document)  # plain JSON values only
    assert SECRET not in repr(sheet)


def test_the_mosquitto_pub_line_publishes_a_payload_the_center_decodes_with_the_time_it_is_run(
    catalog: Catalog,
) -> None:
    fridge = catalog.types["vaccine_fridge"]
    sheet = build_onboarding_sheet(
        _fridge(), device_type=fridge, secret=SECRET, broker=DeviceBroker(url="mqtt://10.0.0.5:1883")
    )
    assert sheet.mosquitto_pub is not None
    before = datetime.now(UTC).replace(microsecond=0)
    argv = _run_line(sheet.mosquitto_pub)
    options = dict(zip(argv[::2], argv[1::2], strict=True))
    assert options == {
        "-h": "10.0.0.5",
        "-p": "1883",
        "-i": "fridge-hue-001",
        "-u": "fridge-hue-001",
        "-P": SECRET,
        "-q": "1",
        "-t": "ioc/v1/hue/health/fridge-hue-001/telemetry",
        "-m": options["-m"],
    }
    telemetry = decode_telemetry(options["-m"].encode(), content_type=None)
    readings = {r.metric: r.value for r in telemetry.readings}
    assert set(readings) == set(fridge.metric_names)
    assert all(fridge.metric(name).in_range(value) for name, value in readings.items())  # type: ignore[union-attr]
    assert {r.ts for r in telemetry.readings} and all(before <= r.ts <= datetime.now(UTC) for r in telemetry.readings)


def test_with_a_tls_listener_the_line_uses_it_and_trusts_the_center_ca(catalog: Catalog, tmp_path: Path) -> None:
    ca = tmp_path / "ca dir" / "ca.crt"
    broker = DeviceBroker.from_urls(
        public_url=None,
        center_url="mqtt://ioc-center:pa%24s@127.0.0.1:41883",
        tls_url="mqtts://127.0.0.1:48883",
        ca_file=ca,
    )
    assert broker == DeviceBroker(url="mqtt://127.0.0.1:41883", tls_url="mqtts://127.0.0.1:48883", ca_file=ca)
    sheet = build_onboarding_sheet(_fridge(), device_type=catalog.types["vaccine_fridge"], secret=SECRET, broker=broker)
    assert sheet.mosquitto_pub is not None
    argv = _run_line(sheet.mosquitto_pub)
    assert argv[argv.index("-p") + 1] == "48883"
    assert argv[argv.index("--cafile") + 1] == str(ca)  # a path with a space survives the shell


def test_the_operators_public_address_replaces_the_centers_and_no_credentials_leak() -> None:
    public = DeviceBroker.from_urls(
        public_url="mqtts://mqtt.example.vn:8883",
        center_url="mqtt://admin:secret@mosquitto:1883",
        tls_url=None,
        ca_file=Path("/etc/ioc/ca.crt"),
    )
    assert public == DeviceBroker(url=None, tls_url="mqtts://mqtt.example.vn:8883", ca_file=Path("/etc/ioc/ca.crt"))
    plain = DeviceBroker.from_urls(
        public_url=None, center_url="mqtt://admin:secret@mosquitto:1883", tls_url=None, ca_file=None
    )
    assert plain.url == "mqtt://mosquitto:1883" and "secret" not in repr(plain)


def test_without_a_known_broker_there_is_no_line_rather_than_a_wrong_one(catalog: Catalog) -> None:
    sheet = build_onboarding_sheet(
        _fridge(), device_type=catalog.types["vaccine_fridge"], secret=SECRET, broker=DeviceBroker()
    )
    assert sheet.mosquitto_pub is None
    assert sheet.as_json()["broker_url"] is None
