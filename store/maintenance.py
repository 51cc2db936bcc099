"""Maintenance windows (migration 0006): planned work during which no alarm is raised for the devices a window
covers. Every read and change applies the caller's scope inside its SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from psycopg import sql

from core.errors import InvalidRequest, NotFound
from store.pool import Conn
from store.scope import Scope

_COLUMNS: Final = (
    "id, device_id, site, province, sector, starts_at, ends_at, reason, created_by, created_at, cancelled_by, "
    "cancelled_at"
)


class WindowNotFound(NotFound):
    """No maintenance window has this id (or it is outside the caller's scope)."""


class UnknownWindowDevice(InvalidRequest):
    """A window for a device that is not registered."""


@dataclass(frozen=True, slots=True)
class MaintenanceWindow:
    id: int
    device_id: str | None
    site: str | None
    province: str | None
    sector: str | None
    starts_at: datetime
    ends_at: datetime
    reason: str
    created_by: str
    created_at: datetime
    cancelled_by: str | None
    cancelled_at: datetime | None

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for name in self.__slots__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return out


def _window(row: tuple[object, ...]) -> MaintenanceWindow:
    return MaintenanceWindow(*row)  # type: ignore[arg-type]


def create_window(
    conn: Conn,
    *,
    device_id: str | None,
    site: str | None,
    province: str | None,
    sector: str | None,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    by: str,
) -> MaintenanceWindow:
    """Record a window. A device's window takes the device's province and sector (its scope); the caller checks
    that the window lies inside its own scope first (`window_in_scope`)."""
    if device_id is not None:
        row = conn.execute("SELECT province, sector FROM devices WHERE device_id = %s", (device_id,)).fetchone()
        if row is None:
            raise UnknownWindowDevice(f"no device {device_id}")
        province, sector = str(row[0]), str(row[1])
    created = conn.execute(
        f"INSERT INTO maintenance_windows (device_id, site, province, sector, starts_at, ends_at, reason, "
        f"created_by) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
        (device_id, site, province, sector, starts_at, ends_at, reason, by),
    ).fetchone()
    assert created is not None
    return _window(created)


def device_place(conn: Conn, device_id: str) -> tuple[str, str] | None:
    """(province, sector) of a registered device, None when there is none."""
    row = conn.execute("SELECT province, sector FROM devices WHERE device_id = %s", (device_id,)).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def list_windows(
    conn: Conn, *, scope: Scope, active_at: datetime | None = None, include_cancelled: bool = False, limit: int = 500
) -> list[MaintenanceWindow]:
    """Windows inside `scope`, latest start first: those covering `active_at` when given, the cancelled ones only
    when asked."""
    in_scope, scope_params = scope.where()
    rows = conn.execute(
        sql.SQL(
            "SELECT {} FROM maintenance_windows WHERE {} AND (%s OR cancelled_at IS NULL) "
            "AND (%s::timestamptz IS NULL OR (starts_at <= %s AND ends_at > %s)) "
            "ORDER BY starts_at DESC, id DESC LIMIT %s"
        ).format(sql.SQL(_COLUMNS), in_scope),
        [*scope_params, include_cancelled, active_at, active_at, active_at, limit],
    ).fetchall()
    return [_window(r) for r in rows]


def get_window(conn: Conn, window_id: int, *, scope: Scope) -> MaintenanceWindow:
    in_scope, scope_params = scope.where()
    row = conn.execute(
        sql.SQL("SELECT {} FROM maintenance_windows WHERE id = %s AND {}").format(sql.SQL(_COLUMNS), in_scope),
        [window_id, *scope_params],
    ).fetchone()
    if row is None:
        raise WindowNotFound(f"no maintenance window {window_id}")
    return _window(row)


def cancel_window(conn: Conn, window_id: int, *, by: str, now: datetime, scope: Scope) -> MaintenanceWindow:
    """End a window early (or call off one that has not begun): it stops suppressing alarms. Cancelling a
    cancelled window changes nothing."""
    in_scope, scope_params = scope.where()
    row = conn.execute(
        sql.SQL(
            "UPDATE maintenance_windows SET cancelled_by = coalesce(cancelled_by, %s), "
            "cancelled_at = coalesce(cancelled_at, %s) WHERE id = %s AND {} RETURNING {}"
        ).format(in_scope, sql.SQL(_COLUMNS)),
        [by, now, window_id, *scope_params],
    ).fetchone()
    if row is None:
        raise WindowNotFound(f"no maintenance window {window_id}")
    return _window(row)


def windows_ending_after(conn: Conn, moment: datetime) -> list[MaintenanceWindow]:
    """Every window not cancelled that ends after `moment` (what the analytics job suppresses with)."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM maintenance_windows WHERE cancelled_at IS NULL AND ends_at > %s ORDER BY id",
        (moment,),
    ).fetchall()
    return [_window(r) for r in rows]
