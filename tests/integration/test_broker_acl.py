"""Devices go nowhere they do not belong, on the real Mosquitto with the `ioc_acl` plugin: a device's credentials
subscribing to `$share/…`, `#`, `$SYS/#` or another device's cmd receive nothing while two ingest workers share the
telemetry and lose none of it; a revoked device that a stale broker lets in is refused by ingest, visibly in its
audit trail; devices connect over TLS with the center's CA and cannot without it."""

from __future__ import annotations

import itertools
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from devices.access import sync_broker_access
from devices.audit import list_audit
from devices.catalog import Catalog
from devices.provisioning import ProvisionedDevice, revoke_secret
from embedded.runtime import EmbeddedMosquitto
from ingest.worker import IngestConfig
from protocol.broker_url import parse_broker_url
from protocol.telemetry import encode_json
from protocol.topics import command_topic, telemetry_topic
from store.scope import EVERYTHING
from tests.integration.conftest import RunningIngest, ScratchDatabase, wait_for
from tests.integration.device_fixtures import (
    DeviceClient,
    provision_fixture,  # noqa: F401
    secure_broker_fixture,  # noqa: F401
)

pytestmark = pytest.mark.integration

_COUNTER = itertools.count()
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)


def _ingest(database: ScratchDatabase, broker: EmbeddedMosquitto, catalog: Catalog, *, index: int) -> RunningIngest:
    config = IngestConfig(
        database_url=database.url,
        broker=parse_broker_url(broker.role_url("ingest")),
        client_id=f"ingest-acl-{next(_COUNTER)}-{index}",
        group="ioc-ingest",
        shared_subscription=True,
        batch_max_wait_s=0.05,
    )
    return RunningIngest(config, catalog)


def _sync(database: ScratchDatabase, broker: EmbeddedMosquitto) -> None:
    with psycopg.connect(database.url) as conn:
        sync_broker_access(conn, broker.access_target())


def _count(database: ScratchDatabase, sql: str, *params: object) -> int:
    value = database.scalar(sql, params)
    assert isinstance(value, int)
    return value


class _Spy(DeviceClient):
    """A device connection that records how the broker answered each subscription."""

    def __init__(self, *args: object, **kw: object) -> None:
        self.granted: dict[int, list[bool]] = {}
        self.subacked = threading.Event()
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.client.on_subscribe = self._on_subscribe

    def __enter__(self) -> _Spy:
        return self

    def _on_subscribe(
        self, client: mqtt.Client, userdata: object, mid: int, reasons: list[ReasonCode], props: Properties | None
    ) -> None:
        self.granted[mid] = [not r.is_failure for r in reasons]
        self.subacked.set()


def test_a_devices_credentials_subscribing_beyond_its_own_cmd_receive_nothing_and_steal_no_telemetry(
    database: ScratchDatabase,
    secure_broker: EmbeddedMosquitto,
    provision: Callable[..., ProvisionedDevice],
    catalog: Catalog,
) -> None:
    victim = provision("meter-hue-001", "smart_meter", "hue")
    mallory = provision("meter-hue-666", "smart_meter", "hue")
    _sync(database, secure_broker)
    stolen_filters = [
        "$share/ioc-ingest/ioc/v1/+/+/+/telemetry",
        "$share/ioc-ingest/ioc/v1/+/+/+/telemetry/senml",
        "$share/mallory/ioc/v1/+/+/+/telemetry",
        "#",
        "$SYS/#",
        "ioc/v1/+/+/+/telemetry",
        command_topic("hue", "energy", "meter-hue-001"),
        "ioc/v1/hue/energy/+/cmd",
    ]
    count = 300
    with (
        _ingest(database, secure_broker, catalog, index=0),
        _ingest(database, secure_broker, catalog, index=1),
        _Spy(secure_broker.device_url, device_id="meter-hue-666", password=mallory.secret) as spy,
        DeviceClient(secure_broker.device_url, device_id="meter-hue-001", password=victim.secret) as dev,
    ):
        assert spy.connected.wait(10), spy.reasons
        assert dev.connected.wait(10), dev.reasons
        result, mid = spy.client.subscribe([(f, 1) for f in stolen_filters])
        assert result == mqtt.MQTT_ERR_SUCCESS
        assert mid is not None
        assert spy.subacked.wait(10)
        assert spy.granted[mid] == [False] * len(stolen_filters)  # every one refused in the SUBACK
        topic = telemetry_topic("hue", "energy", "meter-hue-001")
        for seq in range(count):
            payload = encode_json({"active_power": float(seq % 40)}, seq=seq, ts=T0 + timedelta(seconds=seq))
            dev.client.publish(topic, payload, qos=1)
        # A command to the victim: only the victim may read it.
        with psycopg.connect(database.url):
            commander = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
            address = parse_broker_url(secure_broker.role_url("commands"))
            commander.username_pw_set(address.username, address.password)
            commander.connect(address.host, address.port)
            commander.loop_start()
            commander.publish(command_topic("hue", "energy", "meter-hue-001"), b'{"id":"c1","name":"ping"}', qos=1)
            commander.disconnect()
            commander.loop_stop()
            commander._reset_sockets()
        wait_for(
            lambda: _count(database, "SELECT count(*) FROM readings WHERE device_id = %s", "meter-hue-001") == count,
            what="every reading stored by the two workers",
        )
        assert spy.messages == [], [m.topic for m in spy.messages]
    assert _count(database, "SELECT count(*) FROM quarantine") == 0


