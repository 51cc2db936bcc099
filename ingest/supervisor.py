"""Ingest worker processes (one direct subscription, or N in one MQTT 5 shared subscription), restarted when they die.

Each worker keeps its client id across restarts, so a restarted worker resumes its persistent session and
receives the messages its predecessor had not acknowledged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.process
import os
import signal
import threading
import time
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from core.errors import IocError
from core.lifecycle import running_in_thread
from devices.catalog import load_catalog
from ingest.jetstream_source import JetStreamSourceConfig
from ingest.worker import IngestConfig, IngestWorker
from protocol.broker_url import parse_broker_url

if TYPE_CHECKING:  # the worker processes import this module: pydantic stays out of them (~11 MB each)
    from core.settings import Settings

_LOGGER = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
RESTART_DELAY_S = 1.0
JOIN_TIMEOUT_S = 15.0


def _worker_main(config: IngestConfig, log_level: str, ready: EventType) -> None:
    logging.basicConfig(level=log_level, format="%(asctime)s %(processName)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    IngestWorker(config, catalog=load_catalog(), on_ready=ready.set).run(stop)


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def ingest_config(settings: Settings, *, database_url: str, mqtt_url: str) -> IngestConfig:
    """The ingest settings of `settings` for this broker and database."""
    return IngestConfig(
        database_url=database_url,
        broker=parse_broker_url(mqtt_url),
        client_id=settings.ingest_group,
        group=settings.ingest_group,
        batch_max_rows=settings.batch_max_rows,
        batch_max_wait_s=settings.batch_max_wait_ms / 1000,
        queue_max_messages=settings.queue_max_messages,
        max_payload_bytes=settings.max_payload_bytes,
        max_future_s=settings.max_future_skew_s,
        quarantine_per_minute=settings.quarantine_per_device_per_min,
        quarantine_sample_every=settings.quarantine_sample_every,
        quarantine_payload_max_bytes=settings.quarantine_payload_max_bytes,
        quarantine_retention_s=settings.quarantine_retention_days * 86400,
        jetstream=jetstream_config(settings) if settings.ingest_source == "jetstream" else None,
    )


def jetstream_config(settings: Settings) -> JetStreamSourceConfig:
    """The JetStream source of `settings` (IOC_INGEST_SOURCE=jetstream)."""
    if not settings.jetstream_servers:
        raise IocError('IOC_INGEST_SOURCE=jetstream needs IOC_JETSTREAM_SERVERS, e.g. ["nats://10.0.0.1:4222"]')
    password = settings.jetstream_password
    return JetStreamSourceConfig(
        servers=tuple(settings.jetstream_servers),
        username=settings.jetstream_user,
        password=None if password is None else password.get_secret_value(),
        durable=settings.jetstream_durable,
        ack_wait_s=settings.jetstream_ack_wait_s,
        stream_replicas=settings.jetstream_stream_replicas,
    )


def worker_config(base: IngestConfig, index: int, *, workers: int) -> IngestConfig:
    return dataclasses.replace(base, client_id=f"{base.client_id}-{index}", shared_subscription=workers > 1)


class IngestSupervisor:
    """Owns the worker processes and the thread that restarts them: `with IngestSupervisor(…) as ingest:` starts
    both, leaving the block stops the watcher first, then the workers."""

    def __init__(self, base: IngestConfig, *, workers: int, metrics_dir: Path, log_level: str = "INFO") -> None:
        self._base = base
        self._workers = workers
        if workers > 1 and base.jetstream is None:
            _LOGGER.warning(
                "%d ingest workers share one MQTT subscription: Mosquitto does not restore shared subscriptions "
                "after a restart, so messages can be lost then; IOC_INGEST_SOURCE=jetstream is the restart-safe "
                "way to run several workers (docs/scaling.md)",
                workers,
            )
        self._metrics_dir = metrics_dir
        self._log_level = log_level
        self._processes: dict[int, multiprocessing.process.BaseProcess] = {}
        self._context = multiprocessing.get_context("spawn")
        self._ready: dict[int, EventType] = {}
        self._running = contextlib.ExitStack()
        self._stopped: set[int] = set()  # workers that exited on a stop request (exit code 0)

    @property
    def pids(self) -> dict[int, int | None]:
        return {index: proc.pid for index, proc in self._processes.items()}

    def wait_ready(self, timeout_s: float) -> bool:
        """True once every worker is connected and subscribed."""
        deadline = time.monotonic() + timeout_s
        return all(event.wait(max(0.0, deadline - time.monotonic())) for event in list(self._ready.values()))

    def __enter__(self) -> Self:
        with contextlib.ExitStack() as stack:
            # The workers find their metrics folder in the environment they inherit; this process gets its own back.
            stack.callback(_restore_env, MULTIPROC_ENV, os.environ.get(MULTIPROC_ENV))
            stack.callback(self._stop_workers)
            self._start_workers()
            stack.enter_context(running_in_thread(self._watch, name="ingest-watch"))
            self._running = stack.pop_all()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._running.close()

    def _start(self, index: int) -> None:
        self._ready[index] = self._context.Event()
        proc = self._context.Process(
            target=_worker_main,
            args=(worker_config(self._base, index, workers=self._workers), self._log_level, self._ready[index]),
            name=f"ingest-{index}",
            daemon=False,
        )
        proc.start()
        self._processes[index] = proc

    def _start_workers(self) -> None:
        # prometheus_client's multiprocess mode: the children write here, the metrics endpoint reads it.
        self._metrics_dir.mkdir(parents=True, exist_ok=True)
        for stale in self._metrics_dir.glob("*.db"):
            stale.unlink()
        os.environ[MULTIPROC_ENV] = str(self._metrics_dir)
        for index in range(self._workers):
            self._start(index)

    def _watch(self, stop: threading.Event) -> None:
        from prometheus_client import multiprocess

        while not stop.wait(0.5):
            for index, proc in list(self._processes.items()):
                if proc.is_alive() or stop.is_set() or index in self._stopped:
                    continue
                if proc.exitcode == 0:
                    # A worker returns only when told to stop (SIGINT/SIGTERM), and Ctrl-C reaches the whole process
                    # group: stopping has begun and this process unwinds next. Not a crash, so not restarted.
                    _LOGGER.info("ingest worker %d stopped on request", index)
                    self._stopped.add(index)
                    continue
                _LOGGER.warning("ingest worker %d exited with %s; restarting", index, proc.exitcode)
                if proc.pid is not None:
                    multiprocess.mark_process_dead(proc.pid)  # type: ignore[no-untyped-call]
                time.sleep(RESTART_DELAY_S)
                self._start(index)

    def _stop_workers(self) -> None:
        for proc in self._processes.values():
            if proc.is_alive():
                proc.terminate()
        for proc in self._processes.values():
            proc.join(JOIN_TIMEOUT_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._processes.clear()
