"""Maintenance windows as the scorer consults them, pure: whether a device is inside planned work at a reading
time. The windows themselves are stored and changed through `store.maintenance`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from analytics.scoring import DeviceInfo


@dataclass(frozen=True, slots=True)
class Window:
    """A window's target and span (epoch seconds, [start, end)); None in a target field matches anything."""

    start: float
    end: float
    device_id: str | None = None
    site: str | None = None
    province: str | None = None
    sector: str | None = None

    def covers(self, device_id: str, info: DeviceInfo, ts: float) -> bool:
        if not self.start <= ts < self.end:
            return False
        if self.device_id is not None:
            return device_id == self.device_id
        if self.site is not None and info.site != self.site:
            return False
        if self.province is not None and info.province != self.province:
            return False
        return self.sector is None or info.sector == self.sector


class MaintenanceIndex:
    """The windows the job knows of, looked up per device (windows of one device) and for the rest."""

    __slots__ = ("_by_device", "_wide")

    def __init__(self, windows: Iterable[Window] = ()) -> None:
        self._by_device: dict[str, list[Window]] = {}
        self._wide: list[Window] = []
        for window in windows:
            if window.device_id is not None:
                self._by_device.setdefault(window.device_id, []).append(window)
            else:
                self._wide.append(window)

    def __len__(self) -> int:
        return len(self._wide) + sum(len(w) for w in self._by_device.values())

    def covers(self, device_id: str, info: DeviceInfo, ts: float) -> bool:
        for window in self._by_device.get(device_id, ()):
            if window.covers(device_id, info, ts):
                return True
        return any(window.covers(device_id, info, ts) for window in self._wide)
