"""Fixtures for the device tests (import the `*_fixture` names): a broker that requires authentication, the device monitor that keeps its
access files in sync with the registry, and a device client that reports how its connection went."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from api.access.keys import create_api_key
from api.principal import ROLES
from core.lifecycle import running_in_thread
from devices.catalog import Catalog
from devices.monitor import DeviceMonitor, MonitorConfig
from devices.provisioning import ProvisionedDevice, provision_device
from embedded.runtime import EmbeddedMosquitto
from ingest.worker import IngestConfig
from protocol.broker_url import parse_broker_url
from protocol.status import OFFLINE, ONLINE
from protocol.topics import status_topic
from store.scope import EVERYTHING
from tests.integration.conftest import ApiServer, RunningIngest, ScratchDatabase, wait_for

_COUNTER = itertools.count()


@pytest.fixture(name="secure_broker")
def secure_broker_fixture(runtime_root: Path) -> Iterator[EmbeddedMosquitto]:
    with EmbeddedMosquitto(runtime_root / f"secure-mosquitto-{next(_COUNTER)}", auth=True) as mq:
        yield mq


class RunningMonitor:
    def __init__(self, config: MonitorConfig) -> None:
        self.monitor = DeviceMonitor(config)
        self._running = contextlib.ExitStack()

    def __enter__(self) -> RunningMonitor:
        with contextlib.ExitStack() as stack:
            self.thread = stack.enter_context(running_in_thread(self.monitor.run, name="monitor-test"))
            assert self.monitor.wait_connected(15), "device monitor did not connect"
            self._running = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        self._running.close()
        assert not self.thread.is_alive(), "device monitor did not stop"

    def wait_synced(self, database: ScratchDatabase, timeout_s: float = 30) -> None:
        """Until the broker's files reflect every registry change committed so far."""
        version = int(database.scalar("SELECT version FROM broker_access_state"))
        wait_for(lambda: self.monitor.synced_version >= version, timeout_s=timeout_s, what="broker access sync")


@pytest.fixture(name="run_monitor")
def run_monitor_fixture(database: ScratchDatabase, secure_broker: EmbeddedMosquitto) -> Callable[..., RunningMonitor]:
    def _run(ack_timeout_s: float = 60.0) -> RunningMonitor:
        return RunningMonitor(
            MonitorConfig(
                database_url=database.url,
                broker=parse_broker_url(secure_broker.url),
                client_id=f"monitor-{next(_COUNTER)}",
                access=secure_broker.access_target(),
                ack_timeout_s=ack_timeout_s,
            )
        )

    return _run


@pytest.fixture(name="run_secure_ingest")
def run_secure_ingest_fixture(
    database: ScratchDatabase, secure_broker: EmbeddedMosquitto, catalog: Catalog
) -> Callable[[], RunningIngest]:
    config = IngestConfig(
        database_url=database.url,
        broker=parse_broker_url(secure_broker.url),
        client_id=f"ingest-secure-{next(_COUNTER)}",
        batch_max_wait_s=0.05,
    )
    return lambda: RunningIngest(config, catalog)


@pytest.fixture(name="provision")
def provision_fixture(database: ScratchDatabase, catalog: Catalog) -> Callable[..., ProvisionedDevice]:
    def _provision(device_id: str, type_code: str, province: str = "can-tho", **kw: object) -> ProvisionedDevice:
        with psycopg.connect(database.url) as conn:
            device = provision_device(
                conn,
                device_id=device_id,
                type_code=type_code,
                province=province,
                catalog=catalog,
                actor="test",
                scope=EVERYTHING,
                **kw,  # type: ignore[arg-type]
            )
            conn.commit()
        return device

    return _provision


class DeviceClient:
    """A device's MQTT 5 connection: Last Will `offline`, retained `online`; records connect/disconnect."""

    def __init__(
        self, broker_url: str, *, device_id: str, password: str | None, province: str = "", sector: str = ""
    ) -> None:
        address = parse_broker_url(broker_url)
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(device_id, password)
        self.status = status_topic(province, sector, device_id) if province else None
        if self.status is not None:
            self.client.will_set(self.status, OFFLINE, qos=1, retain=True)
        self.connected = threading.Event()
        self.refused = threading.Event()
        self.disconnected = threading.Event()
        self.reasons: list[str] = []
        self.messages: list[mqtt.MQTTMessage] = []
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda c, u, m: self.messages.append(m)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect_async(address.host, address.port, keepalive=5)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        self.reasons.append(str(reason))
        if getattr(reason, "is_failure", False):
            self.refused.set()
            return
        self.connected.set()
        if self.status is not None:
            client.publish(self.status, ONLINE, qos=1, retain=True)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        if self.connected.is_set():
            self.disconnected.set()
        self.connected.clear()

    def close(self, *, clean: bool = True) -> None:
        if clean and self.status is not None and self.connected.is_set():
            self.client.publish(self.status, OFFLINE, qos=1, retain=True).wait_for_publish(5)
        self.client.disconnect()
        self.client.loop_stop()
        # paho closes its wake-up socket pair only when the client is finalised; tests run with warnings as errors.
        self.client._reset_sockets()

    def __enter__(self) -> DeviceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@pytest.fixture(name="secure_api")
def secure_api_fixture(database: ScratchDatabase, secure_broker: EmbeddedMosquitto) -> Callable[[], ApiServer]:
    """The real API with its command publisher connected to the secure broker."""
    return lambda: ApiServer(database.url, mqtt_url=secure_broker.url)


@pytest.fixture(name="tokens")
def tokens_fixture(database: ScratchDatabase) -> dict[str, dict[str, str]]:
    """Authorization headers per role: `tokens["admin"]`."""
    headers: dict[str, dict[str, str]] = {}
    with psycopg.connect(database.url) as conn:
        for role in ROLES:
            key = create_api_key(
                conn, name=f"test-{role}", role=role, scope=EVERYTHING, lifetime=timedelta(days=1), actor="test"
            )
            headers[role] = {"Authorization": f"Bearer {key.secret}"}
        conn.commit()
    return headers
