"""Device health through the real broker, ingest and API: online, silent within 3 report intervals, online
again when it returns, offline by its Last Will; and the summary per province and sector."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from devices.provisioning import ProvisionedDevice
from embedded.runtime import EmbeddedMosquitto
from protocol.telemetry import encode_json
from protocol.topics import telemetry_topic
from tests.integration.conftest import ApiServer, RunningIngest, ScratchDatabase, wait_for
from tests.integration.device_fixtures import (
    DeviceClient,
    RunningMonitor,
    provision_fixture,  # noqa: F401
    run_monitor_fixture,  # noqa: F401
    run_secure_ingest_fixture,  # noqa: F401
    secure_api_fixture,  # noqa: F401
    secure_broker_fixture,  # noqa: F401
    tokens_fixture,  # noqa: F401
)

INTERVAL_S = 1.0


def _state(client: httpx.Client, device_id: str) -> str:
    response = client.get(f"/device-health/{device_id}")
    assert response.status_code == 200, response.text
    state = response.json()["state"]
    assert isinstance(state, str)
    return state


def test_a_silent_device_is_reported_silent_then_online_when_it_returns(
    database: ScratchDatabase,
    secure_broker: EmbeddedMosquitto,
    provision: Callable[..., ProvisionedDevice],
    run_monitor: Callable[..., RunningMonitor],
    run_secure_ingest: Callable[[], RunningIngest],
    secure_api: Callable[[], ApiServer],
    tokens: dict[str, dict[str, str]],
) -> None:
    device = provision("soil-ct-101", "soil_probe", "can-tho", report_interval_s=INTERVAL_S)
    provision("soil-ct-102", "soil_probe", "can-tho")  # never connects
    provision("meter-ct-103", "smart_meter", "can-tho")
    topic = telemetry_topic("can-tho", "agriculture", "soil-ct-101")
    seq = 0

    def publish(dev: DeviceClient) -> None:
        nonlocal seq
        seq += 1
        readings = {"soil_moisture": 30.0 + seq / 10, "battery_v": 3.7}
        dev.client.publish(topic, encode_json(readings, seq=seq, ts=datetime.now(UTC)), qos=1).wait_for_publish(5)

    with run_monitor() as monitor, run_secure_ingest(), secure_api() as client:
        client.headers.update(tokens["viewer"])
        monitor.wait_synced(database)
        assert _state(client, "soil-ct-101") == "unknown"
        dev = DeviceClient(
            secure_broker.device_url,
            device_id="soil-ct-101",
            password=device.secret,
            province="can-tho",
            sector="agriculture",
        )
        assert dev.connected.wait(10), dev.reasons
        for _ in range(3):
            publish(dev)
            time.sleep(INTERVAL_S)
        wait_for(lambda: _state(client, "soil-ct-101") == "online", timeout_s=5, what="online")
        health = client.get("/device-health/soil-ct-101").json()
        assert health["online"] is True
        assert health["report_interval_s"] == INTERVAL_S
        assert health["last_seen"] is not None

        # Silent: still connected (no Last Will), but no data.
        publish(dev)
        last_sent = time.monotonic()
        wait_for(lambda: _state(client, "soil-ct-101") == "silent", timeout_s=10, what="silent")
        silent_after = time.monotonic() - last_sent
        assert 3 * INTERVAL_S - 0.5 <= silent_after <= 3 * INTERVAL_S + 1.0, silent_after

        summary = {(s["province"], s["sector"]): s for s in client.get("/device-health/summary").json()}
        assert summary[("can-tho", "agriculture")] == {
            "province": "can-tho",
            "sector": "agriculture",
            "total": 2,
            "online": 0,
            "silent": 1,
            "offline": 0,
            "unknown": 1,
            "type_code": "*",
        }
        assert summary[("can-tho", "energy")]["unknown"] == 1
        silent_list = client.get("/device-health", params={"state": "silent"}).json()
        assert [h["device_id"] for h in silent_list] == ["soil-ct-101"]

        publish(dev)
        returned = time.monotonic()
        wait_for(lambda: _state(client, "soil-ct-101") == "online", timeout_s=5, what="online again")
        assert time.monotonic() - returned < 2.0

        # Gone without a word: the broker publishes its Last Will, `offline`.
        dev.client.loop_stop()
        sock = dev.client.socket()
        assert sock is not None
        sock.close()
        wait_for(lambda: _state(client, "soil-ct-101") == "offline", timeout_s=20, what="offline by Last Will")
        assert client.get("/device-health/summary", params={"province": "can-tho"}).json()[0]["offline"] == 1
        dev.client._reset_sockets()
