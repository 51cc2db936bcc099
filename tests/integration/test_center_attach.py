"""A second `ioc` command never stops the running center: with `ioc up` running, `ioc db migrate` and
`ioc analytics evaluate` on the same runtime folder attach to its database and broker; the API keeps answering
and a device publishing all the while loses no reading."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from api.access.keys import create_api_key
from devices.catalog import Catalog
from devices.provisioning import provision_device
from embedded.runtime import EmbeddedPostgres, find_free_port
from protocol.telemetry import encode_json
from protocol.topics import telemetry_topic
from store.scope import EVERYTHING
from tests.integration.conftest import wait_for
from tests.integration.device_fixtures import DeviceClient

pytestmark = pytest.mark.integration

IOC = str(Path(sys.executable).with_name("ioc"))
READINGS = 120
DEVICE = "meter-dn-001"
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)


@pytest.fixture
def running_center(runtime_root: Path) -> Iterator[tuple[dict[str, str], Path, int]]:
    """`ioc up` in its own process on a runtime folder of its own: (environment, folder, API port)."""
    folder = runtime_root / "up-center"
    port = find_free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOC_")}
    env |= {"IOC_RUNTIME_DIR": str(folder), "IOC_API_PORT": str(port), "IOC_LOG_LEVEL": "WARNING"}
    log = runtime_root / "up-center.log"
    with log.open("wb") as out:
        center = subprocess.Popen([IOC, "up"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: b"ioc is up" in log.read_bytes() or center.poll() is not None, timeout_s=120, what="ioc up")
        assert center.poll() is None, log.read_text()
        yield env, folder, port
    finally:
        center.terminate()
        center.wait(60)
    assert center.returncode in (0, 130), log.read_text()[-2000:]


def _ioc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IOC, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_a_second_command_attaches_to_the_running_center_and_nothing_stops_or_is_lost(
    running_center: tuple[dict[str, str], Path, int], catalog: Catalog, tmp_path: Path
) -> None:
    env, folder, port = running_center
    pg = EmbeddedPostgres(folder / "postgres")
    pg.attach()
    postmaster_before = (pg.data_dir / "postmaster.pid").read_text().split("\n")[0]
    broker_pid_before = (folder / "mosquitto" / "ioc-mosquitto.pid").read_text()
    with psycopg.connect(pg.url) as conn:
        device = provision_device(
            conn,
            device_id=DEVICE,
            type_code="smart_meter",
            province="da-nang",
            catalog=catalog,
            actor="test",
            scope=EVERYTHING,
        )
        key = create_api_key(
            conn, name="attach-test", role="viewer", scope=EVERYTHING, lifetime=timedelta(days=1), actor="test"
        )
        conn.commit()
    broker_port = json.loads((folder / "mosquitto" / "ports.json").read_text())["port"]
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key.secret}"})
    statuses: list[int] = []
    done = threading.Event()

    def poll_api() -> None:
        while not done.wait(0.2):
            statuses.append(api.get(f"/devices/{DEVICE}/readings", params={"from": T0.isoformat()}).status_code)

    with DeviceClient(f"mqtt://127.0.0.1:{broker_port}", device_id=DEVICE, password=device.secret) as dev:
        # The center's device monitor lets the new device in within a second or so.
        wait_for(dev.connected.is_set, timeout_s=20, what="device admitted by the running center")
        poller = threading.Thread(target=poll_api, name="api-poller")
        poller.start()
        topic = telemetry_topic("da-nang", "energy", DEVICE)
        try:
            for seq in range(READINGS // 2):
                payload = encode_json({"active_power": 1.0 + seq}, seq=seq, ts=T0 + timedelta(seconds=seq))
                dev.client.publish(topic, payload, qos=1)
            migrate = _ioc(env, "db", "migrate")
            assert migrate.returncode == 0, migrate.stderr
            assert "database is up to date" in migrate.stdout
            labels = tmp_path / "labels.jsonl"
            label = {"device": DEVICE, "metric": "active_power", "kind": "spike", "start": T0.isoformat()}
            labels.write_text(json.dumps(label | {"end": (T0 + timedelta(seconds=5)).isoformat()}) + "\n")
            evaluate = _ioc(env, "analytics", "evaluate", "--labels", str(labels))
            assert evaluate.returncode == 0, evaluate.stderr
            assert "left running" not in migrate.stderr + evaluate.stderr  # nothing was mistaken for an orphan
            for seq in range(READINGS // 2, READINGS):
                payload = encode_json({"active_power": 1.0 + seq}, seq=seq, ts=T0 + timedelta(seconds=seq))
                dev.client.publish(topic, payload, qos=1).wait_for_publish(10)

            def stored() -> int:
                response = api.get(f"/devices/{DEVICE}/readings", params={"from": T0.isoformat()})
                return len(response.json()) if response.status_code == 200 else -1

            wait_for(lambda: stored() == READINGS, timeout_s=30, what="every reading through the running center")
        finally:
            done.set()
            poller.join(10)
            api.close()
    assert statuses and set(statuses) == {200}, sorted(set(statuses))
    # The same database and broker processes served everything: nobody stopped or restarted them.
    assert (pg.data_dir / "postmaster.pid").read_text().split("\n")[0] == postmaster_before
    assert (folder / "mosquitto" / "ioc-mosquitto.pid").read_text() == broker_pid_before
