"""Devices: list, read one with its latest values, and the registry changes (admin): create, bulk import from
CSV, update or move, decommission, rotate or revoke the secret; a device's audit trail (admin). A secret appears
once, in the response that created it. Everything within the caller's scope: a device outside it is unknown."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query
from pydantic import BaseModel, Field

from api.auth import AdminDep, PrincipalDep
from api.errors import error_responses
from api.params import Offset
from api.routers.audit import AuditPublic
from api.routers.quarantine import QuarantinePublic
from api.state import ConnDep, StateDep
from core.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unauthenticated
from devices.audit import list_audit, record_location_read
from devices.naming import resolve_province_code, resolve_type_code
from devices.onboarding import build_onboarding_sheet
from devices.provinces import load_provinces
from devices.provisioning import (
    decommission_device,
    import_devices_csv,
    provision_device,
    revoke_secret,
    rotate_secret,
    update_device,
)
from devices.registry import DeviceRecord, get_device, list_devices
from store.quarantine import QuarantineFilter, list_quarantined
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


class TopicsPublic(BaseModel):
    telemetry: str = Field(description="publish readings here (QoS 1), JSON")
    telemetry_senml: str = Field(description="or here, SenML JSON/CBOR")
    status: str = Field(description="retained online/offline, also the Last Will")
    cmd: str = Field(description="subscribe: commands from the center")
    cmd_ack: str = Field(description="publish: command acknowledgements")


class MetricPublic(BaseModel):
    name: str
    unit: str = Field(description="UCUM code")
    min: float
    max: float
    description: str


class DeviceOnboarding(DeviceWithSecret):
    """A new device with everything a field technician configures it with (the secret is shown only here)."""

    username: str = Field(description="the device's broker username (its id)")
    broker_url: str | None = Field(description="plain MQTT address, mqtt://host:port (null: not known to the API)")
    broker_tls_url: str | None = Field(description="MQTT over TLS, mqtts://host:port")
    ca_file: str | None = Field(description="the CA certificate the TLS listener is signed by, on the center")
    topics: TopicsPublic
    metrics: list[MetricPublic] = Field(description="what the device type reports, with units and physical ranges")
    effective_report_interval_s: float = Field(description="the device's report interval, or its type's")
    sample_payload: str = Field(description="one reading as JSON; `$(date +%s)` is the shell's current time")
    mosquitto_pub: str | None = Field(description="a shell line that publishes one reading as printed")


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


def _public(device: DeviceRecord) -> DevicePublic:
    return DevicePublic.model_validate(device, from_attributes=True)


_READ = error_responses(Unauthenticated)
_ADMIN = (Unauthenticated, Forbidden)


@router.get("", responses=_READ)
def read_devices(
    conn: ConnDep,
    principal: PrincipalDep,
    *,
    province: Annotated[str | None, Query(max_length=64)] = None,
    sector: Annotated[str | None, Query(max_length=32)] = None,
    type_code: Annotated[str | None, Query(alias="type", max_length=64, description="device type code")] = None,
    status: Annotated[Literal["active", "decommissioned"] | None, Query()] = None,
    health: Annotated[Literal["online", "silent", "offline", "unknown"] | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=100, description="search in the id and the name")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    offset: Offset = 0,
) -> list[DevicePublic]:
    """The devices within the caller's scope, by id, filtered by province, sector, type, status, health state and a
    search in the id and name."""
    devices = list_devices(
        conn,
        scope=principal.scope,
        province=province,
        sector=sector,
        type_code=type_code,
        status=status,
        health=health,
        search=q,
        limit=limit,
        offset=offset,
    )
    return [_public(d) for d in devices]


@router.post("", status_code=201, responses=error_responses(*_ADMIN, Conflict, InvalidRequest))
def create_device(conn: ConnDep, state: StateDep, principal: AdminDep, body: DeviceCreate) -> DeviceOnboarding:
    """Register a device (admin, in a province and sector of the admin's scope, else 403) and answer with what the
    device is configured with: secret (shown once), broker, topics, metrics and a ready `mosquitto_pub` line.
    The type and province may be given by any of their names ('fridge', 'Huế'); an unknown one is a 422 that
    suggests the closest."""
    type_code = resolve_type_code(state.catalog, body.type_code)
    created = provision_device(
        conn,
        device_id=body.device_id,
        type_code=type_code,
        province=resolve_province_code(load_provinces(), body.province),
        catalog=state.catalog,
        actor=principal.actor,
        scope=principal.scope,
        name=body.name,
        report_interval_s=body.report_interval_s,
        address=principal.address,
    )
    conn.commit()
    device_type = state.catalog.types[type_code]
    sheet = build_onboarding_sheet(
        created.device, device_type=device_type, secret=created.secret, broker=state.device_broker
    )
    return DeviceOnboarding(
        **_public(created.device).model_dump(),
        secret=created.secret,
        username=sheet.username,
        broker_url=sheet.broker.url,
        broker_tls_url=sheet.broker.tls_url,
        ca_file=None if sheet.broker.ca_file is None else str(sheet.broker.ca_file),
        topics=TopicsPublic(
            telemetry=sheet.topics.telemetry,
            telemetry_senml=sheet.topics.telemetry_senml,
            status=sheet.topics.status,
            cmd=sheet.topics.command,
            cmd_ack=sheet.topics.command_ack,
        ),
        metrics=[MetricPublic.model_validate(m, from_attributes=True) for m in sheet.metrics],
        effective_report_interval_s=sheet.report_interval_s,
        sample_payload=sheet.sample_payload,
        mosquitto_pub=sheet.mosquitto_pub,
    )


@router.post("/import", responses=error_responses(*_ADMIN, InvalidRequest))
def import_devices(
    conn: ConnDep,
    state: StateDep,
    principal: AdminDep,
    csv_text: Annotated[str, Body(media_type="text/csv", max_length=IMPORT_MAX_BYTES)],
) -> ImportReport:
    """Bulk provisioning: a CSV `device_id,type_code,province[,name][,report_interval_s]`; each row reported
    (a row outside the admin's scope fails with its reason)."""
    rows = import_devices_csv(
        conn, csv_text, catalog=state.catalog, actor=principal.actor, scope=principal.scope, address=principal.address
    )
    conn.commit()
    public = [
        ImportRowPublic(row=r.row, device_id=r.device_id, ok=r.ok, reason=r.reason, secret=r.secret or None)
        for r in rows
    ]
    ok = sum(1 for r in rows if r.ok)
    return ImportReport(ok=ok, failed=len(rows) - ok, rows=public)


@router.get("/{device_id}", responses=error_responses(Unauthenticated, NotFound))
def read_device(conn: ConnDep, principal: PrincipalDep, device_id: str) -> DeviceDetail:
    """One device with its latest value per metric (a bus tracker's position is a location read: audited)."""
    device = get_device(conn, device_id, scope=principal.scope)
    values = query_latest(conn, scope=principal.scope, device_id=device_id)
    if record_location_read(
        conn,
        actor=principal.actor,
        address=principal.address,
        device_id=device_id,
        sector=device.sector,
        metrics={v.metric for v in values},
        via="device",
    ):
        conn.commit()
    latest = [LatestPublic.model_validate(v, from_attributes=True) for v in values]
    return DeviceDetail(**_public(device).model_dump(), latest=latest)


@router.patch("/{device_id}", responses=error_responses(*_ADMIN, NotFound, Conflict, InvalidRequest))
def patch_device(conn: ConnDep, principal: AdminDep, device_id: str, body: DeviceUpdate) -> DevicePublic:
    """Rename, move (within the admin's scope, else 403; the province by any of its names, as in create) or change
    the report interval."""
    province = None if body.province is None else resolve_province_code(load_provinces(), body.province)
    changes: dict[str, object] = {"name": body.name, "province": province}
    if "report_interval_s" in body.model_fields_set:
        changes["report_interval_s"] = body.report_interval_s
    device = update_device(
        conn,
        device_id,
        actor=principal.actor,
        scope=principal.scope,
        address=principal.address,
        **changes,  # type: ignore[arg-type]
    )
    conn.commit()
    return _public(device)


@router.post("/{device_id}/decommission", responses=error_responses(*_ADMIN, NotFound, Conflict))
def decommission(conn: ConnDep, principal: AdminDep, device_id: str, body: RevokeRequest) -> DevicePublic:
    device = decommission_device(
        conn, device_id, actor=principal.actor, scope=principal.scope, reason=body.reason, address=principal.address
    )
    conn.commit()
    return _public(device)


@router.post("/{device_id}/secret", responses=error_responses(*_ADMIN, NotFound, Conflict))
def rotate(conn: ConnDep, principal: AdminDep, device_id: str) -> SecretPublic:
    """A new secret (the old one stops working and its session is cut off at the next broker sync)."""
    secret = rotate_secret(conn, device_id, actor=principal.actor, scope=principal.scope, address=principal.address)
    conn.commit()
    return SecretPublic(device_id=device_id, secret=secret)


@router.post("/{device_id}/revoke", responses=error_responses(*_ADMIN, NotFound))
def revoke(conn: ConnDep, principal: AdminDep, device_id: str, body: RevokeRequest) -> DevicePublic:
    device = revoke_secret(
        conn, device_id, actor=principal.actor, scope=principal.scope, reason=body.reason, address=principal.address
    )
    conn.commit()
    return _public(device)


@router.get("/{device_id}/audit", responses=error_responses(*_ADMIN, NotFound))
def read_audit(
    conn: ConnDep, principal: AdminDep, device_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[AuditPublic]:
    """The device's audit trail, newest first (admin: the audit log names people and their notes)."""
    get_device(conn, device_id, scope=principal.scope)  # UnknownDevice when it is not registered or not in scope
    entries = list_audit(conn, scope=principal.scope, target=device_id, limit=limit)
    return [AuditPublic.model_validate(e, from_attributes=True) for e in entries]


@router.get("/{device_id}/quarantine", responses=error_responses(Unauthenticated, NotFound))
def read_device_quarantine(
    conn: ConnDep,
    principal: PrincipalDep,
    device_id: str,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[QuarantinePublic]:
    """The device's most recent refused messages with their reasons, newest first (the raw bytes stay with the
    admins: GET /quarantine/{id})."""
    get_device(conn, device_id, scope=principal.scope)  # UnknownDevice when unknown or not in scope
    entries = list_quarantined(conn, QuarantineFilter(scope=principal.scope, device_id=device_id), limit=limit)
    return [QuarantinePublic.model_validate(e, from_attributes=True) for e in entries]
