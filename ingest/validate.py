"""Validation of decoded telemetry against the device's registry entry and type: pure, no I/O."""

from __future__ import annotations

from datetime import datetime, timedelta

from core.errors import ValidationError
from devices.catalog import DeviceType
from devices.registry import DeviceRecord
from protocol.telemetry import Telemetry
from protocol.topics import TopicAddress
from store.readings import QUALITY_GOOD, QUALITY_OUT_OF_RANGE, ReadingRow

# Devices are provisioned before they report; a day covers clocks set by hand and provisioning lag.
HISTORY_SLACK = timedelta(days=1)


def to_rows(
    *,
    address: TopicAddress,
    telemetry: Telemetry,
    device: DeviceRecord,
    device_type: DeviceType,
    now: datetime,
    max_future: timedelta,
) -> list[ReadingRow]:
    """The rows to store for one message; raises ValidationError with a stable reason when the message
    must be quarantined as a whole. Out-of-range values are kept with a quality flag."""
    if not device.active:
        raise ValidationError("device_decommissioned", device.device_id)
    # Refused even when a broker let it in (an external broker's stale password file, a session from before the
    # revocation). 'none' (never given a secret) passes: such a device can reach only a broker without auth.
    if device.credential_status == "revoked":
        raise ValidationError("credential_revoked", device.device_id)
    if address.province != device.province or address.sector != device.sector:
        raise ValidationError(
            "topic_mismatch",
            f"device is registered in {device.province}/{device.sector}, published under "
            f"{address.province}/{address.sector}",
        )
    if telemetry.texts:
        raise ValidationError("unknown_metric", f"text value for {telemetry.texts[0].metric!r}")
    latest_allowed = now + max_future
    earliest_allowed = device.created_at - HISTORY_SLACK
    rows: list[ReadingRow] = []
    device_id = device.device_id
    checked_ts = None
    for ts, metric, value, unit, _ in telemetry.readings:
        spec = device_type.metric(metric)
        if spec is None:
            raise ValidationError("unknown_metric", f"{metric!r} is not a metric of {device_type.code}")
        if unit is not None and unit != spec.unit:
            raise ValidationError("unit_mismatch", f"{metric} in {unit!r}, expected {spec.unit!r}")
        if ts is not checked_ts:  # the readings of one message share their timestamp: check it once
            if ts > latest_allowed:
                raise ValidationError("timestamp_in_future", ts.isoformat())
            if ts < earliest_allowed:
                raise ValidationError("timestamp_before_device", ts.isoformat())
            checked_ts = ts
        # Values are finite: the decoder refuses NaN and infinities at the edge.
        quality = QUALITY_GOOD if spec.min <= value <= spec.max else QUALITY_OUT_OF_RANGE
        rows.append((ts, device_id, metric, value, quality))
    return rows
