"""The device monitor: one thread of the center that owns an MQTT client and a pool and keeps the registry's
view of the field current — device status (retained `status` / Last Will), command acknowledgements,
command timeouts, and the broker's access files (re-rendered whenever the registry's access version moves).

paho's callbacks only decode and queue (STYLE 4); `run(stop)` drains the queue and does the I/O.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.errors import DecodeError
from devices.access import BrokerAccessTarget, access_version, sync_broker_access
from devices.downlink import ACK_TIMEOUT_S, expire_commands, record_ack
from devices.health import StatusChange, record_status
from mqtt_client.client import connect, make_client
from protocol.broker_url import BrokerAddress
from protocol.commands import CommandAck, decode_command_ack
from protocol.status import decode_status
from protocol.topics import COMMAND_ACK_FILTER, STATUS_FILTER, parse_topic
from store.pool import Pool, open_pool

_LOGGER = logging.getLogger(__name__)

QUEUE_MAX_MESSAGES = 100_000
DRAIN_MAX_MESSAGES = 5_000
ACCESS_POLL_S = 0.5
SWEEP_EVERY_S = 1.0


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    database_url: str
    broker: BrokerAddress
    client_id: str = "ioc-device-monitor"
    access: BrokerAccessTarget | None = None
    ack_timeout_s: float = ACK_TIMEOUT_S


@dataclass(frozen=True, slots=True)
class _Ack:
    device_id: str
    ack: CommandAck


class DeviceMonitor:
    """`run(stop)` blocks until `stop` is set; `synced` is set after each broker access sync."""

    def __init__(self, config: MonitorConfig) -> None:
        self._config = config
        self._queue: queue.Queue[StatusChange | _Ack] = queue.Queue(maxsize=QUEUE_MAX_MESSAGES)
        self._connected = threading.Event()
        self.synced_version = -1
        self.dropped = 0

    def _on_connect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: Properties | None
    ) -> None:
        if reason.is_failure:
            _LOGGER.warning("broker refused the device monitor: %s", reason)
            return
        client.subscribe([(STATUS_FILTER, 1), (COMMAND_ACK_FILTER, 1)])
        self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: ReasonCode, props: Properties | None
    ) -> None:
        self._connected.clear()

    def _on_message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        try:
            address = parse_topic(message.topic)
            item: StatusChange | _Ack
            if address.channel == "status":
                item = StatusChange(address.device_id, decode_status(bytes(message.payload)), datetime.now(UTC))
            elif address.channel == "cmd/ack":
                item = _Ack(address.device_id, decode_command_ack(bytes(message.payload)))
            else:
                return
        except DecodeError as exc:
            _LOGGER.info("ignored %s from %s: %s", exc.reason, message.topic[:200], exc.detail[:200])
            return
        try:
            self._queue.put(item, timeout=1.0)
        except queue.Full:
            self.dropped += 1  # status is retained and re-read at the next connect; acks time out visibly

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def run(self, stop: threading.Event) -> None:
        cfg = self._config
        with open_pool(cfg.database_url, min_size=1, max_size=2, name="device-monitor") as pool:
            client = make_client(cfg.broker, client_id=cfg.client_id)
            client.on_connect = self._on_connect
            client.on_disconnect = self._on_disconnect
            client.on_message = self._on_message
            connect(client, cfg.broker, persistent=False)
            client.loop_start()
            next_sweep = 0.0
            next_access = 0.0
            try:
                while not stop.is_set():
                    try:
                        self._drain(pool)
                        now = time.monotonic()
                        if cfg.access is not None and now >= next_access:
                            self._sync_access(pool, cfg.access)
                            next_access = now + ACCESS_POLL_S
                        if now >= next_sweep:
                            with pool.connection() as conn:
                                expired = expire_commands(conn, timeout_s=cfg.ack_timeout_s)
                            if expired:
                                _LOGGER.info("%d commands timed out", expired)
                            next_sweep = now + SWEEP_EVERY_S
                    except psycopg.OperationalError as exc:
                        _LOGGER.warning("device monitor lost the database, retrying: %s", exc)
                        stop.wait(1.0)
            finally:
                client.disconnect()
                client.loop_stop()

    def _drain(self, pool: Pool) -> None:
        items: list[StatusChange | _Ack] = []
        try:
            items.append(self._queue.get(timeout=0.1))
            while len(items) < DRAIN_MAX_MESSAGES:
                items.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        if not items:
            return
        with pool.connection() as conn:
            record_status(conn, [i for i in items if isinstance(i, StatusChange)])
            for item in items:
                if isinstance(item, _Ack) and not record_ack(conn, device_id=item.device_id, ack=item.ack):
                    _LOGGER.info("ack from %s for unknown or closed command %s", item.device_id, item.ack.command_id)

    def _sync_access(self, pool: Pool, target: BrokerAccessTarget) -> None:
        with pool.connection() as conn:
            if access_version(conn) == self.synced_version:
                return
            result = sync_broker_access(conn, target)
        self.synced_version = result.version
