"""The data lifecycle job of the center: rollups every minute, retention every hour, on one thread with a pool of
its own; a failed run is logged and retried at the next tick, never fatal."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import psycopg

from core.errors import StorageError
from store.pool import Pool
from store.retention import RetentionPolicy, RetentionReport, apply_licensed_policies, apply_retention
from store.rollups import RollupResult, roll_up

_LOGGER = logging.getLogger(__name__)

# The first retention run waits for the first rollups (and for the center's start-up to settle).
FIRST_RETENTION_DELAY_S: Final = 30.0


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    policy: RetentionPolicy
    rollup_every_s: float = 60.0
    retention_every_s: float = 3600.0
    first_retention_delay_s: float = FIRST_RETENTION_DELAY_S


class LifecycleJob:
    """`run(stop)` until `stop` is set (core.lifecycle.running_in_thread)."""

    def __init__(self, config: LifecycleConfig, *, pool: Pool) -> None:
        self._config = config
        self._pool = pool
        self.last_rollup: RollupResult | None = None
        self.last_retention: RetentionReport | None = None
        self.runs = 0

    def run(self, stop: threading.Event) -> None:
        self._attempt("licensed policies", self._licensed_policies)
        next_rollup = time.monotonic()
        next_retention = next_rollup + self._config.first_retention_delay_s
        while not stop.is_set():
            now = time.monotonic()
            if now >= next_rollup:
                self._attempt("rollup", self._rollup)
                next_rollup = now + self._config.rollup_every_s
            if now >= next_retention:
                self._attempt("retention", self._retention)
                next_retention = now + self._config.retention_every_s
            self.runs += 1
            stop.wait(max(0.0, min(next_rollup, next_retention) - time.monotonic()))

    def _attempt(self, what: str, step: Callable[[], None]) -> None:
        try:
            step()
        except (psycopg.Error, StorageError) as exc:
            _LOGGER.warning("%s failed, will retry: %s", what, exc)

    def _licensed_policies(self) -> None:
        with self._pool.connection() as conn:
            conn.autocommit = True
            try:
                if apply_licensed_policies(conn, self._config.policy):
                    _LOGGER.info("Timescale license: continuous aggregate, compression and retention policies set")
            finally:
                conn.autocommit = False

    def _rollup(self) -> None:
        with self._pool.connection() as conn:
            conn.autocommit = True
            try:
                self.last_rollup = roll_up(conn)
            finally:
                conn.autocommit = False
        if self.last_rollup.minutes:
            _LOGGER.debug("rolled up %d minutes, %d hours", self.last_rollup.minutes, self.last_rollup.hours)

    def _retention(self) -> None:
        with self._pool.connection() as conn:
            conn.autocommit = True
            try:
                self.last_retention = apply_retention(conn, self._config.policy)
            finally:
                conn.autocommit = False
        for step in self.last_retention.steps:
            if step.removed:
                _LOGGER.info("retention: %s %d %s before %s", step.table, step.removed, step.unit, step.cutoff)
