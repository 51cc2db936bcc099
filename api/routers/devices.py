"""Devices: list, read one with its latest values, and the registry changes (admin): create, bulk import from
CSV, update or move, decommission, rotate or revoke the secret. A secret appears once, in the response that
created it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, Field

from api.auth import AdminDep
from api.errors import error_responses
from api.state import ConnDep, StateDep
from core.errors import Conflict, InvalidRequest, NotFound
from devices.audit import list_audit
from devices.provisioning import (
    decommission_device,
    import_devices_csv,
    provision_device,
    revoke_secret,
    rotate_secret,
    update_device,
)
from devices.registry import DeviceRecord, get_device, list_devices
from store.readings import query_latest

router = APIRouter(prefix="/devices", tags=["devices"])

IMPORT_MAX_BYTES = 20 * 1024 * 1024


class DevicePublic(BaseModel):
    device_id: str
    type_code: str
    province: str
    sector: str
    name: str
    status: str
    created_at: datetime
    credential_status: str
    report_interval_s: float | None


class LatestPublic(BaseModel):
    metric: str
    ts: datetime
    value: float
    quality: int
    received_at: datetime


class DeviceDetail(DevicePublic):
    latest: list[LatestPublic]


class DeviceCreate(BaseModel):
    device_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    type_code: str
    province: str
    name: str = Field(default="", max_length=200)
    report_interval_s: float | None = Field(default=None, gt=0)


class DeviceUpdate(BaseModel):
    """Fields to change; `province` moves the device (its history stays), `report_interval_s: null` resets it."""

    name: str | None = Field(default=None, max_length=200)
    province: str | None = None
    report_interval_s: float | None = Field(default=None, gt=0)


class DeviceWithSecret(DevicePublic):
    secret: str = Field(description="shown only in this response; only a hash is kept")


class SecretPublic(BaseModel):
    device_id: str
    secret: str = Field(description="shown only in this response; only a hash is kept")


class RevokeRequest(BaseModel):
    reason: str = Field(default="", max_length=500)


class ImportRowPublic(BaseModel):
    row: int
    device_id: str
    ok: bool
    reason: str
    secret: str | None


class ImportReport(BaseModel):
    ok: int
    failed: int
    rows: list[ImportRowPublic]


class AuditPublic(BaseModel):
    at: datetime
    actor: str
    action: str
    target: str
    details: dict[str, object]


def _public(device: DeviceRecord) -> DevicePublic:
    return DevicePublic.model_validate(device, from_attributes=True)


@router.get("")
def read_devices(
    conn: ConnDep,
    province: str | None = None,
    sector: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[DevicePublic]:
    return [_public(d) for d in list_devices(conn, province=province, sector=sector, limit=limit, offset=offset)]


@router.post("", status_code=201, responses=error_responses(Conflict, InvalidRequest))
def create_device(conn: ConnDep, state: StateDep, operator: AdminDep, body: DeviceCreate) -> DeviceWithSecret:
    created = provision_device(
        conn,
        device_id=body.device_id,
        type_code=body.type_code,
        province=body.province,
        catalog=state.catalog,
        actor=operator.actor,
        name=body.name,
        report_interval_s=body.report_interval_s,
    )
    conn.commit()
    return DeviceWithSecret(**_public(created.device).model_dump(), secret=created.secret)


@router.post("/import", responses=error_responses(InvalidRequest))
def import_devices(
    conn: ConnDep,
    state: StateDep,
    operator: AdminDep,
    csv_text: Annotated[str, Body(media_type="text/csv", max_length=IMPORT_MAX_BYTES)],
) -> ImportReport:
    """Bulk provisioning: a CSV `device_id,type_code,province[,name][,report_interval_s]`; each row reported."""
    rows = import_devices_csv(conn, csv_text, catalog=state.catalog, actor=operator.actor)
    conn.commit()
    public = [
        ImportRowPublic(row=r.row, device_id=r.device_id, ok=r.ok, reason=r.reason, secret=r.secret or None)
        for r in rows
    ]
    ok = sum(1 for r in rows if r.ok)
    return ImportReport(ok=ok, failed=len(rows) - ok, rows=public)


@router.get("/{device_id}", responses=error_responses(NotFound))
def read_device(conn: ConnDep, device_id: str) -> DeviceDetail:
    device = get_device(conn, device_id)
    latest = [LatestPublic.model_validate(v, from_attributes=True) for v in query_latest(conn, device_id=device_id)]
    return DeviceDetail(**_public(device).model_dump(), latest=latest)


@router.patch("/{device_id}", responses=error_responses(NotFound, Conflict, InvalidRequest))
def patch_device(conn: ConnDep, operator: AdminDep, device_id: str, body: DeviceUpdate) -> DevicePublic:
    changes: dict[str, object] = {"name": body.name, "province": body.province}
    if "report_interval_s" in body.model_fields_set:
        changes["report_interval_s"] = body.report_interval_s
    device = update_device(conn, device_id, actor=operator.actor, **changes)  # type: ignore[arg-type]
    conn.commit()
    return _public(device)


@router.post("/{device_id}/decommission", responses=error_responses(NotFound, Conflict))
def decommission(conn: ConnDep, operator: AdminDep, device_id: str, body: RevokeRequest) -> DevicePublic:
    device = decommission_device(conn, device_id, actor=operator.actor, reason=body.reason)
    conn.commit()
    return _public(device)


@router.post("/{device_id}/secret", responses=error_responses(NotFound, Conflict))
def rotate(conn: ConnDep, operator: AdminDep, device_id: str) -> SecretPublic:
    """A new secret (the old one stops working and its session is cut off at the next broker sync)."""
    secret = rotate_secret(conn, device_id, actor=operator.actor)
    conn.commit()
    return SecretPublic(device_id=device_id, secret=secret)


@router.post("/{device_id}/revoke", responses=error_responses(NotFound))
def revoke(conn: ConnDep, operator: AdminDep, device_id: str, body: RevokeRequest) -> DevicePublic:
    device = revoke_secret(conn, device_id, actor=operator.actor, reason=body.reason)
    conn.commit()
    return _public(device)


@router.get("/{device_id}/audit")
def read_audit(conn: ConnDep, device_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[AuditPublic]:
    return [
        AuditPublic.model_validate(e, from_attributes=True) for e in list_audit(conn, target=device_id, limit=limit)
    ]
