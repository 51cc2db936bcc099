"""Readings as CSV straight from the database (COPY … TO STDOUT), in chunks, for exports of any size."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from psycopg import sql

from store.pool import Conn
from store.scope import Scope

CHUNK_BYTES: Final = 256 * 1024


@dataclass(frozen=True, slots=True)
class ExportFilter:
    """Which readings to export (within a scope): a time range and optional province, sector, device, metric."""

    start: datetime
    end: datetime
    province: str | None = None
    sector: str | None = None
    device_id: str | None = None
    metric: str | None = None


def copy_readings_csv(conn: Conn, *, scope: Scope, wanted: ExportFilter) -> Iterator[bytes]:
    """CSV (header `ts,device_id,metric,value,quality,province,sector`), oldest first, in ~256 KiB chunks; memory
    stays flat whatever the number of rows."""
    clause, params = scope.where(table="d")
    conditions: list[sql.Composable] = [sql.SQL("r.ts >= %s AND r.ts < %s"), clause]
    values: list[object] = [wanted.start, wanted.end, *params]
    for table, column, value in (
        ("d", "province", wanted.province),
        ("d", "sector", wanted.sector),
        ("r", "device_id", wanted.device_id),
        ("r", "metric", wanted.metric),
    ):
        if value is not None:
            conditions.append(sql.SQL("{} = %s").format(sql.Identifier(table, column)))
            values.append(value)
    query = sql.SQL(
        "COPY (SELECT r.ts, r.device_id, r.metric, r.value, r.quality, d.province, d.sector "
        "FROM readings r JOIN devices d ON d.device_id = r.device_id WHERE {} ORDER BY r.ts, r.device_id, r.metric) "
        "TO STDOUT WITH (FORMAT csv, HEADER)"
    ).format(sql.SQL(" AND ").join(conditions))
    buffer = bytearray()
    with conn.cursor() as cur, cur.copy(query, values) as copy:
        for block in copy:
            buffer += block
            if len(buffer) >= CHUNK_BYTES:
                yield bytes(buffer)
                buffer.clear()
    if buffer:
        yield bytes(buffer)
