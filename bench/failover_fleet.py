"""A device fleet that publishes through several broker nodes and fails over: the load of `ioc bench scaleout` and
of the multi-host test.

Each device is one MQTT 3.1.1 connection (nats-server's MQTT dialect) publishing QoS 1 smart-meter readings at a
set rate. A device that loses its node connects to the next one and sends again what was not acknowledged (paho
resends in-flight QoS 1 messages with DUP on reconnect), as field devices do; a device whose oldest message waits
longer than ACK_TIMEOUT_S for its PUBACK drops the connection and does the same (a node that cannot store a message
while its stream elects a leader neither acknowledges nor closes). Every message carries `seq` and a
timestamp derived from it, so a resent message is the same reading and the count of distinct rows says exactly
what arrived.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol.topics import telemetry_topic

FLEET_TYPE = "smart_meter"
FLEET_METRICS = ("active_power", "voltage", "current", "power_factor", "frequency")
PAYLOAD_TEMPLATE = (
    '{"seq":%d,"ts":%d,"readings":{"active_power":%r,"voltage":%r,"current":%r,"power_factor":0.9,"frequency":50.0}}'
)
# Short: a device notices a node that went silent (cut off, not closed) within about 1.5 keepalives.
KEEPALIVE_S = 3
# Milliseconds between the timestamps of a device's consecutive messages (any rate: only uniqueness matters).
TS_STEP_MS = 10
MAX_INFLIGHT = 1000
ACK_TIMEOUT_S = 6.0


@dataclass(frozen=True, slots=True)
class FleetDevice:
    device_id: str
    province: str
    sector: str
    password: str = field(repr=False)


@dataclass(slots=True)
class FleetCounts:
    created: int = 0
    acked: int = 0
    failovers: int = 0
    ack_timeouts: int = 0


class _Device:
    def __init__(self, device: FleetDevice, nodes: Sequence[tuple[str, int]], first: int, fleet: FailoverFleet) -> None:
        self.device = device
        self.topic = telemetry_topic(device.province, device.sector, device.device_id)
        self.nodes = list(nodes)
        self.node = first
        self.seq = 0
        self._fleet = fleet
        # Packet ids not yet acknowledged, with when they were published (insertion order: oldest first).
        self._unacked: dict[int, float] = {}
        # PUBACKs that came before `publish` returned and the id was noted.
        self._acked_early: set[int] = set()
        # Never held while calling paho: paho calls on_publish holding its own lock (lock order).
        self._unacked_lock = threading.Lock()
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=device.device_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        client.username_pw_set(device.device_id, device.password)
        client.max_inflight_messages_set(MAX_INFLIGHT)
        client.max_queued_messages_set(0)
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        client.on_publish = self._on_publish
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        self.client = client

    def start(self) -> None:
        host, port = self.nodes[self.node]
        self.client.connect_async(host, port, keepalive=KEEPALIVE_S)
        self.client.loop_start()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: object, props: object) -> None:
        with self._unacked_lock:
            if self._unacked.pop(mid, None) is None:
                self._acked_early.add(mid)
        self._fleet.count_ack()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        self._next_node()

    def _on_connect_fail(self, client: mqtt.Client, userdata: object) -> None:
        self._next_node()

    def _next_node(self) -> None:
        if self._fleet.stopping:
            return
        # The next node; paho's own reconnect loop connects there and resends what was not acknowledged.
        self.node = (self.node + 1) % len(self.nodes)
        host, port = self.nodes[self.node]
        self.client.connect_async(host, port, keepalive=KEEPALIVE_S)
        self._fleet.count_failover()

    def publish_next(self, start_ms: int) -> None:
        seq = self.seq
        self.seq += 1
        v = seq % 1000
        payload = PAYLOAD_TEMPLATE % (seq, start_ms + seq * TS_STEP_MS, 1.0 + v / 100, 220.0 + v / 100, 5.0 + v / 1000)
        # Queued by paho while disconnected, and sent after the reconnect.
        info = self.client.publish(self.topic, payload.encode(), qos=1)
        with self._unacked_lock:
            if info.mid in self._acked_early:
                self._acked_early.discard(info.mid)
            else:
                self._unacked[info.mid] = time.monotonic()

    def check_acks(self, now: float) -> bool:
        """Drop the connection when the oldest message waited too long for its PUBACK; True if it did."""
        with self._unacked_lock:
            oldest = next(iter(self._unacked.values()), None)
            if oldest is None or now - oldest < ACK_TIMEOUT_S:
                return False
            # A full timeout again before the next drop.
            self._unacked = dict.fromkeys(self._unacked, now)
        sock = self.client.socket()
        if not isinstance(sock, socket.socket):
            return False  # not connected: paho is already reconnecting
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # paho sees the loss, reconnects and resends (DUP)
        return True

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class FailoverFleet:
    """`with FailoverFleet(devices, nodes, rate_per_device=…) as fleet: fleet.publish_for(seconds)`; devices are
    spread over the nodes round robin."""

    def __init__(
        self, devices: Sequence[FleetDevice], nodes: Sequence[tuple[str, int]], *, rate_per_device: float
    ) -> None:
        if not devices or not nodes:
            raise ValueError("a fleet needs devices and nodes")
        self.counts = FleetCounts()
        self.stopping = False
        self._lock = threading.Lock()
        self._rate = rate_per_device
        self._devices = [_Device(d, nodes, i % len(nodes), self) for i, d in enumerate(devices)]
        # Timestamps from the start, spaced TS_STEP_MS per message: within the center's allowed future skew as
        # long as a device sends at most 1000 / TS_STEP_MS messages per second.
        self.start_ms = int(time.time() * 1000)

    def count_ack(self) -> None:
        with self._lock:
            self.counts.acked += 1

    def count_failover(self) -> None:
        with self._lock:
            self.counts.failovers += 1

    def __enter__(self) -> FailoverFleet:
        for device in self._devices:
            device.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping = True
        for device in self._devices:
            with contextlib.suppress(Exception):
                device.stop()

    def publish_for(self, seconds: float, *, stop: threading.Event | None = None) -> float:
        """Publish at the set rate per device for `seconds` (or until `stop`); returns the seconds spent."""
        begin = time.monotonic()
        interval = 1.0 / self._rate
        tick = 0
        while True:
            now = time.monotonic()
            if now - begin >= seconds or (stop is not None and stop.is_set()):
                break
            due = int((now - begin) / interval) + 1
            while tick < due:
                for device in self._devices:
                    device.publish_next(self.start_ms)
                with self._lock:
                    self.counts.created += len(self._devices)
                tick += 1
            self.check_acks()
            time.sleep(min(interval, 0.01))
        return time.monotonic() - begin

    def check_acks(self) -> None:
        now = time.monotonic()
        dropped = sum(device.check_acks(now) for device in self._devices)
        if dropped:
            with self._lock:
                self.counts.ack_timeouts += dropped

    def wait_acked(self, timeout_s: float) -> bool:
        """True once every message created has been acknowledged by some node."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if self.counts.acked >= self.counts.created:
                    return True
            self.check_acks()
            time.sleep(0.1)
        return False
