"""Unknown bearer tokens per client address, in a sliding window, in this process's memory.

Why in memory, unlike failed logins (which are counted in `login_attempts`): a guessed token costs one indexed
lookup, so the limiter exists to stop floods, and writing a row per bad request would let the flood write to the
database. A token is 192 random bits, so even one process per CPU, each allowing its own few guesses a minute,
leaves guessing hopeless. Only unknown tokens count: an expired or revoked one is a client that must log in again,
not a guess. The clock is passed in (monotonic seconds)."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Final

# Addresses remembered at most; the least recently failing are forgotten first.
ADDRESSES_MAX: Final = 10_000


class UnknownTokenLimiter:
    """How many unknown tokens each address sent in the last `window_s` seconds; thread-safe (FastAPI runs
    dependencies on a thread pool)."""

    def __init__(self, *, addresses_max: int = ADDRESSES_MAX) -> None:
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._addresses_max = addresses_max
        self._lock = threading.Lock()

    def retry_after_s(self, address: str, *, now: float, limit: int, window_s: float) -> float | None:
        """None while `address` sent fewer than `limit` unknown tokens in the window, otherwise the seconds until
        it has sent fewer again."""
        with self._lock:
            times = self._failures.get(address)
            if times is None:
                return None
            while times and times[0] <= now - window_s:
                times.popleft()
            if not times:
                del self._failures[address]
                return None
            if len(times) < limit:
                return None
            return times[len(times) - limit] + window_s - now

    def record_unknown(self, address: str, *, now: float) -> None:
        with self._lock:
            times = self._failures.pop(address, None) or deque()
            times.append(now)
            self._failures[address] = times  # most recently failing last
            while len(self._failures) > self._addresses_max:
                self._failures.popitem(last=False)
