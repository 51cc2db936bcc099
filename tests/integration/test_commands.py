"""Commands through the real API and broker: sent on the device's `cmd` topic, acknowledged on `cmd/ack`,
timed out when the device stays quiet; the history shows each status."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from devices.provisioning import ProvisionedDevice
from embedded.runtime import EmbeddedMosquitto
from protocol.commands import CommandAck, decode_command, encode_command_ack
from protocol.topics import command_ack_topic, command_topic
from tests.integration.conftest import ApiServer, ScratchDatabase, wait_for
from tests.integration.device_fixtures import (
    DeviceClient,
    RunningMonitor,
    provision_fixture,  # noqa: F401
    run_monitor_fixture,  # noqa: F401
    secure_api_fixture,  # noqa: F401
    secure_broker_fixture,  # noqa: F401
    tokens_fixture,  # noqa: F401
)


def _status(client: httpx.Client, device_id: str, command_id: str) -> str:
    history = client.get(f"/devices/{device_id}/commands").json()
    return str(next(c["status"] for c in history if c["command_id"] == command_id))


def test_commands_are_sent_acked_failed_and_timed_out(
    database: ScratchDatabase,
    secure_broker: EmbeddedMosquitto,
    provision: Callable[..., ProvisionedDevice],
    run_monitor: Callable[..., RunningMonitor],
    secure_api: Callable[[], ApiServer],
    tokens: dict[str, dict[str, str]],
) -> None:
    device = provision("pump-vl-001", "pump_station", "vinh-long")
    provision("pump-vl-002", "pump_station", "vinh-long")
    operator = tokens["operator"]
    with run_monitor(ack_timeout_s=2.0) as monitor, secure_api() as client:
        monitor.wait_synced(database)
        dev = DeviceClient(secure_broker.device_url, device_id="pump-vl-001", password=device.secret)
        try:
            assert dev.connected.wait(10), dev.reasons
            dev.client.subscribe(command_topic("vinh-long", "energy", "pump-vl-001"), qos=1)[0]
            wait_for(lambda: bool(dev.client.is_connected()), what="subscribed")

            assert client.post("/devices/pump-vl-001/commands", json={"name": "ping"}).status_code == 401
            client.headers.update(tokens["viewer"])  # reads as a viewer; writes name their role's headers
            assert (
                client.post("/devices/pump-vl-001/commands", json={"name": "ping"}, headers=tokens["viewer"])
            ).status_code == 403
            bad = client.post(
                "/devices/pump-vl-001/commands",
                json={"name": "set_interval", "params": {"seconds": 0}},
                headers=operator,
            )
            assert bad.status_code == 422
            assert "outside" in bad.json()["detail"]
            assert client.post("/devices/nope/commands", json={"name": "ping"}, headers=operator).status_code == 404

            sent = client.post(
                "/devices/pump-vl-001/commands",
                json={"name": "set_interval", "params": {"seconds": 120}},
                headers=operator,
            )
            assert sent.status_code == 202, sent.text
            command = sent.json()
            assert command["status"] == "sent"
            assert command["actor"] == "key:test-operator"
            wait_for(lambda: len(dev.messages) == 1, timeout_s=10, what="command delivered")
            received = decode_command(bytes(dev.messages[0].payload))
            assert (received.command_id, received.name, dict(received.params)) == (
                command["command_id"],
                "set_interval",
                {"seconds": 120},
            )
            ack_topic = command_ack_topic("vinh-long", "energy", "pump-vl-001")
            dev.client.publish(ack_topic, encode_command_ack(CommandAck(received.command_id, "ok")), qos=1)
            wait_for(lambda: _status(client, "pump-vl-001", command["command_id"]) == "acked", what="acked")
            # An acknowledged interval becomes the interval silence is judged by.
            assert client.get("/devices/pump-vl-001").json()["report_interval_s"] == 120

            reboot = client.post("/devices/pump-vl-001/commands", json={"name": "reboot"}, headers=operator).json()
            wait_for(lambda: len(dev.messages) == 2, timeout_s=10, what="reboot delivered")
            dev.client.publish(
                ack_topic, encode_command_ack(CommandAck(reboot["command_id"], "error", "battery too low")), qos=1
            )
            wait_for(lambda: _status(client, "pump-vl-001", reboot["command_id"]) == "failed", what="failed")

            # pump-vl-002 is not connected: the command waits in vain and times out.
            ping = client.post("/devices/pump-vl-002/commands", json={"name": "ping"}, headers=operator).json()
            assert ping["status"] == "sent"
            wait_for(
                lambda: _status(client, "pump-vl-002", ping["command_id"]) == "timed_out", timeout_s=10, what="timeout"
            )
            # A device cannot acknowledge another device's command.
            dev.client.publish(
                command_ack_topic("vinh-long", "energy", "pump-vl-002"),
                encode_command_ack(CommandAck(ping["command_id"], "ok")),
                qos=1,
            ).wait_for_publish(5)
            history = client.get("/devices/pump-vl-001/commands").json()
            assert [(c["name"], c["status"]) for c in history] == [("reboot", "failed"), ("set_interval", "acked")]
            assert history[0]["detail"] == "battery too low"
            assert history[1]["acked_at"] is not None
            assert _status(client, "pump-vl-002", ping["command_id"]) == "timed_out"
        finally:
            dev.close()
