"""The push job: every period it snapshots each configured province into the outbox, and it sends what is due to
the national endpoint, in order, with an `Idempotency-Key` per snapshot and exponential backoff while the endpoint
is unreachable. Nothing is lost while it is down: snapshots wait in the database."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import httpx
import psycopg

from api.federation.summary import build_summary
from store.federation import claim_due_snapshots, enqueue_snapshot, mark_delivered, mark_failed
from store.kpi import provinces_with_devices
from store.pool import Pool
from store.scope import EVERYTHING

_LOGGER = logging.getLogger(__name__)

BACKOFF_FIRST_S: Final = 2.0
LEASE_S: Final = 60.0
TICK_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class PushConfig:
    url: str
    provinces: tuple[str, ...]  # empty: every province with active devices
    period_s: float = 300.0
    token: str | None = None
    timeout_s: float = 10.0
    backoff_first_s: float = BACKOFF_FIRST_S
    backoff_max_s: float = 600.0

    def __repr__(self) -> str:  # never print the token
        return f"PushConfig(url={self.url!r}, provinces={self.provinces!r}, period_s={self.period_s})"


def backoff_s(attempts: int, *, first_s: float = BACKOFF_FIRST_S, most_s: float) -> float:
    """Seconds before the next try after `attempts` failed ones: 2, 4, 8 … capped at `most_s`."""
    return float(min(most_s, first_s * 2 ** max(0, attempts)))


class FederationPusher:
    """Owns the snapshot schedule and the delivery loop; `run(stop)` until stopped."""

    def __init__(
        self,
        config: PushConfig,
        *,
        pool: Pool,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._pool = pool
        self._client = client or httpx.Client(timeout=config.timeout_s)
        self._clock = clock
        self.delivered = 0

    def period_start(self, now_s: float) -> datetime:
        start = now_s - now_s % self.config.period_s
        return datetime.fromtimestamp(start, tz=UTC)

    def take_snapshots(self, provinces: Sequence[str] | None = None) -> int:
        """This period's snapshot of each province, once; returns how many were new."""
        period = self.period_start(self._clock())
        added = 0
        with self._pool.connection() as conn:
            for province in provinces or self.config.provinces or provinces_with_devices(conn):
                summary = build_summary(conn, province=province, scope=EVERYTHING)
                key = f"{province}:{period.isoformat()}"
                payload = summary.model_dump(mode="json") | {"period_start": period.isoformat()}
                added += enqueue_snapshot(
                    conn, province=province, period_start=period, idempotency_key=key, payload=payload
                )
        return added

    def deliver_due(self) -> int:
        """Send what is due, oldest first; stop at the first failure so snapshots arrive in order."""
        with self._pool.connection() as conn:
            due = claim_due_snapshots(conn, lease_s=LEASE_S)
        sent = 0
        headers = {"Content-Type": "application/json"}
        if self.config.token:
            headers["Authorization"] = f"Bearer {self.config.token}"
        for index, entry in enumerate(due):
            error = self._send(entry.payload, headers={**headers, "Idempotency-Key": entry.idempotency_key})
            with self._pool.connection() as conn:
                if error is None:
                    mark_delivered(conn, entry.id)
                    sent += 1
                    continue
                retry = backoff_s(entry.attempts, first_s=self.config.backoff_first_s, most_s=self.config.backoff_max_s)
                _LOGGER.warning(
                    "federation: %s not delivered (%s); next try in %.0f s", entry.idempotency_key, error, retry
                )
                for waiting in due[index:]:  # the rest keep their order behind it
                    mark_failed(conn, waiting.id, error=error if waiting is entry else "waiting", retry_in_s=retry)
            break
        self.delivered += sent
        return sent

    def _send(self, payload: str, *, headers: dict[str, str]) -> str | None:
        """None when the endpoint took the snapshot (2xx, or 409 = it has it already), else what went wrong."""
        try:
            response = self._client.post(self.config.url, content=payload, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if response.is_success or response.status_code == 409:
            return None
        return f"HTTP {response.status_code}"

    def run(self, stop: threading.Event) -> None:
        _LOGGER.info(
            "federation push to %s every %.0f s for %s", self.config.url, self.config.period_s, self.config.provinces
        )
        while not stop.is_set():
            try:
                self.take_snapshots()
                self.deliver_due()
            except psycopg.OperationalError as exc:  # the database is away: the outbox keeps everything, try again
                _LOGGER.warning("federation push waits for the database: %s", exc)
            stop.wait(TICK_S)
        self._client.close()
