"""The embedded services' supervisor: restarts the broker or the database this process owns when it exits,
with backoff, as `ingest.supervisor.IngestSupervisor` does for ingest workers."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

from core.errors import RuntimeServiceError
from core.lifecycle import running_in_thread

_LOGGER = logging.getLogger(__name__)

CHECK_INTERVAL_S = 0.5
FIRST_RETRY_S = 0.5
MAX_RETRY_S = 10.0
# Up this long without a restart: the next failure starts the backoff from the beginning.
STABLE_AFTER_S = 60.0


class Supervised(Protocol):
    name: str
    attached: bool

    def running(self) -> bool: ...

    def restart(self) -> None: ...


@dataclass(slots=True)
class _Backoff:
    delay_s: float = FIRST_RETRY_S
    next_try: float = 0.0
    restarted_at: float = 0.0


class ServiceSupervisor:
    """Owns the thread that watches the embedded services: `with ServiceSupervisor([pg, mq]) as sup:`.

    Services another process owns (attached) are that process's to restart and are left alone."""

    def __init__(self, services: Sequence[Supervised], *, check_interval_s: float = CHECK_INTERVAL_S) -> None:
        self._services = [s for s in services if not s.attached]
        self._check_interval_s = check_interval_s
        self._backoff = {id(s): _Backoff() for s in self._services}
        self.restarts: dict[str, int] = {s.name: 0 for s in self._services}
        self._running = contextlib.ExitStack()

    def __enter__(self) -> Self:
        self._running.enter_context(running_in_thread(self._watch, name="embedded-supervisor"))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._running.close()

    def _watch(self, stop: threading.Event) -> None:
        while not stop.wait(self._check_interval_s):
            for service in self._services:
                if stop.is_set():
                    return
                self._check(service)

    def _check(self, service: Supervised) -> None:
        backoff = self._backoff[id(service)]
        now = time.monotonic()
        if service.running():
            if backoff.restarted_at and now - backoff.restarted_at > STABLE_AFTER_S:
                backoff.delay_s, backoff.restarted_at = FIRST_RETRY_S, 0.0
            return
        if now < backoff.next_try:
            return
        _LOGGER.warning("embedded %s is not running: restarting it", service.name)
        try:
            service.restart()
        except (RuntimeServiceError, OSError) as exc:
            _LOGGER.warning("embedded %s did not restart (next try in %.1f s): %s", service.name, backoff.delay_s, exc)
        else:
            self.restarts[service.name] += 1
            backoff.restarted_at = time.monotonic()
            _LOGGER.info("embedded %s is back", service.name)
        backoff.next_try = time.monotonic() + backoff.delay_s
        backoff.delay_s = min(backoff.delay_s * 2, MAX_RETRY_S)
