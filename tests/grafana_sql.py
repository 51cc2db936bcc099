"""What Grafana does to a PostgreSQL panel's SQL before the database sees it, so that tests can run the
dashboards' queries on a real TimescaleDB without a Grafana server. Test helper only: production never expands.

Three steps, in Grafana's order (sources: Grafana's PostgreSQL datasource documentation, "Macros" and "Templating";
its frontend `SqlDatasource.interpolateVariable` and backend `sqleng.Interpolate` and
`pkg/tsdb/grafana-postgresql-datasource/macros.go`):

1. Template variables `$name`, `${name}`, `[[name]]` (frontend). A single-value variable is inserted as it is, with
   single quotes doubled and no quotes added (so the SQL writes `'$device'`); a multi-value or include-All variable
   becomes `'a','b'` (each value quoted, quotes doubled; "All" without a custom all value is every option), so
   the SQL writes `IN ($province)`. A `$name` that is no variable is left alone.
2. Global variables (backend): `$__interval_ms` → the interval in milliseconds, `$__interval` → its text (`1m`),
   `$__unixEpochFrom()` / `$__unixEpochTo()` → epoch seconds of the range.
3. Macros `$__name(args)` (backend; the arguments are everything up to the first `)`, split at commas, trimmed):
   `$__time(c)` → `c AS "time"`; `$__timeEpoch(c)` → `extract(epoch from c) as "time"`;
   `$__timeFilter(c)` → `c BETWEEN '<from>' AND '<to>'` (RFC 3339 UTC, fraction without trailing zeros);
   `$__timeFrom()` / `$__timeTo()` → `'<from>'` / `'<to>'`;
   `$__timeGroup(c, interval[, fill])` → `time_bucket('<seconds, 3 decimals>s',c)` when the datasource has
   TimescaleDB on (ours has), else `floor(extract(epoch from c)/<s>)*<s>`; followed directly by a comma it is
   taken as `$__timeGroupAlias` (Grafana's pre-5.3 compatibility); `$__timeGroupAlias(…)` adds ` AS "time"`;
   `$__unixEpochFilter(c)` → `c >= <from s> AND c <= <to s>`; `$__unixEpochNanoFilter(c)`, `$__unixEpochNanoFrom()`,
   `$__unixEpochNanoTo()` in nanoseconds; `$__unixEpochGroup(c, interval)` → `floor((c)/<s>)*<s>`, and its Alias.
   An unknown macro fails the query, as in Grafana.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

_MACRO: Final = re.compile(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)")
# Grafana's templateSrv: $var, [[var]] or [[var:fmt]], ${var} or ${var:fmt}.
_VARIABLE: Final = re.compile(r"\$(\w+)|\[\[(\w+?)(?::\w+)?\]\]|\$\{(\w+)(?::[^}]+)?\}")
_INTERVAL: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_S: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


class MacroError(ValueError):
    """A macro Grafana would refuse (unknown name, missing argument, bad interval)."""


@dataclass(frozen=True, slots=True)
class Variable:
    """A dashboard variable's chosen values; `quoted` for multi-value or include-All variables."""

    values: tuple[str, ...]
    quoted: bool


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime
    end: datetime
    interval: str = "1m"

    @property
    def interval_s(self) -> float:
        return parse_interval(self.interval)


def parse_interval(text: str) -> float:
    """`5m` → 300.0 (Grafana's gtime.ParseInterval for the units dashboards use; quotes around it are trimmed)."""
    match = _INTERVAL.fullmatch(text.strip().strip("'"))
    if match is None:
        raise MacroError(f"error parsing interval {text}")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def rfc3339(moment: datetime) -> str:
    """Go's time.RFC3339Nano in UTC: `2026-11-22T08:00:00.25Z`."""
    utc = moment.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def interpolate_variables(sql: str, variables: Mapping[str, Variable]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        variable = variables.get(name)
        if variable is None:
            return match.group(0)
        escaped = [value.replace("'", "''") for value in variable.values]
        if variable.quoted:
            return ",".join(f"'{value}'" for value in escaped)
        if len(escaped) != 1:
            raise MacroError(f"single-value variable {name!r} has {len(escaped)} values")
        return escaped[0]

    return _VARIABLE.sub(replace, sql)


def interpolate_globals(sql: str, time_range: TimeRange) -> str:
    interval_ms = round(time_range.interval_s * 1000)
    sql = sql.replace("$__interval_ms", str(interval_ms))
    sql = sql.replace("$__interval", time_range.interval)
    sql = sql.replace("$__unixEpochFrom()", str(int(time_range.start.timestamp())))
    return sql.replace("$__unixEpochTo()", str(int(time_range.end.timestamp())))


def expand_macros(sql: str, time_range: TimeRange, *, timescaledb: bool = True) -> str:
    def replace(match: re.Match[str]) -> str:
        name, raw = match.group(1), match.group(2)
        args = [arg.strip() for arg in raw.split(",")]
        if name == "__timeGroup" and sql[match.end() : match.end() + 1] == ",":
            name = "__timeGroupAlias"
        return _macro(name, args, time_range, timescaledb=timescaledb)

    return _MACRO.sub(replace, sql)


def _first(name: str, args: Sequence[str]) -> str:
    if not args or not args[0]:
        raise MacroError(f"missing time column argument for macro {name}")
    return args[0]


def _macro(name: str, args: Sequence[str], time_range: TimeRange, *, timescaledb: bool) -> str:
    start, end = time_range.start, time_range.end
    if name == "__time":
        return f'{_first(name, args)} AS "time"'
    if name == "__timeEpoch":
        return f'extract(epoch from {_first(name, args)}) as "time"'
    if name == "__timeFilter":
        return f"{_first(name, args)} BETWEEN '{rfc3339(start)}' AND '{rfc3339(end)}'"
    if name == "__timeFrom":
        return f"'{rfc3339(start)}'"
    if name == "__timeTo":
        return f"'{rfc3339(end)}'"
    if name in ("__timeGroup", "__timeGroupAlias", "__unixEpochGroup", "__unixEpochGroupAlias"):
        if len(args) < 2:
            raise MacroError(f"macro {name} needs time column and interval and optional fill value")
        seconds = parse_interval(args[1])
        if name.startswith("__unixEpoch"):
            grouped = f"floor(({args[0]})/{_go_float(seconds)})*{_go_float(seconds)}"
        elif timescaledb:
            grouped = f"time_bucket('{seconds:.3f}s',{args[0]})"
        else:
            grouped = f"floor(extract(epoch from {args[0]})/{_go_float(seconds)})*{_go_float(seconds)}"
        return grouped + (' AS "time"' if name.endswith("Alias") else "")
    if name == "__unixEpochFilter":
        column = _first(name, args)
        return f"{column} >= {int(start.timestamp())} AND {column} <= {int(end.timestamp())}"
    if name == "__unixEpochNanoFilter":
        column = _first(name, args)
        return f"{column} >= {_nanos(start)} AND {column} <= {_nanos(end)}"
    if name == "__unixEpochNanoFrom":
        return str(_nanos(start))
    if name == "__unixEpochNanoTo":
        return str(_nanos(end))
    raise MacroError(f'unknown macro "{name}"')


def _go_float(seconds: float) -> str:
    """Go's %v of a float64: 300 for 300.0, 0.5 for 0.5."""
    return str(int(seconds)) if seconds == int(seconds) else repr(seconds)


def _nanos(moment: datetime) -> int:
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def expand(sql: str, *, time_range: TimeRange, variables: Mapping[str, Variable], timescaledb: bool = True) -> str:
    """The SQL Grafana would send for a panel: variables, then globals, then macros."""
    return expand_macros(
        interpolate_globals(interpolate_variables(sql, variables), time_range), time_range, timescaledb=timescaledb
    )
