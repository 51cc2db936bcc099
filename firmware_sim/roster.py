"""Which devices a simulated fleet has: generated ids, types and provinces; credentials read from CSV (the roster
itself is written in the registry's format, by `ioc simulate --export-devices`)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from core.errors import IocError
from firmware_sim.firmware import SimDevice
from firmware_sim.models import MODELS, TYPE_CODES, model_for

DEFAULT_PROVINCES: Final = (
    "can-tho",
    "ho-chi-minh",
    "ha-noi",
    "an-giang",
    "dong-thap",
    "ca-mau",
    "vinh-long",
    "da-nang",
    "hai-phong",
    "khanh-hoa",
)
DEFAULT_INTERVAL_S: Final = 10.0


class SimulateError(IocError):
    """A fleet that cannot be built as asked (unknown type, bad credentials file)."""


def build_devices(
    count: int,
    *,
    types: Sequence[str] = TYPE_CODES,
    provinces: Sequence[str] = DEFAULT_PROVINCES,
    prefix: str = "sim",
) -> list[SimDevice]:
    """`count` devices cycling through `types` and spread over `provinces`; ids like `sim-soil-probe-00042`."""
    if not types or not provinces:
        raise SimulateError("need at least one device type and one province")
    for code in types:
        if code not in MODELS:
            raise SimulateError(f"unknown device type {code!r}; known: {', '.join(TYPE_CODES)}")
    devices = []
    for i in range(count):
        code = types[i % len(types)]
        province = provinces[(i // len(types)) % len(provinces)]
        devices.append(
            SimDevice(
                device_id=f"{prefix}-{code.replace('_', '-')}-{i:05d}",
                type_code=code,
                province=province,
                sector=model_for(code).sector,
            )
        )
    return devices


def read_credentials(path: Path) -> list[tuple[str, str, str | None, str | None, str | None]]:
    """Rows of device_id,password[,province,sector,type]; a header row starting with device_id is skipped."""
    rows = []
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            for row in csv.reader(fh):
                if not row or row[0].strip().lower() in ("device_id", "") or row[0].startswith("#"):
                    continue
                if len(row) < 2:
                    raise SimulateError(f"{path}: each row needs device_id,password")
                extra = [c.strip() or None for c in row[2:5]] + [None] * (3 - len(row[2:5]))
                rows.append((row[0].strip(), row[1].strip(), extra[0], extra[1], extra[2]))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SimulateError(f"cannot read the credentials file {path}: {exc}") from exc
    return rows


def apply_credentials(
    devices: list[SimDevice], rows: Sequence[tuple[str, str, str | None, str | None, str | None]]
) -> list[SimDevice]:
    """Passwords onto generated devices by id; rows with province, sector and type define devices themselves."""
    full = [r for r in rows if r[2] and r[3] and r[4]]
    if full:
        out = []
        for device_id, password, province, sector, type_code in full:
            assert province is not None and sector is not None and type_code is not None
            if type_code not in MODELS:
                raise SimulateError(f"credentials: unknown device type {type_code!r} for {device_id}")
            out.append(SimDevice(device_id, type_code, province, sector, password))
        return out
    passwords = {r[0]: r[1] for r in rows}
    return [
        SimDevice(d.device_id, d.type_code, d.province, d.sector, passwords.get(d.device_id, d.password))
        for d in devices
    ]
