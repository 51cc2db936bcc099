"""The one CSV format of a device roster: what `ioc devices export` and `ioc simulate --export-devices` write and
`ioc devices import` (and `POST /devices/import`) reads, so that a roster round-trips.

`device_id,type_code,province,sector,name,report_interval_s`: the first three are required on import; `sector`
follows from the type and is written for people and spreadsheets (on import it must match the type's);
`report_interval_s` empty means the type's interval. Secrets never appear in a roster: an import writes them to
a separate file `device_id,secret`, which `ioc simulate --credentials` reads.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, TextIO

from psycopg import sql

from store.pool import Conn
from store.scope import Scope

ROSTER_COLUMNS: Final = ("device_id", "type_code", "province", "sector", "name", "report_interval_s")
REQUIRED_COLUMNS: Final = ("device_id", "type_code", "province")
SECRETS_COLUMNS: Final = ("device_id", "secret")
# Column names of older files and what the roster calls them: named in the error, never guessed silently.
_RENAMED: Final = {"type": "type_code", "interval": "report_interval_s", "password": "secret (a separate file)"}
_STREAM_ROWS: Final = 2000


@dataclass(frozen=True, slots=True)
class RosterRow:
    """One device of a roster."""

    device_id: str
    type_code: str
    province: str
    sector: str
    name: str = ""
    report_interval_s: float | None = None


def write_roster(out: TextIO, rows: Iterable[RosterRow]) -> Iterator[RosterRow]:
    """Write the header, then each row as it is consumed (a generator, so a caller can show progress)."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ROSTER_COLUMNS)
    for row in rows:
        interval = "" if row.report_interval_s is None else f"{row.report_interval_s:g}"
        writer.writerow([row.device_id, row.type_code, row.province, row.sector, row.name, interval])
        yield row


def missing_columns_message(header: Iterable[str]) -> str | None:
    """What a header lacks, with a hint for columns an older file named differently; None when it has them."""
    names = list(header)
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if not missing:
        return None
    hints = [f"`{old}` is now `{new}`" for old, new in _RENAMED.items() if old in names and new.split()[0] in missing]
    found = ", ".join(names) or "nothing"
    hint = f"; {'; '.join(hints)} (a roster is {','.join(ROSTER_COLUMNS)})" if hints else ""
    return f"CSV header lacks {', '.join(missing)} (has {found}){hint}"


def count_active_devices(conn: Conn, *, scope: Scope, province: str | None = None, sector: str | None = None) -> int:
    condition, params = scope.where()
    row = conn.execute(
        sql.SQL(
            "SELECT count(*) FROM devices WHERE status = 'active' AND (%s::text IS NULL OR province = %s) "
            "AND (%s::text IS NULL OR sector = %s) AND {}"
        ).format(condition),
        [province, province, sector, sector, *params],
    ).fetchone()
    return 0 if row is None else int(row[0])


def iter_active_devices(
    conn: Conn, *, scope: Scope, province: str | None = None, sector: str | None = None
) -> Iterator[RosterRow]:
    """The active devices inside `scope` (a decommissioned one would come back to life on import), by id, streamed
    from the server rather than held in memory."""
    condition, params = scope.where()
    query = sql.SQL(
        "SELECT device_id, type_code, province, sector, name, report_interval_s FROM devices "
        "WHERE status = 'active' AND (%s::text IS NULL OR province = %s) AND (%s::text IS NULL OR sector = %s) "
        "AND {} ORDER BY device_id"
    ).format(condition)
    with conn.cursor() as cur:
        for device_id, type_code, prov, sect, name, interval in cur.stream(
            query, [province, province, sector, sector, *params], size=_STREAM_ROWS
        ):
            yield RosterRow(
                device_id=str(device_id),
                type_code=str(type_code),
                province=str(prov),
                sector=str(sect),
                name=str(name or ""),
                report_interval_s=None if interval is None else float(interval),
            )
