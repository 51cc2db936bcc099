"""Devices: list and read one, with its latest values."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel

from api.state import ConnDep
from devices.registry import get_device, list_devices
from ioc.errors import UnknownDevice
from store.readings import query_latest

router = APIRouter(prefix="/devices", tags=["devices"])


class DevicePublic(BaseModel):
    device_id: str
    type_code: str
    province: str
    sector: str
    name: str
    status: str
    created_at: datetime


class LatestPublic(BaseModel):
    metric: str
    ts: datetime
    value: float
    quality: int
    received_at: datetime


class DeviceDetail(DevicePublic):
    latest: list[LatestPublic]


@router.get("")
def read_devices(
    conn: ConnDep,
    province: str | None = None,
    sector: str | None = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[DevicePublic]:
    return [
        DevicePublic.model_validate(d, from_attributes=True)
        for d in list_devices(conn, province=province, sector=sector, limit=limit, offset=offset)
    ]


@router.get("/{device_id}")
def read_device(conn: ConnDep, device_id: str) -> DeviceDetail:
    try:
        device = get_device(conn, device_id)
    except UnknownDevice as exc:
        raise HTTPException(status_code=404, detail=f"unknown device {device_id!r}") from exc
    latest = [LatestPublic.model_validate(v, from_attributes=True) for v in query_latest(conn, device_id=device_id)]
    return DeviceDetail(**DevicePublic.model_validate(device, from_attributes=True).model_dump(), latest=latest)
