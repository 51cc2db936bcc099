"""The center keeps running: the embedded broker killed with SIGKILL and the database stopped with
`pg_ctl -m immediate` while a device publishes come back by themselves, `/readyz` tells the outage while it lasts,
and every reading is stored exactly once; a passwordless login to the embedded database is refused."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from core.settings import Settings
from devices.access import sync_broker_access
from devices.catalog import Catalog
from devices.provisioning import provision_device
from devices.schema import migrate_database
from embedded.runtime import EmbeddedMosquitto, EmbeddedPostgres
from embedded.services import ServiceUrls, center_services
from ingest.worker import IngestConfig
from protocol.broker_url import parse_broker_url
from protocol.telemetry import encode_json
from protocol.topics import telemetry_topic
from store.scope import EVERYTHING
from tests.integration.conftest import ApiServer, RunningIngest, wait_for
from tests.integration.device_fixtures import DeviceClient

pytestmark = pytest.mark.integration

READINGS = 240
PUBLISH_EVERY_S = 0.05
BACK_WITHIN_S = 15.0
DEVICE = "soil-rs-001"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)


@pytest.fixture
def center(runtime_root: Path) -> Iterator[tuple[ServiceUrls, EmbeddedPostgres, EmbeddedMosquitto]]:
    """A private center's embedded services, supervised, as `ioc up` runs them."""
    settings = Settings(runtime_dir=runtime_root / "resilient-center")
    with center_services(settings) as urls:
        pg = EmbeddedPostgres(settings.runtime_dir / "postgres")
        pg.attach()
        mq = EmbeddedMosquitto(settings.runtime_dir / "mosquitto")
        mq.attach()
        yield urls, pg, mq


def _readyz(client: httpx.Client) -> dict[str, object]:
    response = client.get("/readyz")
    body = response.json()
    assert isinstance(body, dict)
    assert (response.status_code == 200) == body["ready"], body
    return body


def _part(client: httpx.Client, part: str) -> str:
    state = _readyz(client)[part]
    assert isinstance(state, dict)
    return str(state["state"])


def test_broker_and_database_come_back_by_themselves_and_every_reading_arrives_once(
    center: tuple[ServiceUrls, EmbeddedPostgres, EmbeddedMosquitto], catalog: Catalog
) -> None:
    urls, pg, mq = center
    migrate_database(urls.database_url)
    with psycopg.connect(urls.database_url) as conn:
        device = provision_device(
            conn,
            device_id=DEVICE,
            type_code="soil_probe",
            province="ninh-binh",
            catalog=catalog,
            actor="test",
            scope=EVERYTHING,
        )
        conn.commit()
        assert urls.broker_access is not None
        sync_broker_access(conn, urls.broker_access)
    ingest = IngestConfig(
        database_url=urls.database_url,
        broker=parse_broker_url(urls.role_url("ingest")),
        client_id="ingest-resilience",
        batch_max_wait_s=0.05,
    )
    sent = threading.Event()
    with (
        RunningIngest(ingest, catalog),
        ApiServer(urls.database_url, mqtt_url=urls.role_url("commands")) as api,
        DeviceClient(mq.device_url, device_id=DEVICE, password=device.secret) as dev,
    ):
        assert dev.connected.wait(10), dev.reasons
        wait_for(lambda: _readyz(api)["ready"] is True, timeout_s=20, what="ready before the outages")
        saved = mq.root / "mosquitto.db"
        wait_for(saved.exists, timeout_s=15, what="the broker saved ingest's subscription")

        def publish() -> None:
            topic = telemetry_topic("ninh-binh", "agriculture", DEVICE)
            for seq in range(READINGS):
                payload = encode_json({"soil_moisture": 20 + seq % 50}, seq=seq, ts=T0 + timedelta(seconds=seq))
                dev.client.publish(topic, payload, qos=1)  # paho queues while the broker is away
                sent.wait(PUBLISH_EVERY_S)
            sent.set()

        publisher = threading.Thread(target=publish, name="device-publisher")
        publisher.start()
        try:
            wait_for(lambda: _stored(urls) > 20, timeout_s=20, what="readings flowing")
            # The broker dies without a chance to save anything.
            assert mq.pid_from_file() is not None
            os.kill(mq.pid_from_file() or 0, signal.SIGKILL)
            wait_for(lambda: _part(api, "broker") == "down", timeout_s=10, what="/readyz reports the broker down")
            wait_for(lambda: _part(api, "broker") == "ok", timeout_s=BACK_WITHIN_S, what="broker back by itself")

            # The database crashes (PostgreSQL's immediate shutdown, SIGQUIT to the postmaster), not waited for: the
            # center's supervisor starts it again at once, and a waiting `pg_ctl stop` then waits on for the pid file
            # the new server writes (60 s, then a failure, on a loaded machine).
            assert pg.pid_from_file() is not None
            os.kill(pg.pid_from_file() or 0, signal.SIGQUIT)
            wait_for(lambda: _part(api, "database") == "down", timeout_s=10, what="/readyz reports the database down")
            # While it is down the API answers at once with 503, not after a long hang or with a 500.
            down = api.get("/healthz")
            assert down.status_code == 200  # liveness: the API process itself is fine
            wait_for(lambda: _part(api, "database") == "ok", timeout_s=BACK_WITHIN_S, what="database back by itself")
            publisher.join(60)
            assert sent.is_set()
            wait_for(lambda: _stored(urls) == READINGS, timeout_s=60, what="every reading stored")
        finally:
            sent.set()
            publisher.join(10)
        ready = _readyz(api)
        assert ready["database"] == {"state": "ok", "detail": ""}
        assert ready["broker"] == {"state": "ok", "detail": ""}
    with psycopg.connect(urls.database_url) as conn:
        rows = conn.execute(
            "SELECT count(*), count(DISTINCT ts), min(ts), max(ts) FROM readings WHERE device_id = %s", (DEVICE,)
        ).fetchone()
    assert rows == (READINGS, READINGS, T0, T0 + timedelta(seconds=READINGS - 1))


