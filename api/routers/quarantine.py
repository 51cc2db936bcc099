"""Quarantine (admin): list bad messages with filters, inspect one with its raw bytes, purge; the counts of
messages suppressed beyond a device's rate limit. Everything within the admin's provinces and sectors.

A message stored in part (some readings refused) is an entry too: `readings_stored` > 0 and `refused_readings`
says which readings were refused and why. Lists leave out the refused values (a bus tracker's position is a
location); the one-entry read, like the raw bytes it shows, has them."""

from __future__ import annotations

import base64
import dataclasses
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from api.auth import AdminDep
from api.errors import error_responses
from api.state import ConnDep
from core.errors import NotFound
from devices.audit import LOCATION_METRICS, record_audit, record_location_read
from store.quarantine import (
    REFUSED_READINGS_KEEP,
    QuarantineEntry,
    QuarantineFilter,
    get_quarantined,
    list_quarantined,
    list_suppressed,
    purge_quarantined,
)

router = APIRouter(prefix="/quarantine", tags=["quarantine"])

PREVIEW_CHARS = 2000
_KEPT = f"the refused readings, each with its reason (the first {REFUSED_READINGS_KEEP})"


class RefusedReadingPublic(BaseModel):
    metric: str
    ts: datetime
    reason: str = Field(description="a stable code: unknown_metric, text_value, unit_mismatch, timestamp_in_future, …")
    detail: str


class RefusedReadingDetail(RefusedReadingPublic):
    value: float | None = Field(description="the value sent; null for a text value")


class QuarantinePublic(BaseModel):
    id: int
    received_at: datetime
    topic: str
    device_id: str | None
    province: str | None
    sector: str | None
    reason: str = Field(description="why the message was refused, or why its first refused reading was")
    detail: str
    payload_size: int = Field(description="bytes the message had; at most the configured cap is kept")
    partial: bool = Field(description="some readings were stored; only `refused_readings` were refused")
    readings_stored: int
    readings_refused: int = Field(description="readings refused one by one (0 when the message was refused whole)")
    refused_readings: list[RefusedReadingPublic] = Field(description=_KEPT)


class QuarantineDetail(QuarantinePublic):
    refused_readings: list[RefusedReadingDetail] = Field(description=_KEPT)  # type: ignore[assignment]
    payload_base64: str = Field(description="the kept raw bytes")
    payload_text: str | None = Field(description="the kept bytes as UTF-8 (cut), when they are text")


class SuppressedPublic(BaseModel):
    device_key: str
    window_start: datetime
    province: str | None
    sector: str | None
    messages: int
    bytes: int
    last_reason: str


class PurgeResult(BaseModel):
    purged: int


class QuarantineQuery(BaseModel):
    device_id: str | None = None
    reason: str | None = Field(default=None, description="the entry's reason or that of any reading it refused")
    since: datetime | None = None
    until: datetime | None = None
    partial: bool | None = Field(default=None, description="true: messages stored in part; false: refused whole")


def _filter(admin: AdminDep, query: Annotated[QuarantineQuery, Query()]) -> QuarantineFilter:
    return QuarantineFilter(
        scope=admin.scope,
        device_id=query.device_id,
        reason=query.reason,
        since=query.since,
        until=query.until,
        partial=query.partial,
    )


FilterDep = Annotated[QuarantineFilter, Depends(_filter)]


def _public(entry: QuarantineEntry) -> QuarantinePublic:
    return QuarantinePublic.model_validate(entry, from_attributes=True)


@router.get("")
def read_quarantine(
    conn: ConnDep,
    flt: FilterDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[QuarantinePublic]:
    """Quarantined messages, newest first, without their payloads."""
    return [_public(e) for e in list_quarantined(conn, flt, limit=limit, offset=offset)]


@router.get("/suppressed")
def read_suppressed(
    conn: ConnDep, flt: FilterDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[SuppressedPublic]:
    """Per device and minute, the bad messages counted but not stored (beyond the device's rate limit)."""
    return [SuppressedPublic.model_validate(c, from_attributes=True) for c in list_suppressed(conn, flt, limit=limit)]


@router.get("/{entry_id}", responses=error_responses(NotFound))
def read_entry(conn: ConnDep, admin: AdminDep, entry_id: Annotated[int, Path(ge=1, le=2**62)]) -> QuarantineDetail:
    """One quarantined message with its kept raw bytes and refused values (a bus tracker's position in them is a
    location read: audited)."""
    entry = get_quarantined(conn, entry_id, scope=admin.scope)
    if entry is None or entry.payload is None:
        raise NotFound(f"no quarantined message {entry_id}")
    # The raw bytes are not decoded here: a position metric's name in them (JSON or CBOR text) is enough to count.
    shown = {r.metric for r in entry.refused_readings} | {m for m in LOCATION_METRICS if m.encode() in entry.payload}
    if (
        entry.device_id is not None
        and entry.sector is not None
        and record_location_read(
            conn,
            actor=admin.actor,
            address=admin.address,
            device_id=entry.device_id,
            sector=entry.sector,
            metrics=shown,
            via="quarantine",
            details={"entry": entry.id},
        )
    ):
        conn.commit()
    try:
        text: str | None = entry.payload.decode("utf-8")[:PREVIEW_CHARS]
    except UnicodeDecodeError:
        text = None
    return QuarantineDetail.model_validate(
        {
            **_public(entry).model_dump(),
            "refused_readings": [dataclasses.asdict(r) for r in entry.refused_readings],
            "payload_base64": base64.b64encode(entry.payload).decode(),
            "payload_text": text,
        }
    )


@router.delete("")
def purge(conn: ConnDep, admin: AdminDep, flt: FilterDep) -> PurgeResult:
    """Delete the messages the filters select (all within the admin's scope when none is given); audited."""
    purged = purge_quarantined(conn, flt)
    record_audit(
        conn,
        actor=admin.actor,
        action="quarantine_purged",
        target="quarantine",
        details={
            "purged": purged,
            "device_id": flt.device_id,
            "reason": flt.reason,
            "since": flt.since,
            "until": flt.until,
            "partial": flt.partial,
        },
        address=admin.address,
    )
    conn.commit()
    return PurgeResult(purged=purged)
