"""Readings of one device: raw points (newest first, paginated with a cursor) or time buckets (sized for the range
unless asked), over a time range, within the caller's scope. Reading a bus tracker's position is audited."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel

from api.auth import PrincipalDep
from api.errors import error_responses
from api.json_rows import json_rows
from api.state import ConnDep, StateDep
from api.time_range import TimeRange, time_range
from core.errors import InvalidRequest, NotFound, Unauthenticated
from devices.audit import record_location_read
from devices.registry import get_device
from store.readings import BUCKET_FIELDS, StoredReading, bucket_rows, query_readings

router = APIRouter(
    prefix="/devices", tags=["readings"], responses=error_responses(Unauthenticated, NotFound, InvalidRequest)
)

DEFAULT_RANGE = timedelta(hours=1)
MAX_POINTS = 100_000
TARGET_BUCKETS = 500
BUCKET_LADDER_S = (10, 30, 60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400)


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


def _check_metric(state: StateDep, type_code: str, metric: str | None) -> None:
    dtype = state.catalog.get(type_code)
    if metric is not None and dtype is not None and dtype.metric(metric) is None:
        raise InvalidRequest(f"a {type_code} has no metric {metric!r}; it has {', '.join(dtype.metric_names)}")


def _encode_cursor(reading: StoredReading) -> str:
    return base64.urlsafe_b64encode(f"{reading.ts.isoformat()}|{reading.metric}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        stamp, _, metric = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        moment = datetime.fromisoformat(stamp)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("cursor is not one this API gave (take it from the X-Next-Cursor header)") from exc
    if moment.tzinfo is None or not metric:
        raise InvalidRequest("cursor is not one this API gave (take it from the X-Next-Cursor header)")
    return moment, metric


@router.get("/{device_id}/readings")
def read_readings(
    conn: ConnDep,
    state: StateDep,
    principal: PrincipalDep,
    response: Response,
    device_id: str,
    *,
    span: ReadingsRange,
    metric: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_POINTS)] = 10_000,
    order: Annotated[
        Literal["newest", "oldest"], Query(description="newest first (default) or oldest first")
    ] = "newest",
    cursor: Annotated[str | None, Query(max_length=200, description="the X-Next-Cursor of the previous page")] = None,
) -> list[ReadingPublic]:
    """Raw readings in [from, to) (default: the last hour), newest first; when more remain than `limit`, the
    `X-Next-Cursor` header holds the cursor of the next page."""
    device = get_device(conn, device_id, scope=principal.scope)  # UnknownDevice when unknown or not in scope
    _check_metric(state, device.type_code, metric)
    rows = query_readings(
        conn,
        scope=principal.scope,
        device_id=device_id,
        metric=metric,
        start=span.start,
        end=span.end,
        limit=limit + 1,
        newest_first=order == "newest",
        after=_decode_cursor(cursor) if cursor else None,
    )
    if len(rows) > limit:
        rows = rows[:limit]
        response.headers["X-Next-Cursor"] = _encode_cursor(rows[-1])
    if record_location_read(
        conn,
        actor=principal.actor,
        address=principal.address,
        device_id=device_id,
        sector=device.sector,
        metrics={r.metric for r in rows},
        via="readings",
        details={"from": span.start, "to": span.end, "points": len(rows)},
    ):
        conn.commit()
    return [ReadingPublic.model_validate(r, from_attributes=True) for r in rows]


def bucket_for(span_s: float) -> int:
    """The bucket that gives at most ~500 points over `span_s`, from a ladder of round sizes."""
    for size in BUCKET_LADDER_S:
        if span_s / size <= TARGET_BUCKETS:
            return size
    return BUCKET_LADDER_S[-1]


@router.get("/{device_id}/buckets", response_model=list[BucketPublic])
def read_buckets(
    conn: ConnDep,
    state: StateDep,
    principal: PrincipalDep,
    device_id: str,
    *,
    span: ReadingsRange,
    metric: Annotated[str | None, Query(max_length=64)] = None,
    bucket_s: Annotated[
        int | None, Query(ge=1, le=31 * 86400, description="default: sized for about 500 points over the range")
    ] = None,
) -> Response:
    """Aggregates per time bucket (count, mean, min, max) in [from, to), oldest first; the bucket used is in the
    `X-Bucket-Seconds` header."""
    bucket_s = bucket_s or bucket_for((span.end - span.start).total_seconds())
    if (span.end - span.start).total_seconds() / bucket_s > MAX_POINTS:
        raise InvalidRequest("too many buckets: widen bucket_s or narrow the range")
    device = get_device(conn, device_id, scope=principal.scope)  # UnknownDevice when unknown or not in scope
    _check_metric(state, device.type_code, metric)
    buckets = bucket_rows(
        conn,
        scope=principal.scope,
        device_id=device_id,
        metric=metric,
        start=span.start,
        end=span.end,
        bucket_s=bucket_s,
    )
    if record_location_read(
        conn,
        actor=principal.actor,
        address=principal.address,
        device_id=device_id,
        sector=device.sector,
        metrics={b[1] for b in buckets},
        via="buckets",
        details={"from": span.start, "to": span.end, "bucket_s": bucket_s},
    ):
        conn.commit()
    return json_rows(BUCKET_FIELDS, buckets, headers={"X-Bucket-Seconds": str(bucket_s)})
