"""Readings of one device: raw points or time buckets, over a time range."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from api.state import ConnDep
from core.errors import UnknownDevice
from devices.registry import get_device
from store.readings import query_buckets, query_readings

router = APIRouter(prefix="/devices", tags=["readings"])

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


def _range(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    for value, name in ((start, "from"), (end, "to")):
        if value is not None and value.tzinfo is None:
            raise HTTPException(status_code=422, detail=f"'{name}' needs a timezone, e.g. 2026-11-22T08:00:00Z")
    end = end or datetime.now(UTC)
    start = start or end - DEFAULT_RANGE
    if start >= end:
        raise HTTPException(status_code=422, detail="'from' must be before 'to'")
    return start, end


def _require_device(conn: ConnDep, device_id: str) -> None:
    try:
        get_device(conn, device_id)
    except UnknownDevice as exc:
        raise HTTPException(status_code=404, detail=f"unknown device {device_id!r}") from exc


@router.get("/{device_id}/readings")
def read_readings(
    conn: ConnDep,
    device_id: str,
    *,
    metric: str | None = None,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_POINTS)] = 10_000,
) -> list[ReadingPublic]:
    """Raw readings in [from, to), oldest first (default: the last hour)."""
    start, end = _range(start, end)
    _require_device(conn, device_id)
    return [
        ReadingPublic.model_validate(r, from_attributes=True)
        for r in query_readings(conn, device_id=device_id, metric=metric, start=start, end=end, limit=limit)
    ]


@router.get("/{device_id}/buckets")
def read_buckets(
    conn: ConnDep,
    device_id: str,
    *,
    metric: str | None = None,
    start: Annotated[datetime | None, Query(alias="from")] = None,
    end: Annotated[datetime | None, Query(alias="to")] = None,
    bucket_s: Annotated[int, Query(ge=1, le=31 * 86400)] = 60,
) -> list[BucketPublic]:
    """Aggregates per time bucket (count, mean, min, max) in [from, to)."""
    start, end = _range(start, end)
    if (end - start).total_seconds() / bucket_s > MAX_POINTS:
        raise HTTPException(status_code=422, detail="too many buckets: widen bucket_s or narrow the range")
    _require_device(conn, device_id)
    return [
        BucketPublic.model_validate(b, from_attributes=True)
        for b in query_buckets(conn, device_id=device_id, metric=metric, start=start, end=end, bucket_s=bucket_s)
    ]
