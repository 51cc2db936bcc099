"""Broker access control against the real Mosquitto: who may connect, publish and subscribe, and a revoked
device that is connected is cut off."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

from devices.provisioning import ProvisionedDevice, decommission_device, revoke_secret, rotate_secret
from embedded.runtime import EmbeddedMosquitto
from protocol.telemetry import encode_json
from protocol.topics import command_topic, telemetry_topic
from store.scope import EVERYTHING
from tests.integration.conftest import RunningIngest, ScratchDatabase, wait_for
from tests.integration.device_fixtures import (
    DeviceClient,
    RunningMonitor,
    provision_fixture,  # noqa: F401
    run_monitor_fixture,  # noqa: F401
    run_secure_ingest_fixture,  # noqa: F401
    secure_broker_fixture,  # noqa: F401
)


def _rows(database: ScratchDatabase, device_id: str) -> int:
    count = database.scalar("SELECT count(*) FROM readings WHERE device_id = %s", (device_id,))
    assert isinstance(count, int)
    return count


def _connect(broker: EmbeddedMosquitto, device_id: str, password: str | None, **kw: str) -> DeviceClient:
    return DeviceClient(broker.device_url, device_id=device_id, password=password, **kw)


def test_a_device_cannot_publish_on_another_devices_topic(
    database: ScratchDatabase,
    secure_broker: EmbeddedMosquitto,
    provision: Callable[..., ProvisionedDevice],
    run_monitor: Callable[..., RunningMonitor],
    run_secure_ingest: Callable[[], RunningIngest],
) -> None:
    mallory = provision("soil-ct-001", "soil_probe", "can-tho")
    provision("soil-ct-002", "soil_probe", "can-tho")
    with run_monitor() as monitor, run_secure_ingest():
        monitor.wait_synced(database)
        with _connect(secure_broker, "soil-ct-001", mallory.secret) as dev:
            assert dev.connected.wait(10), dev.reasons
            readings = {"soil_moisture": 30.0, "soil_temperature": 28.0, "battery_v": 3.7}
            # Spoofed: under the other device's topic. The broker refuses it (PUBACK "not authorized").
            spoof = dev.client.publish(
                telemetry_topic("can-tho", "agriculture", "soil-ct-002"),
                encode_json(readings, seq=1, ts=datetime.now(UTC)),
                qos=1,
            )
            spoof.wait_for_publish(10)
            # A device cannot even listen to another device's commands or to everything.
            dev.client.subscribe([(command_topic("can-tho", "agriculture", "soil-ct-002"), 1), ("ioc/#", 1)])
            # Its own topic works: once this reading is stored, the spoofed one (sent first) had its chance.
            dev.client.publish(
                telemetry_topic("can-tho", "agriculture", "soil-ct-001"),
                encode_json(readings, seq=2, ts=datetime.now(UTC)),
                qos=1,
            ).wait_for_publish(10)
            wait_for(lambda: _rows(database, "soil-ct-001") == 3, what="own reading stored")
            assert _rows(database, "soil-ct-002") == 0
            spoofed_quarantined = database.scalar(
                "SELECT count(*) FROM quarantine WHERE topic LIKE %s", ("%soil-ct-002%",)
            )
            assert spoofed_quarantined == 0, "the spoofed message reached ingest"
            assert dev.messages == [], [m.topic for m in dev.messages]


def test_wrong_unknown_and_revoked_passwords_cannot_connect(
    database: ScratchDatabase,
    secure_broker: EmbeddedMosquitto,
    provision: Callable[..., ProvisionedDevice],
    run_monitor: Callable[..., RunningMonitor],
) -> None:
    good = provision("meter-hn-001", "smart_meter", "ha-noi")
    revoked = provision("meter-hn-002", "smart_meter", "ha-noi")
    with psycopg.connect(database.url) as conn:
        revoke_secret(conn, "meter-hn-002", actor="test", scope=EVERYTHING, reason="lost")
        conn.commit()
    with run_monitor() as monitor:
        monitor.wait_synced(database)
        cases = {
            "wrong password": _connect(secure_broker, "meter-hn-001", good.secret + "x"),
            "no password": _connect(secure_broker, "meter-hn-001", None),
            "unknown device": _connect(secure_broker, "meter-hn-999", good.secret),
            "revoked": _connect(secure_broker, "meter-hn-002", revoked.secret),
            "another device's password": _connect(secure_broker, "meter-hn-002", good.secret),
        }
        ok = _connect(secure_broker, "meter-hn-001", good.secret)
        try:
            assert ok.connected.wait(10), ok.reasons
            for what, client in cases.items():
                assert client.refused.wait(10), f"{what}: {client.reasons}"
                assert not client.connected.is_set(), what
                assert "Not authorized" in client.reasons[0], (what, client.reasons)
        finally:
            for client in [*cases.values(), ok]:
                client.close()


def test_a_revoked_device_that_is_connected_is_cut_off(
    database: ScratchDatabase,
    secure_broker: EmbeddedMosquitto,
    provision: Callable[..., ProvisionedDevice],
    run_monitor: Callable[..., RunningMonitor],
) -> None:
    revoked = provision("cold-hcm-001", "vaccine_fridge", "ho-chi-minh")
    decommissioned = provision("cold-hcm-002", "vaccine_fridge", "ho-chi-minh")
    rotated = provision("cold-hcm-003", "vaccine_fridge", "ho-chi-minh")
    bystander = provision("cold-hcm-004", "vaccine_fridge", "ho-chi-minh")
    with run_monitor() as monitor:
        monitor.wait_synced(database)
        clients = {
            p.device.device_id: _connect(secure_broker, p.device.device_id, p.secret)
            for p in (revoked, decommissioned, rotated, bystander)
        }
        try:
            for client in clients.values():
                assert client.connected.wait(10), client.reasons
            with psycopg.connect(database.url) as conn:
                revoke_secret(conn, "cold-hcm-001", actor="test", scope=EVERYTHING, reason="tampered")
                decommission_device(conn, "cold-hcm-002", actor="test", scope=EVERYTHING)
                new_secret = rotate_secret(conn, "cold-hcm-003", actor="test", scope=EVERYTHING)
                conn.commit()
            monitor.wait_synced(database)
            for device_id in ("cold-hcm-001", "cold-hcm-002", "cold-hcm-003"):
                assert clients[device_id].disconnected.wait(10), f"{device_id} still connected"
                # paho reconnects by itself with the old secret: the broker refuses every attempt.
                assert clients[device_id].refused.wait(10), clients[device_id].reasons
                assert not clients[device_id].connected.is_set()
            assert clients["cold-hcm-004"].connected.is_set()
            assert not clients["cold-hcm-004"].disconnected.is_set()
            with _connect(secure_broker, "cold-hcm-003", new_secret) as fresh:
                assert fresh.connected.wait(10), fresh.reasons
        finally:
            for client in clients.values():
                client.close(clean=False)
