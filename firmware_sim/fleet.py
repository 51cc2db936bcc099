"""A fleet of simulated devices, each with its own MQTT connection, publishing JSON telemetry on a clock.

The fleet talks to the center only over MQTT, as real devices do; it knows the wire contract (`protocol`) and
nothing else of the center. All connections are driven from one thread through paho's `loop()`.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from protocol.status import OFFLINE, ONLINE

from protocol.broker_url import BrokerAddress
from protocol.telemetry import encode_json
from protocol.topics import status_topic, telemetry_topic

_LOGGER = logging.getLogger(__name__)

Clock = Callable[[], float]
KEEPALIVE_S = 30


@dataclass(frozen=True, slots=True)
class MetricSignal:
    """A metric as the simulated sensor produces it: a daily-ish cycle inside [low, high] plus noise."""

    name: str
    low: float
    high: float
    period_s: float = 600.0
    noise: float = 0.02


@dataclass(frozen=True, slots=True)
class SimDevice:
    device_id: str
    province: str
    sector: str
    metrics: tuple[MetricSignal, ...]
    password: str | None = None


@dataclass(slots=True)
class FleetStats:
    connected: int = 0
    published: int = 0
    readings: int = 0
    failed: int = 0


@dataclass(slots=True)
class _Runtime:
    device: SimDevice
    client: mqtt.Client
    rng: random.Random
    phase: float
    seq: int = 0
    next_due: float = 0.0
    connected: bool = False


def sample(signal: MetricSignal, *, t: float, phase: float, rng: random.Random) -> float:
    """The signal's value at time `t` (seconds), kept inside its range."""
    mid = (signal.low + signal.high) / 2
    half = (signal.high - signal.low) / 2
    value = mid + 0.6 * half * math.sin(2 * math.pi * t / signal.period_s + phase)
    value += rng.gauss(0.0, signal.noise * half)
    return round(min(max(value, signal.low), signal.high), 4)


@dataclass
class Fleet:
    """Connects every device, then publishes one message per device every `interval_s` until stopped."""

    broker: BrokerAddress
    devices: Sequence[SimDevice]
    interval_s: float = 10.0
    seed: int = 0
    clock: Clock = time.time
    stats: FleetStats = field(default_factory=FleetStats)

    def _make_client(self, device: SimDevice) -> mqtt.Client:
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=device.device_id,
            protocol=mqtt.MQTTv5,
        )
        client.username_pw_set(device.device_id, device.password)
        topic = status_topic(device.province, device.sector, device.device_id)
        client.will_set(topic, OFFLINE, qos=1, retain=True)
        client.max_queued_messages_set(1000)
        return client

    def run(self, stop: threading.Event) -> None:
        rng = random.Random(self.seed)
        runtimes = []
        for device in self.devices:
            rt = _Runtime(
                device=device,
                client=self._make_client(device),
                rng=random.Random(rng.getrandbits(64)),
                phase=rng.uniform(0, 2 * math.pi),
            )
            rt.next_due = self.clock() + rng.uniform(0, self.interval_s)
            self._wire(rt)
            rt.client.connect_async(self.broker.host, self.broker.port, keepalive=KEEPALIVE_S)
            rt.client.loop_start()
            runtimes.append(rt)
        try:
            while not stop.wait(0.05):
                now = self.clock()
                for rt in runtimes:
                    if rt.connected and now >= rt.next_due:
                        self._publish(rt, now)
                        rt.next_due += self.interval_s
        finally:
            for rt in runtimes:
                d = rt.device
                rt.client.publish(status_topic(d.province, d.sector, d.device_id), OFFLINE, qos=1, retain=True)
                rt.client.disconnect()
                rt.client.loop_stop()

    def _wire(self, rt: _Runtime) -> None:
        def on_connect(client: mqtt.Client, userdata: object, flags: object, reason: object, props: object) -> None:
            if getattr(reason, "is_failure", False):
                self.stats.failed += 1
                return
            rt.connected = True
            self.stats.connected += 1
            d = rt.device
            client.publish(status_topic(d.province, d.sector, d.device_id), ONLINE, qos=1, retain=True)

        def on_disconnect(client: mqtt.Client, userdata: object, flags: object, reason: object, props: object) -> None:
            if rt.connected:
                rt.connected = False
                self.stats.connected -= 1

        rt.client.on_connect = on_connect
        rt.client.on_disconnect = on_disconnect

    def _publish(self, rt: _Runtime, now: float) -> None:
        d = rt.device
        readings = {m.name: sample(m, t=now, phase=rt.phase, rng=rt.rng) for m in d.metrics}
        rt.seq += 1
        payload = encode_json(readings, seq=rt.seq, ts=datetime.fromtimestamp(now, UTC))
        rt.client.publish(telemetry_topic(d.province, d.sector, d.device_id), payload, qos=1)
        self.stats.published += 1
        self.stats.readings += len(readings)
