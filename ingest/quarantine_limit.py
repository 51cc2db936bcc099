"""How much of a device's bad traffic quarantine keeps: per device and minute the first messages in full, then one
in N as a sample; the rest are only counted (`store.quarantine.add_suppressed`). Pure, no I/O."""

from __future__ import annotations

WINDOW_S = 60


class QuarantineLimiter:
    """`admit(device_key, now_s)` is True when this bad message is stored in full, False when it is only counted.

    One window per wall-clock minute, so counts line up with `quarantine_suppressed.window_start`."""

    def __init__(self, *, per_window: int, sample_every: int) -> None:
        self._per_window = per_window
        self._sample_every = sample_every
        self._window_start_s = -1
        self._seen: dict[str, int] = {}

    def window_start(self, now_s: float) -> int:
        return int(now_s // WINDOW_S) * WINDOW_S

    def admit(self, device_key: str, now_s: float) -> bool:
        start = self.window_start(now_s)
        if start != self._window_start_s:
            self._window_start_s = start
            self._seen.clear()  # a new minute: every device starts afresh (and the map never grows for long)
        seen = self._seen.get(device_key, 0) + 1
        self._seen[device_key] = seen
        if seen <= self._per_window:
            return True
        return (seen - self._per_window) % self._sample_every == 0
