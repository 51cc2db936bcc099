"""Readings of one device: raw points or time buckets, over a time range."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from api.errors import error_responses
from api.state import ConnDep
from api.time_range import TimeRange, time_range
from core.errors import InvalidRequest, NotFound
from devices.registry import get_device
from store.readings import query_buckets, query_readings

router = APIRouter(prefix="/devices", tags=["readings"], responses=error_responses(NotFound, InvalidRequest))

DEFAULT_RANGE = timedelta(hours=1)
MAX_POINTS = 100_000


class ReadingPublic(BaseModel):
    ts: datetime
    metric: str
    value: float
    quality: int


class BucketPublic(BaseModel):
    start: datetime
    metric: str
    count: int
    mean: float
    minimum: float
    maximum: float


ReadingsRange = Annotated[TimeRange, Depends(time_range(DEFAULT_RANGE))]


@router.get("/{device_id}/readings")
def read_readings(
    conn: ConnDep,
    device_id: str,
    *,
    span: ReadingsRange,
    metric: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_POINTS)] = 10_000,
) -> list[ReadingPublic]:
    """Raw readings in [from, to), oldest first (default: the last hour)."""
    get_device(conn, device_id)  # UnknownDevice when it is not registered
    return [
        ReadingPublic.model_validate(r, from_attributes=True)
        for r in query_readings(conn, device_id=device_id, metric=metric, start=span.start, end=span.end, limit=limit)
    ]


@router.get("/{device_id}/buckets")
def read_buckets(
    conn: ConnDep,
    device_id: str,
    *,
    span: ReadingsRange,
    metric: str | None = None,
    bucket_s: Annotated[int, Query(ge=1, le=31 * 86400)] = 60,
) -> list[BucketPublic]:
    """Aggregates per time bucket (count, mean, min, max) in [from, to)."""
    if (span.end - span.start).total_seconds() / bucket_s > MAX_POINTS:
        raise InvalidRequest("too many buckets: widen bucket_s or narrow the range")
    get_device(conn, device_id)  # UnknownDevice when it is not registered
    return [
        BucketPublic.model_validate(b, from_attributes=True)
        for b in query_buckets(
            conn, device_id=device_id, metric=metric, start=span.start, end=span.end, bucket_s=bucket_s
        )
    ]
