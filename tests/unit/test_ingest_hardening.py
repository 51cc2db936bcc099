"""Pure parts of issue 14's ingest hardening: the per-device quarantine limit and the refusal of revoked credentials."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import ValidationError
from devices.catalog import load_catalog
from devices.registry import DeviceRecord
from ingest.quarantine_limit import QuarantineLimiter
from ingest.validate import ReadingSplitter
from protocol.telemetry import decode_telemetry, encode_json
from protocol.topics import parse_topic, telemetry_topic

NOW = datetime(2026, 11, 22, 8, 0, 10, tzinfo=UTC)
FRIDGE = DeviceRecord(
    device_id="fridge-1",
    type_code="vaccine_fridge",
    province="ha-noi",
    sector="health",
    name="",
    status="active",
    created_at=NOW - timedelta(days=30),
    credential_status="active",
)


def test_the_limiter_keeps_the_first_messages_of_a_minute_then_one_in_n() -> None:
    limiter = QuarantineLimiter(per_window=3, sample_every=4)
    minute = 1_800_000_000 - 1_800_000_000 % 60
    kept = [limiter.admit("dev", minute + i * 0.01) for i in range(15)]
    assert kept == [True] * 3 + [False, False, False, True] * 3
    assert limiter.admit("other", minute + 1) is True  # devices are counted apart
    assert limiter.admit("dev", minute + 60) is True  # a new minute starts afresh
    assert limiter.window_start(minute + 59.9) == minute


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"credential_status": "revoked"}, "credential_revoked"),
        ({"status": "decommissioned"}, "device_decommissioned"),
    ],
)
def test_revoked_or_decommissioned_devices_are_refused_even_if_the_broker_let_them_in(
    change: dict[str, str], reason: str
) -> None:
    topic = telemetry_topic("ha-noi", "health", "fridge-1")
    telemetry = decode_telemetry(encode_json({"temperature": 4.0}, seq=1, ts=NOW), content_type=None)
    device_type = load_catalog().get("vaccine_fridge")
    assert device_type is not None
    splitter = ReadingSplitter(now=NOW, max_future=timedelta(minutes=5), rows=[], refused=[])
    args = {"address": parse_topic(topic), "telemetry": telemetry, "device_type": device_type}
    assert splitter.split(device=FRIDGE, **args) == 1  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as refused:
        splitter.split(device=dataclasses.replace(FRIDGE, **change), **args)  # type: ignore[arg-type]
    assert refused.value.reason == reason
    assert (len(splitter.rows), splitter.refused) == (1, [])  # a refused device's message adds nothing