def _stored(urls: ServiceUrls) -> int:
    try:
        with psycopg.connect(urls.database_url, connect_timeout=2) as conn:
            row = conn.execute("SELECT count(*) FROM readings WHERE device_id = %s", (DEVICE,)).fetchone()
    except psycopg.OperationalError:
        return -1
    assert row is not None
    return int(row[0])


def test_the_embedded_database_refuses_a_login_without_its_password(postgres: EmbeddedPostgres) -> None:
    secret = postgres.secret_file
    assert secret.stat().st_mode & 0o777 == 0o600
    for user in ("ioc", "postgres"):
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(host="127.0.0.1", port=postgres.port, user=user, dbname="ioc", connect_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(
            host="127.0.0.1", port=postgres.port, user="ioc", password="guess", dbname="ioc", connect_timeout=5
        )
    # Physical replication (a copy of every table) has no pg_hba line at all.
    with pytest.raises(psycopg.OperationalError, match="replication"):
        psycopg.connect(
            host="127.0.0.1",
            port=postgres.port,
            user="ioc",
            password=postgres.password,
            dbname="ioc",
            replication="true",
            connect_timeout=5,
        )
    with psycopg.connect(postgres.url) as conn:
        method = conn.execute("SELECT current_setting('password_encryption')").fetchone()
    assert method == ("scram-sha-256",)


def test_while_the_database_is_down_the_api_answers_503_with_a_clear_message(runtime_root: Path) -> None:
    from api.access.keys import create_api_key

    with EmbeddedPostgres(runtime_root / "outage-postgres") as pg:
        migrate_database(pg.url)
        with psycopg.connect(pg.url) as conn:
            key = create_api_key(
                conn, name="outage", role="viewer", scope=EVERYTHING, lifetime=timedelta(days=1), actor="test"
            )
            conn.commit()
        headers = {"Authorization": f"Bearer {key.secret}"}
        with ApiServer(pg.url) as api:
            assert api.get("/devices", headers=headers).status_code == 200
            pg.stop(mode="immediate")
            down = api.get("/devices", headers=headers)
            assert down.status_code == 503, down.text
            assert down.json() == {"detail": "the database is unavailable; try again shortly"}
            assert down.headers["Retry-After"] == "5"
            ready = api.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["database"] == {"state": "down", "detail": "the database does not answer"}
            assert api.get("/healthz").json() == {"status": "ok"}  # the process itself is alive
            pg.restart()
            wait_for(lambda: api.get("/devices", headers=headers).status_code == 200, what="the API serving again")
