"""Server-Sent Events: readings and alarm events as they are committed, within the caller's scope and filters.

Each event's data is one JSON object. The `id` is a watermark (a transaction id): it is set on the last event of
each step and on every heartbeat, so a client that reconnects with `Last-Event-ID` resumes after the last step it
received whole and misses nothing (it may see the events of a step it had only partly received again).
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from typing import Annotated, Final, Literal

import anyio
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from api.auth import PrincipalDep
from api.errors import error_responses
from api.principal import Principal
from api.state import AppState, StateDep
from core.errors import InvalidRequest
from devices.audit import record_audit
from store.pool import Pool
from store.stream import (
    StreamAlarmEvent,
    StreamFilter,
    StreamReading,
    current_watermark,
    fetch_stream_alarm_events,
    fetch_stream_readings,
)

router = APIRouter(tags=["live"])

POLL_INTERVAL_S: Final = 0.25
HEARTBEAT_S: Final = 15.0
# Transport-sector readings include vehicle positions, which can be personal data: who watches them is audited.
LOCATION_SECTOR: Final = "transport"

EventKind = Literal["readings", "alarms"]


def _reading_event(r: StreamReading) -> str:
    data = {
        "ts": r.ts.isoformat(),
        "device_id": r.device_id,
        "metric": r.metric,
        "value": r.value,
        "quality": r.quality,
        "province": r.province,
        "sector": r.sector,
    }
    return f"event: reading\ndata: {json.dumps(data)}\n"


def _alarm_event(e: StreamAlarmEvent) -> str:
    data = {
        "event_id": e.event_id,
        "at": e.at.isoformat(),
        "alarm_id": e.alarm_id,
        "device_id": e.device_id,
        "province": e.province,
        "sector": e.sector,
        "status": e.status,
        "severity": e.severity,
        "kind": e.kind,
        "message": e.message,
        "assigned_to": e.assigned_to,
    }
    return f"event: alarm\ndata: {json.dumps(data)}\n"


def _step(
    pool: Pool, *, low: int, principal: Principal, wanted: StreamFilter, kinds: frozenset[EventKind]
) -> tuple[list[str], int]:
    """The events committed since `low` and the new watermark (runs in a worker thread: it blocks on the database)."""
    with pool.connection() as conn:
        high = current_watermark(conn)
        if high <= low:
            return [], low
        readings: list[StreamReading] = []
        if "readings" in kinds:
            readings, high = fetch_stream_readings(
                conn, low_xid=low, high_xid=high, scope=principal.scope, wanted=wanted
            )
        alarms = (
            fetch_stream_alarm_events(conn, low_xid=low, high_xid=high, scope=principal.scope, wanted=wanted)
            if "alarms" in kinds
            else []
        )
    # Interleave by transaction so a resumed reader sees the same order.
    ordered = sorted(
        [(r.xid, 0, _reading_event(r)) for r in readings] + [(a.xid, 1, _alarm_event(a)) for a in alarms],
        key=lambda item: (item[0], item[1]),
    )
    return [text for _, _, text in ordered], high


def _watermark_now(pool: Pool) -> int:
    with pool.connection() as conn:
        return current_watermark(conn)


async def _events(
    request: Request,
    state: AppState,
    *,
    start: int | None,
    principal: Principal,
    wanted: StreamFilter,
    kinds: frozenset[EventKind],
) -> AsyncIterator[str]:
    pool = state.pool
    low = start if start is not None else await anyio.to_thread.run_sync(_watermark_now, pool)
    yield f"retry: 2000\nid: {low}\nevent: ready\ndata: {{}}\n\n"
    since_beat = 0.0
    while not await request.is_disconnected():
        texts, high = await anyio.to_thread.run_sync(
            functools.partial(_step, pool, low=low, principal=principal, wanted=wanted, kinds=kinds)
        )
        for index, text in enumerate(texts):
            last = index == len(texts) - 1
            yield text + (f"id: {high}\n" if last else "") + "\n"
        if high != low and not texts:
            since_beat = HEARTBEAT_S  # an empty step still moves the watermark: tell the client now
        low = high
        since_beat += POLL_INTERVAL_S
        if since_beat >= HEARTBEAT_S:
            yield f"event: heartbeat\nid: {low}\ndata: {{}}\n\n"
            since_beat = 0.0
        await anyio.sleep(POLL_INTERVAL_S)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "an endless event stream"},
        **error_responses(InvalidRequest),
    },
)
def stream(
    *,
    request: Request,
    principal: PrincipalDep,
    state: StateDep,
    province: Annotated[str | None, Query(max_length=64)] = None,
    sector: Annotated[str | None, Query(max_length=32)] = None,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
    kinds: Annotated[list[EventKind] | None, Query(alias="kind", description="readings, alarms (default both)")] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=32)] = None,
) -> StreamingResponse:
    """Readings (`event: reading`) and alarm changes (`event: alarm`) as they are committed, with a heartbeat every
    15 s; resumable with `Last-Event-ID`."""
    start: int | None = None
    if last_event_id:
        if not last_event_id.isdigit():
            raise InvalidRequest("Last-Event-ID must be an id this stream sent")
        start = int(last_event_id)
    wanted = StreamFilter(province=province, sector=sector, device_id=device_id)
    chosen: frozenset[EventKind] = frozenset(kinds or ("readings", "alarms"))
    if "readings" in chosen and (sector in (None, LOCATION_SECTOR)) and principal.scope.allows_sector(LOCATION_SECTOR):
        with state.pool.connection() as conn:
            record_audit(
                conn,
                actor=principal.actor,
                action="stream.open",
                target=f"stream:{province or '*'}/{sector or '*'}/{device_id or '*'}",
                details={"kinds": sorted(chosen), "resume_from": start},
                address=principal.address,
            )
    return StreamingResponse(
        _events(request, state, start=start, principal=principal, wanted=wanted, kinds=chosen),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
