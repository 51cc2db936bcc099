"""`ioc ingest --workers N`: N worker processes in one MQTT 5 shared subscription, restarted when they die.

Each worker keeps its client id across restarts, so a restarted worker resumes its persistent session and
receives the messages its predecessor had not acknowledged.
"""

from __future__ import annotations

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

from devices.catalog import load_catalog
from ingest.worker import IngestConfig, IngestWorker

_LOGGER = logging.getLogger(__name__)

RESTART_DELAY_S = 1.0
JOIN_TIMEOUT_S = 15.0


def _worker_main(config: IngestConfig, log_level: str, ready: EventType) -> None:
    logging.basicConfig(level=log_level, format="%(asctime)s %(processName)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    IngestWorker(config, catalog=load_catalog(), on_ready=ready.set).run(stop)


def worker_config(base: IngestConfig, index: int, *, workers: int) -> IngestConfig:
    return dataclasses.replace(base, client_id=f"{base.client_id}-{index}", shared_subscription=workers > 1)


class IngestSupervisor:
    """Starts, watches and stops the worker processes; `run(stop)` blocks until `stop` is set."""

    def __init__(self, base: IngestConfig, *, workers: int, metrics_dir: Path, log_level: str = "INFO") -> None:
        self._base = base
        self._workers = workers
        self._metrics_dir = metrics_dir
        self._log_level = log_level
        self._processes: dict[int, multiprocessing.process.BaseProcess] = {}
        self._context = multiprocessing.get_context("spawn")
        self._ready: dict[int, EventType] = {}

    @property
    def pids(self) -> dict[int, int | None]:
        return {index: proc.pid for index, proc in self._processes.items()}

    def wait_ready(self, timeout_s: float) -> bool:
        """True once every worker is connected and subscribed."""
        deadline = time.monotonic() + timeout_s
        return all(event.wait(max(0.0, deadline - time.monotonic())) for event in list(self._ready.values()))

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

    def start(self) -> None:
        # prometheus_client's multiprocess mode: the children write here, the metrics endpoint reads it.
        self._metrics_dir.mkdir(parents=True, exist_ok=True)
        for stale in self._metrics_dir.glob("*.db"):
            stale.unlink()
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(self._metrics_dir)
        for index in range(self._workers):
            self._start(index)

    def watch(self, stop: threading.Event) -> None:
        while not stop.wait(0.5):
            for index, proc in list(self._processes.items()):
                if not proc.is_alive():
                    _LOGGER.warning("ingest worker %d exited with %s; restarting", index, proc.exitcode)
                    from prometheus_client import multiprocess

                    if proc.pid is not None:
                        multiprocess.mark_process_dead(proc.pid)  # type: ignore[no-untyped-call]
                    time.sleep(RESTART_DELAY_S)
                    self._start(index)

    def stop(self) -> None:
        for proc in self._processes.values():
            if proc.is_alive():
                proc.terminate()
        for proc in self._processes.values():
            proc.join(JOIN_TIMEOUT_S)
            if proc.is_alive():
                proc.kill()
                proc.join()
        self._processes.clear()

    def run(self, stop: threading.Event) -> None:
        self.start()
        try:
            self.watch(stop)
        finally:
            self.stop()
