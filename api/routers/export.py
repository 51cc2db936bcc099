"""CSV exports, streamed from the database in constant memory; every export is audited (who, what, from where)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import StreamingResponse

from api.auth import PrincipalDep
from api.errors import error_responses
from api.state import StateDep
from api.time_range import TimeRange, time_range
from core.errors import InvalidRequest
from devices.audit import record_audit
from store.export import ExportFilter, copy_readings_csv
from store.pool import Pool
from store.scope import Scope

router = APIRouter(prefix="/export", tags=["export"])

RangeDep = Annotated[TimeRange, Depends(time_range(timedelta(days=1)))]


def _stream(pool: Pool, *, scope: Scope, wanted: ExportFilter) -> Iterator[bytes]:
    # The connection is held while the client reads; leaving early (a closed download) ends the COPY.
    with pool.connection() as conn:
        yield from copy_readings_csv(conn, scope=scope, wanted=wanted)


@router.get(
    "/readings.csv",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "CSV, oldest first"},
        **error_responses(InvalidRequest),
    },
)
def export_readings(
    *,
    principal: PrincipalDep,
    state: StateDep,
    period: RangeDep,
    province: Annotated[str | None, Query(max_length=64)] = None,
    sector: Annotated[str | None, Query(max_length=32)] = None,
    device_id: Annotated[str | None, Query(max_length=64)] = None,
    metric: Annotated[str | None, Query(max_length=64)] = None,
) -> StreamingResponse:
    """Readings of a time range (default: the last day) as CSV: `ts,device_id,metric,value,quality,province,sector`,
    within the caller's scope and the filters given. Any size: the file is streamed as the database produces it."""
    wanted = ExportFilter(
        start=period.start, end=period.end, province=province, sector=sector, device_id=device_id, metric=metric
    )
    with state.pool.connection() as conn:
        record_audit(
            conn,
            actor=principal.actor,
            action="export.readings",
            target=f"export:{province or '*'}/{sector or '*'}/{device_id or '*'}/{metric or '*'}",
            details={"from": period.start.isoformat(), "to": period.end.isoformat()},
            address=principal.address,
        )
    start, end = period.start.astimezone(UTC), period.end.astimezone(UTC)
    filename = f"readings_{start:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}.csv"
    return StreamingResponse(
        _stream(state.pool, scope=principal.scope, wanted=wanted),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )
