"""The daily province report: yesterday's KPIs per sector and every alarm raised, as two CSV files per province in
the configured folder (`IOC_REPORTS_DIR/<province>/<date>_kpis.csv`, `…_alarms.csv`), written once a day after
`IOC_REPORT_HOUR_LOCAL` (Asia/Ho_Chi_Minh). A report that exists is never rewritten; a missed day is caught up."""

from __future__ import annotations

import csv
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from pathlib import Path
from typing import Final
from zoneinfo import ZoneInfo

import psycopg

from api.federation.summary import build_summary
from store.kpi import alarms_raised, provinces_with_devices, readings_between
from store.pool import Conn, Pool
from store.scope import EVERYTHING

_LOGGER = logging.getLogger(__name__)

LOCAL_ZONE: Final = ZoneInfo("Asia/Ho_Chi_Minh")
CHECK_EVERY_S: Final = 60.0
KPI_COLUMNS: Final = (
    "date", "province", "sector", "devices", "online", "silent", "offline", "unknown",
    "open_critical", "open_major", "open_minor", "open_warning", "unacknowledged", "readings",
)  # fmt: skip
ALARM_COLUMNS: Final = (
    "id", "raised_at", "device_id", "sector", "metric", "kind", "severity", "status", "message",
    "acknowledged_by", "acknowledged_at", "cleared_at",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ReportConfig:
    folder: Path
    provinces: tuple[str, ...] = ()  # empty: every province with active devices
    hour_local: int = 6


def _write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    """Written whole or not at all (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    Path(tmp).replace(path)


def write_daily_report(conn: Conn, *, folder: Path, province: str, day: date) -> tuple[Path, Path]:
    """The report of `province` for the local calendar day `day`; returns the two files."""
    start = datetime.combine(day, day_time(0), tzinfo=LOCAL_ZONE).astimezone(UTC)
    end = start + timedelta(days=1)
    summary = build_summary(conn, province=province, scope=EVERYTHING, now=end)
    readings = readings_between(conn, province=province, start=start, end=end)
    kpis = [
        (
            day.isoformat(),
            province,
            s.sector,
            s.devices.total,
            s.devices.online,
            s.devices.silent,
            s.devices.offline,
            s.devices.unknown,
            s.open_alarms.critical,
            s.open_alarms.major,
            s.open_alarms.minor,
            s.open_alarms.warning,
            s.open_alarms.unacknowledged,
            readings.get(s.sector, 0),
        )
        for s in summary.sectors
    ]
    alarms = [
        (
            a.id,
            a.raised_at.isoformat(),
            a.device_id,
            a.sector,
            a.metric or "",
            a.kind,
            a.severity,
            a.status,
            a.message,
            a.acknowledged_by or "",
            a.acknowledged_at.isoformat() if a.acknowledged_at else "",
            a.cleared_at.isoformat() if a.cleared_at else "",
        )
        for a in alarms_raised(conn, province=province, start=start, end=end)
    ]
    kpi_path = folder / province / f"{day.isoformat()}_kpis.csv"
    alarm_path = folder / province / f"{day.isoformat()}_alarms.csv"
    _write_csv(alarm_path, ALARM_COLUMNS, alarms)
    _write_csv(kpi_path, KPI_COLUMNS, kpis)  # last: its presence marks the report done
    return kpi_path, alarm_path


class DailyReporter:
    """Writes yesterday's report of each province once the local report hour has passed; `run(stop)`."""

    def __init__(self, config: ReportConfig, *, pool: Pool, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._pool = pool
        self._clock = clock

    def due_day(self) -> date | None:
        """Yesterday (local) once today's report hour has passed, else None."""
        now = datetime.fromtimestamp(self._clock(), tz=LOCAL_ZONE)
        if now.hour < self.config.hour_local:
            return None
        return now.date() - timedelta(days=1)

    def write_due(self) -> list[Path]:
        day = self.due_day()
        if day is None:
            return []
        written: list[Path] = []
        with self._pool.connection() as conn:
            provinces = self.config.provinces or tuple(provinces_with_devices(conn))
            for province in provinces:
                if (self.config.folder / province / f"{day.isoformat()}_kpis.csv").exists():
                    continue
                written.extend(write_daily_report(conn, folder=self.config.folder, province=province, day=day))
                _LOGGER.info("daily report of %s for %s written to %s", province, day, self.config.folder)
        return written

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.write_due()
            except psycopg.OperationalError as exc:
                _LOGGER.warning("daily report waits for the database: %s", exc)
            except OSError as exc:
                _LOGGER.warning("daily report cannot be written to %s: %s", self.config.folder, exc)
            stop.wait(CHECK_EVERY_S)
