"""Fixtures for tests that talk to a real Mosquitto and a real TimescaleDB, started by the embedded runtime.

One PostgreSQL cluster serves the session and each test gets its own database; each test gets its own broker
(they start in milliseconds), so persistent sessions and retained messages never leak between tests.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from core.lifecycle import running_in_thread
from core.settings import REPO_ROOT
from devices.catalog import Catalog, load_catalog
from devices.registry import DeviceRecord, create_device
from devices.schema import migrate_database
from embedded.runtime import EmbeddedMosquitto, EmbeddedPostgres
from ingest.worker import IngestConfig, IngestWorker
from protocol.broker_url import parse_broker_url

_COUNTER = itertools.count()


def _remove_abandoned_runtimes(parent: Path) -> None:
    """Stop and remove the services of test sessions that died without tearing down (killed, timed out)."""
    for folder in parent.glob("test-*"):
        pid = folder.name.removeprefix("test-")
        if not pid.isdigit() or Path(f"/proc/{pid}").exists():
            continue
        for data in folder.glob("**/data/PG_VERSION"):
            pg = EmbeddedPostgres(data.parent.parent)
            pg.stop(mode="immediate")
        for conf in folder.glob("*/mosquitto.conf"):
            EmbeddedMosquitto(conf.parent).stop_abandoned()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def runtime_root() -> Iterator[Path]:
    _remove_abandoned_runtimes(REPO_ROOT / ".runtime")
    root = REPO_ROOT / ".runtime" / f"test-{os.getpid()}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres(runtime_root: Path) -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres(runtime_root / "postgres") as pg:
        yield pg


@dataclass(frozen=True, slots=True)
class ScratchDatabase:
    url: str
    name: str

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.url, autocommit=True)

    def scalar(self, sql: str, params: tuple[object, ...] = ()) -> Any:
        with self.connect() as conn:
            row = conn.execute(sql.encode(), params).fetchone()
            assert row is not None
            return row[0]


@pytest.fixture
def database(postgres: EmbeddedPostgres, request: pytest.FixtureRequest) -> Iterator[ScratchDatabase]:
    """A fresh, migrated database of this test's own."""
    name = f"t{os.getpid()}_{next(_COUNTER)}"
    admin_url = postgres.url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    url = postgres.url.rsplit("/", 1)[0] + f"/{name}"
    migrate_database(url)
    yield ScratchDatabase(url=url, name=name)
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@pytest.fixture
def broker(runtime_root: Path) -> Iterator[EmbeddedMosquitto]:
    with EmbeddedMosquitto(runtime_root / f"mosquitto-{next(_COUNTER)}") as mq:
        yield mq


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture
def register(database: ScratchDatabase, catalog: Catalog) -> Callable[..., DeviceRecord]:
    """Register a device in this test's database: `register("dev-1", "soil_probe", "can-tho")`."""

    def _register(device_id: str, type_code: str, province: str = "can-tho") -> DeviceRecord:
        with psycopg.connect(database.url) as conn:
            record = create_device(conn, device_id=device_id, type_code=type_code, province=province, catalog=catalog)
            conn.commit()
        return record

    return _register


class RunningIngest:
    """An ingest worker on a thread of this test process."""

    def __init__(self, config: IngestConfig, catalog: Catalog) -> None:
        self.worker = IngestWorker(config, catalog=catalog)
        self._running = contextlib.ExitStack()

    def __enter__(self) -> RunningIngest:
        with contextlib.ExitStack() as stack:
            self.thread = stack.enter_context(running_in_thread(self.worker.run, name="ingest-test"))
            assert self.worker.wait_connected(15), "ingest did not connect to the broker"
            self._running = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running.close()
        assert not self.thread.is_alive(), "ingest worker did not stop"


@pytest.fixture
def ingest_config(database: ScratchDatabase, broker: EmbeddedMosquitto) -> IngestConfig:
    return IngestConfig(
        database_url=database.url,
        broker=parse_broker_url(broker.url),
        client_id=f"ingest-test-{next(_COUNTER)}",
        batch_max_wait_s=0.05,
    )


@pytest.fixture
def run_ingest(ingest_config: IngestConfig, catalog: Catalog) -> Callable[[], RunningIngest]:
    return lambda: RunningIngest(ingest_config, catalog)


def wait_for(predicate: Callable[[], bool], *, timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


class ApiServer:
    """The real API served by uvicorn on a free port, on a thread of this test process."""

    def __init__(self, database_url: str, *, mqtt_url: str | None = None) -> None:
        import uvicorn

        from api.app import create_app
        from core.settings import Settings
        from embedded.runtime import find_free_port

        self.port = find_free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        app = create_app(Settings(), database_url=database_url, mqtt_url=mqtt_url)
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="api-test", daemon=True)

    def __enter__(self) -> httpx.Client:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout_s=20, what="API started")
        self.client = httpx.Client(base_url=self.base_url, timeout=30)
        return self.client

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def api(database: ScratchDatabase) -> Callable[[], ApiServer]:
    return lambda: ApiServer(database.url)