def test_a_revoked_device_that_a_restarted_stale_broker_lets_in_is_refused_by_ingest(
    database: ScratchDatabase,
    secure_broker: EmbeddedMosquitto,
    provision: Callable[..., ProvisionedDevice],
    catalog: Catalog,
) -> None:
    device = provision("fridge-tq-001", "vaccine_fridge", "tuyen-quang")
    _sync(database, secure_broker)  # then never again: an external broker nobody keeps in sync
    topic = telemetry_topic("tuyen-quang", "health", "fridge-tq-001")
    config = IngestConfig(
        database_url=database.url,
        broker=parse_broker_url(secure_broker.role_url("ingest")),
        client_id=f"ingest-revoke-{next(_COUNTER)}",
        batch_max_wait_s=0.05,
    )
    with RunningIngest(config, catalog):
        with DeviceClient(secure_broker.device_url, device_id="fridge-tq-001", password=device.secret) as dev:
            assert dev.connected.wait(10), dev.reasons
            dev.client.publish(topic, encode_json({"temperature": 4.0}, seq=1, ts=T0), qos=1).wait_for_publish(10)
            wait_for(lambda: _count(database, "SELECT count(*) FROM readings") == 1, what="the reading before")
        with psycopg.connect(database.url) as conn:
            revoke_secret(conn, "fridge-tq-001", actor="test", scope=EVERYTHING, reason="stolen")
            conn.commit()
        secure_broker.stop()
        secure_broker.start()  # the stale password file still lets it in
        with DeviceClient(secure_broker.device_url, device_id="fridge-tq-001", password=device.secret) as dev:
            assert dev.connected.wait(10), dev.reasons
            for seq in (2, 3):
                payload = encode_json({"temperature": 5.0}, seq=seq, ts=T0 + timedelta(seconds=seq))
                dev.client.publish(topic, payload, qos=1).wait_for_publish(10)
            wait_for(lambda: _count(database, "SELECT count(*) FROM quarantine") == 2, what="both refused")
    assert _count(database, "SELECT count(*) FROM readings") == 1
    reasons = database.scalar("SELECT array_agg(DISTINCT reason) FROM quarantine WHERE device_id = 'fridge-tq-001'")
    assert reasons == ["credential_revoked"]
    with psycopg.connect(database.url) as conn:
        trail = [
            (e.actor, e.action, e.details.get("reason"))
            for e in list_audit(conn, target="fridge-tq-001", scope=EVERYTHING)
        ]
    assert ("ingest", "telemetry_refused", "credential_revoked") in trail
    # Kept in sync, the restarted broker refuses it at the door.
    _sync(database, secure_broker)
    secure_broker.stop()
    secure_broker.start()
    with DeviceClient(secure_broker.device_url, device_id="fridge-tq-001", password=device.secret) as dev:
        assert dev.refused.wait(10), dev.reasons
        assert "Not authorized" in dev.reasons[0]


@pytest.fixture
def tls_broker(runtime_root: Path) -> Iterator[EmbeddedMosquitto]:
    with EmbeddedMosquitto(runtime_root / f"tls-mosquitto-{next(_COUNTER)}", auth=True, tls=True) as mq:
        yield mq


def _tls_device(broker: EmbeddedMosquitto, device: ProvisionedDevice, *, ca: Path) -> mqtt.Client:
    address = parse_broker_url(broker.device_tls_url)
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=device.device.device_id, protocol=mqtt.MQTTv5
    )
    client.username_pw_set(device.device.device_id, device.secret)
    client.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)
    client.connect(address.host, address.port)
    return client


def test_a_device_publishes_over_tls_with_the_centers_ca_and_cannot_connect_without_it(
    database: ScratchDatabase,
    tls_broker: EmbeddedMosquitto,
    provision: Callable[..., ProvisionedDevice],
    catalog: Catalog,
) -> None:
    device = provision("gauge-qn-001", "water_level_gauge", "quang-ninh")
    _sync(database, tls_broker)
    assert tls_broker.tls_files is not None
    ca = tls_broker.tls_files.ca_cert
    assert tls_broker.tls_files.server_key.stat().st_mode & 0o777 == 0o600
    address = parse_broker_url(tls_broker.device_tls_url)
    with (
        pytest.raises(ssl.SSLCertVerificationError),
        socket.create_connection((address.host, address.port), timeout=5) as raw,
        ssl.create_default_context().wrap_socket(raw, server_hostname=address.host),
    ):
        pass  # the system's CAs do not know the center's: the handshake fails before any password is sent
    config = IngestConfig(
        database_url=database.url,
        broker=parse_broker_url(tls_broker.role_url("ingest")),
        client_id=f"ingest-tls-{next(_COUNTER)}",
        batch_max_wait_s=0.05,
    )
    with RunningIngest(config, catalog):
        client = _tls_device(tls_broker, device, ca=ca)
        client.loop_start()
        try:
            payload = encode_json({"water_level": 2.5}, seq=1, ts=T0)
            info = client.publish(telemetry_topic("quang-ninh", "agriculture", "gauge-qn-001"), payload, qos=1)
            info.wait_for_publish(10)
            wait_for(lambda: _count(database, "SELECT count(*) FROM readings") == 1, what="the TLS reading stored")
        finally:
            client.disconnect()
            client.loop_stop()
    assert database.scalar("SELECT value FROM readings WHERE device_id = 'gauge-qn-001'") == 2.5
