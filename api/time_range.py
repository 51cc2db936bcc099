"""The `from` / `to` query parameters of the routes that read a time range, checked in one place."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import Query

from core.errors import InvalidRequest


@dataclass(frozen=True, slots=True)
class TimeRange:
    """A half-open range [start, end) of aware timestamps, start before end."""

    start: datetime
    end: datetime


def time_range(default_span: timedelta) -> Callable[..., TimeRange]:
    """A dependency reading `from` and `to` (ISO 8601 with a timezone); `to` defaults to now, `from` to
    `default_span` before `to`. InvalidRequest for a naive timestamp, an empty range, or one that reaches
    outside the years 1 to 9999 (in UTC)."""

    def dependency(
        start: Annotated[datetime | None, Query(alias="from", description="inclusive, with a timezone")] = None,
        end: Annotated[datetime | None, Query(alias="to", description="exclusive, with a timezone")] = None,
    ) -> TimeRange:
        for value, name in ((start, "from"), (end, "to")):
            if value is not None and value.tzinfo is None:
                raise InvalidRequest(f"'{name}' needs a timezone, e.g. 2026-11-22T08:00:00Z")
        try:
            # In UTC, so that a range near year 1 or 9999 that cannot be computed is refused here, not by psycopg.
            end = end.astimezone(UTC) if end is not None else datetime.now(UTC)
            start = start.astimezone(UTC) if start is not None else end - default_span
        except OverflowError:
            raise InvalidRequest("'from' and 'to' must lie between the years 1 and 9999 (in UTC)") from None
        if start >= end:
            raise InvalidRequest("'from' must be before 'to'")
        return TimeRange(start=start, end=end)

    return dependency
