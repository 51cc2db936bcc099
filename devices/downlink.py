"""Commands to devices (downlink): recorded, published on the device's `cmd` topic (QoS 1), acknowledged by
the device on `cmd/ack`, or timed out. The history is the `device_commands` table.

Status: `pending` (recorded) → `sent` (the broker accepted it) → `acked` / `failed` (device said error, or the
broker could not be reached) / `timed_out` (no ack within the timeout).
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from psycopg import sql

from core.errors import InvalidRequest, NotFound
from devices.audit import record_audit
from devices.registry import DeviceDecommissioned, DeviceRecord, RegistryError, get_device
from mqtt_client.client import connect, make_client
from protocol.broker_url import BrokerAddress
from protocol.commands import SET_INTERVAL, Command, CommandAck, command_problem, encode_command
from protocol.topics import command_topic
from store.pool import Conn
from store.scope import Scope

_LOGGER = logging.getLogger(__name__)

ACK_TIMEOUT_S: Final = 60.0
PUBLISH_TIMEOUT_S: Final = 5.0
CONNECT_TIMEOUT_S: Final = 10.0
_COLUMNS: Final = "id::text, device_id, name, params, status, created_at, sent_at, acked_at, detail, actor"


class CommandError(RegistryError, InvalidRequest):
    """A command the contract does not allow (unknown name, bad params)."""


class UnknownCommand(RegistryError, NotFound):
    """No command has this id."""


@dataclass(frozen=True, slots=True)
class CommandRecord:
    command_id: str
    device_id: str
    name: str
    params: Mapping[str, object]
    status: str
    created_at: datetime
    sent_at: datetime | None
    acked_at: datetime | None
    detail: str
    actor: str


def _record(row: tuple[object, ...]) -> CommandRecord:
    return CommandRecord(*row)  # type: ignore[arg-type]


def create_command(
    conn: Conn,
    *,
    device_id: str,
    name: str,
    params: Mapping[str, object],
    actor: str,
    scope: Scope,
    address: str | None = None,
) -> tuple[CommandRecord, DeviceRecord]:
    """Record (and audit) a command for an active device inside `scope`; UnknownDevice outside it,
    CommandError when it breaks the contract, DeviceDecommissioned when the device is retired."""
    device = get_device(conn, device_id, scope=scope)
    if not device.active:
        raise DeviceDecommissioned(f"device {device_id!r} is decommissioned")
    problem = command_problem(Command("0", name, params))
    if problem is not None:
        raise CommandError(problem)
    row = conn.execute(
        f"INSERT INTO device_commands (device_id, name, params, actor) VALUES (%s, %s, %s, %s) RETURNING {_COLUMNS}",
        (device_id, name, json.dumps(dict(params)), actor),
    ).fetchone()
    assert row is not None
    command = _record(row)
    record_audit(
        conn,
        actor=actor,
        action="command.send",
        target=device_id,
        details={"command_id": command.command_id, "name": name, "params": dict(params)},
        address=address,
    )
    return command, device


def mark_command(conn: Conn, command_id: str, *, status: str, detail: str = "") -> CommandRecord:
    row = conn.execute(
        "UPDATE device_commands SET status = %s, detail = %s, "
        "sent_at = CASE WHEN %s = 'sent' THEN now() ELSE sent_at END WHERE id = %s::uuid "
        f"RETURNING {_COLUMNS}",
        (status, detail, status, command_id),
    ).fetchone()
    if row is None:
        raise UnknownCommand(f"unknown command {command_id}")
    return _record(row)


def record_ack(conn: Conn, *, device_id: str, ack: CommandAck) -> bool:
    """Apply a device's acknowledgement; False when it names no open command of that device.

    An ok `set_interval` also becomes the device's expected report interval, so silence is judged by it.
    """
    try:
        command_id = uuid.UUID(ack.command_id)
    except ValueError:
        return False  # not one of ours
    row = conn.execute(
        "UPDATE device_commands SET status = %s, acked_at = now(), detail = %s "
        "WHERE id = %s AND device_id = %s AND status IN ('pending', 'sent') RETURNING name, params",
        ("acked" if ack.status == "ok" else "failed", ack.detail, command_id, device_id),
    ).fetchone()
    if row is None:
        return False
    name, params = row
    if ack.status == "ok" and name == SET_INTERVAL and isinstance(params, dict):
        conn.execute(
            "UPDATE devices SET report_interval_s = %s, updated_at = now() WHERE device_id = %s",
            (float(params["seconds"]), device_id),
        )
    return True


def expire_commands(conn: Conn, *, timeout_s: float) -> int:
    """Mark commands that waited longer than `timeout_s` for an ack as timed out; returns how many."""
    cur = conn.execute(
        "UPDATE device_commands SET status = 'timed_out', detail = 'no acknowledgement' "
        "WHERE status IN ('pending', 'sent') AND created_at < clock_timestamp() - make_interval(secs => %s)",
        (timeout_s,),
    )
    return cur.rowcount


def list_commands(conn: Conn, device_id: str, *, scope: Scope, limit: int = 100) -> list[CommandRecord]:
    """A device's commands, newest first; none when the device is outside `scope`."""
    in_scope, scope_params = scope.where(table="d")
    rows = conn.execute(
        sql.SQL(
            "SELECT {} FROM device_commands c WHERE c.device_id = %s "
            "AND EXISTS (SELECT 1 FROM devices d WHERE d.device_id = c.device_id AND {}) "
            "ORDER BY c.created_at DESC, c.id LIMIT %s"
        ).format(sql.SQL(_COLUMNS), in_scope),
        [device_id, *scope_params, limit],
    ).fetchall()
    return [_record(r) for r in rows]


class CommandPublisher:
    """The MQTT client that sends commands; owned by the API's lifespan (`with CommandPublisher(...)`)."""

    def __init__(self, address: BrokerAddress, *, client_id: str) -> None:
        self._address = address
        self._connected = threading.Event()
        self._client = make_client(address, client_id=client_id)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: Properties | None
    ) -> None:
        if reason.is_failure:
            _LOGGER.warning("broker refused the command publisher: %s", reason)
            return
        self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: Properties | None
    ) -> None:
        self._connected.clear()

    @property
    def connected(self) -> bool:
        """True while connected to the broker (the API's readiness reports it)."""
        return self._connected.is_set()

    def __enter__(self) -> CommandPublisher:
        connect(self._client, self._address, persistent=False)
        self._client.loop_start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def send(self, device: DeviceRecord, command: CommandRecord) -> bool:
        """Publish `command` to `device` at QoS 1; True once the broker has accepted it."""
        if not self._connected.wait(CONNECT_TIMEOUT_S):
            return False
        payload = encode_command(Command(command.command_id, command.name, command.params))
        info = self._client.publish(command_topic(device.province, device.sector, device.device_id), payload, qos=1)
        try:
            info.wait_for_publish(timeout=PUBLISH_TIMEOUT_S)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()
