"""Flood control of notifications, pure: which alarm events are sent, given how many were sent lately per device,
per device type and per province (token buckets on the job's clock). Alarms are recorded either way; what is
held back is counted, so an operator can be told how much was.

Grouping (incidents), flapping and maintenance windows act on the alarms themselves (`analytics.scoring`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

_E = TypeVar("_E")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `burst` notifications at once, refilled at `per_hour` an hour."""

    burst: float
    per_hour: float

    def __post_init__(self) -> None:
        if self.burst < 1 or self.per_hour <= 0:
            raise ValueError("a rate limit needs burst >= 1 and per_hour > 0")


# Defaults: a device may page a few times an hour; a device type or a province a few dozen (a storm over a
# province raises many rule alarms; operators get the first ones and the count of the rest).
DEVICE_LIMIT: Final = RateLimit(burst=3, per_hour=6)
TYPE_LIMIT: Final = RateLimit(burst=20, per_hour=60)
PROVINCE_LIMIT: Final = RateLimit(burst=30, per_hour=120)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


@dataclass(slots=True)
class NotificationLimiter:
    """Token buckets per device, device type and province; `admit` filters a batch of events at `now`."""

    device: RateLimit = DEVICE_LIMIT
    device_type: RateLimit = TYPE_LIMIT
    province: RateLimit = PROVINCE_LIMIT
    held_back: int = 0
    _buckets: dict[tuple[str, str], _Bucket] = field(default_factory=dict)

    def _take(self, key: tuple[str, str], limit: RateLimit, now: float, *, spend: bool) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(tokens=limit.burst, at=now)
        bucket.tokens = min(limit.burst, bucket.tokens + max(0.0, now - bucket.at) * limit.per_hour / 3600.0)
        bucket.at = now
        if bucket.tokens < 1.0:
            return False
        if spend:
            bucket.tokens -= 1.0
        return True

    def allows(self, *, device_id: str, type_code: str, province: str, now: float) -> bool:
        """Whether one more notification may go out now (and if so, it is counted against all three)."""
        keys = (
            (("device", device_id), self.device),
            (("type", type_code), self.device_type),
            (("province", province), self.province),
        )
        if not all(self._take(key, limit, now, spend=False) for key, limit in keys):
            self.held_back += 1
            return False
        for key, limit in keys:
            self._take(key, limit, now, spend=True)
        return True

    def admit(self, events: Sequence[_E], *, now: float, where: Callable[[_E], tuple[str, str, str]]) -> list[_E]:
        """The events that may be sent now; `where(event)` gives its (device_id, type_code, province)."""
        sent = []
        for event in events:
            device_id, type_code, province = where(event)
            if self.allows(device_id=device_id, type_code=type_code, province=province, now=now):
                sent.append(event)
        return sent
