"""Validation of decoded telemetry against the device's registry entry and type: pure, no I/O.

Two levels. The message: a decommissioned or revoked device, or a topic outside the device's province and sector,
refuses it whole (`ValidationError`). Its readings: each is judged on its own against the device type and the clock
(a metric the type does not have, a text value, a unit other than the type's, a timestamp ahead of the clock or from
before the device existed), so one bad reading no longer costs the message its good ones. Out-of-range values are
not refused: they are stored with a quality flag, the evidence of a failing sensor that detection looks for.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Final

from core.errors import ValidationError
from devices.catalog import DeviceType
from devices.registry import DeviceRecord
from protocol.telemetry import Telemetry
from protocol.topics import TopicAddress
from store.quarantine import QuarantinedReading
from store.readings import QUALITY_GOOD, QUALITY_OUT_OF_RANGE, ReadingRow

# Devices are provisioned before they report; a day covers clocks set by hand and provisioning lag.
HISTORY_SLACK = timedelta(days=1)
# How alike a refused metric name must be to one of the type's to be offered as "did you mean".
SUGGESTION_CUTOFF: Final = 0.75
# The summary of a quarantine entry names at most this many distinct problems, then counts the rest.
SUMMARY_MAX_PROBLEMS: Final = 5


class ReadingSplitter:
    """Judges the messages of one batch against one clock reading: `split` appends the rows of a message's good
    readings to `rows` and each bad reading, with its reason, to `refused`.

    Built once per batch: the bound on the future is computed here, once, and a message with nothing wrong costs
    no list of its own and no refusal objects, only its rows (appended to the batch's list).
    """

    __slots__ = ("_latest_allowed", "_max_future", "_now", "refused", "rows")

    def __init__(
        self, *, now: datetime, max_future: timedelta, rows: list[ReadingRow], refused: list[QuarantinedReading]
    ) -> None:
        self._now = now
        self._max_future = max_future
        self._latest_allowed = now + max_future
        self.rows = rows
        self.refused = refused

    def split(
        self, *, address: TopicAddress, telemetry: Telemetry, device: DeviceRecord, device_type: DeviceType
    ) -> int:
        """Judge one message: return how many rows it appended. Raises ValidationError when the message is refused
        whole (its readings are then not looked at)."""
        # The message: checks that refuse it whole, whatever it holds.
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
        # Its readings, each on its own: metric, then unit, then time; the first check failed is the reason.
        latest_allowed = self._latest_allowed
        earliest_allowed = device.created_at - HISTORY_SLACK
        device_id = device.device_id
        rows = self.rows
        append = rows.append
        before = len(rows)
        checked_ts = None
        for ts, metric, value, unit, _ in telemetry.readings:
            spec = device_type.metric(metric)
            if spec is None:
                self._refuse(metric, ts, value, "unknown_metric", unknown_metric(device_type, metric))
                continue
            if unit is not None and unit != spec.unit:
                detail = f"metric {metric!r} in {unit!r}, {device_type.code} reports it in {spec.unit!r}"
                self._refuse(metric, ts, value, "unit_mismatch", detail)
                continue
            if ts is not checked_ts:  # the readings of one message share their timestamp: check it once
                if ts > latest_allowed:
                    self._refuse(metric, ts, value, "timestamp_in_future", self._ahead(ts))
                    continue
                if ts < earliest_allowed:
                    detail = _before_device(ts, device.created_at, earliest_allowed)
                    self._refuse(metric, ts, value, "timestamp_before_device", detail)
                    continue
                checked_ts = ts
            # Values are finite: the decoder refuses NaN and infinities at the edge. Out of range is kept, flagged.
            append(
                (ts, device_id, metric, value, QUALITY_GOOD if spec.min <= value <= spec.max else QUALITY_OUT_OF_RANGE)
            )
        if telemetry.texts:
            _refuse_texts(telemetry, device_type, self.refused)
        return len(rows) - before

    def _refuse(self, metric: str, ts: datetime, value: float | None, reason: str, detail: str) -> None:
        self.refused.append(QuarantinedReading(metric, ts, value, reason, detail))

    def _ahead(self, ts: datetime) -> str:
        ahead_s = (ts - self._now).total_seconds()
        return (
            f"timestamp {ts.isoformat()} is {ahead_s:.0f} s ahead of the center's clock "
            f"(at most {self._max_future.total_seconds():.0f} s allowed)"
        )


def _refuse_texts(telemetry: Telemetry, device_type: DeviceType, refused: list[QuarantinedReading]) -> None:
    """The store keeps numbers: a SenML text value ("vs") is refused, under a known name or not."""
    for text in telemetry.texts:
        spec = device_type.metric(text.metric)
        if spec is None:
            detail = unknown_metric(device_type, text.metric)
            refused.append(QuarantinedReading(text.metric, text.ts, None, "unknown_metric", detail))
        else:
            detail = (
                f"metric {text.metric!r} has a text value; {device_type.code} reports it as a number in {spec.unit!r}"
            )
            refused.append(QuarantinedReading(text.metric, text.ts, None, "text_value", detail))


def unknown_metric(device_type: DeviceType, metric: str) -> str:
    """Why `metric` is refused for `device_type`, with the likely intended name when there is one."""
    return _unknown_metric(device_type.code, device_type.metric_names, metric)


@lru_cache(maxsize=1024)
def _unknown_metric(type_code: str, known: tuple[str, ...], metric: str) -> str:
    # Cached: a misspelt metric repeats in every message (and every backfilled one) of the device that sends it.
    close = difflib.get_close_matches(metric, known, n=1, cutoff=SUGGESTION_CUTOFF)
    hint = f"did you mean {close[0]!r}?" if close else f"its metrics: {', '.join(known)}"
    return f"metric {metric!r} is not a metric of {type_code} ({hint})"


def _before_device(ts: datetime, created_at: datetime, earliest: datetime) -> str:
    return (
        f"timestamp {ts.isoformat()} is before the device was registered ({created_at.isoformat()}; "
        f"readings from {earliest.isoformat()} on are accepted)"
    )


def summarize_refusals(refused: Sequence[QuarantinedReading], *, stored: int) -> tuple[str, str]:
    """The reason and detail of the quarantine entry of a message whose `refused` readings were refused and
    `stored` stored: the reason of the first refused reading, and each distinct problem once, with its count."""
    if not refused:
        raise ValueError("no refused readings to summarize")
    problems = Counter(r.detail for r in refused)
    named = [f"{detail} (x{count})" if count > 1 else detail for detail, count in problems.most_common()]
    if len(named) > SUMMARY_MAX_PROBLEMS:
        named[SUMMARY_MAX_PROBLEMS:] = [f"and {len(named) - SUMMARY_MAX_PROBLEMS} more problems"]
    total = stored + len(refused)
    if stored:
        head = f"{len(refused)} of {total} readings refused, {stored} stored: "
    elif len(refused) > 1:
        head = f"all {total} readings refused: "
    else:
        head = ""
    return refused[0].reason, head + "; ".join(named)
