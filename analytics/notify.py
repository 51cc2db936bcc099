"""Alarm notifications: JSON events on MQTT `ioc/v1/{province}/alerts` and POSTs to configured webhooks.

The job hands events over after its transaction commits and never waits: MQTT publishing is asynchronous in
paho, webhooks are posted by one sender thread with a timeout and retries. A failure is logged and counted,
never raised into the job.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import Final, Literal

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from analytics.alarms import Alarm
from mqtt_client.client import connect, make_client
from protocol.broker_url import BrokerAddress
from protocol.topics import alerts_topic

_LOGGER = logging.getLogger(__name__)

EventKind = Literal["raised", "escalated", "cleared", "acknowledged", "reminder"]

WEBHOOK_TIMEOUT_S: Final = 5.0
WEBHOOK_ATTEMPTS: Final = 3
WEBHOOK_BACKOFF_S: Final = 0.5
WEBHOOK_QUEUE_MAX: Final = 10_000
EVENT_SCHEMA: Final = "ioc.alarm.v1"


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    kind: EventKind
    alarm: Alarm
    at: datetime

    def payload(self) -> bytes:
        return json.dumps(
            {"schema": EVENT_SCHEMA, "event": self.kind, "at": self.at.isoformat(), "alarm": self.alarm.as_json()},
            separators=(",", ":"),
        ).encode()


@dataclass(slots=True)
class NotifyCounters:
    mqtt_published: int = 0
    mqtt_failed: int = 0
    webhook_sent: int = 0
    webhook_failed: int = 0
    webhook_retries: int = 0
    webhook_dropped: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, amount: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + amount)


class Notifier:
    """Owns the alerts MQTT client (optional) and the webhook sender; use it as a context manager."""

    def __init__(
        self,
        *,
        broker: BrokerAddress | None,
        webhooks: Sequence[str] = (),
        client_id: str = "ioc-analytics-alerts",
        webhook_timeout_s: float = WEBHOOK_TIMEOUT_S,
        webhook_attempts: int = WEBHOOK_ATTEMPTS,
    ) -> None:
        self._broker = broker
        self._webhooks = tuple(webhooks)
        self._client_id = client_id
        self._timeout_s = webhook_timeout_s
        self._attempts = max(1, webhook_attempts)
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()
        self._queue: queue.Queue[AlarmEvent | None] = queue.Queue(maxsize=WEBHOOK_QUEUE_MAX)
        self._sender: threading.Thread | None = None
        self.counters = NotifyCounters()

    def __enter__(self) -> Notifier:
        if self._broker is not None:
            client = make_client(self._broker, client_id=self._client_id)
            client.on_connect = self._on_connect
            client.on_disconnect = self._on_disconnect
            connect(client, self._broker, persistent=False)
            client.loop_start()
            self._client = client
        if self._webhooks:
            self._sender = threading.Thread(target=self._send_webhooks, name="alarm-webhooks", daemon=True)
            self._sender.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._sender is not None:
            self._queue.put(None)
            self._sender.join(timeout=self._timeout_s * self._attempts + 5)
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s) if self._client is not None else True

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            _LOGGER.warning("broker refused the alerts connection: %s", reason)
            return
        self._connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()

    def notify(self, events: Sequence[AlarmEvent]) -> None:
        for event in events:
            self._publish(event)
            if self._webhooks:
                try:
                    self._queue.put_nowait(event)
                except queue.Full:
                    self.counters.add("webhook_dropped")
                    _LOGGER.warning("webhook queue full: alarm %s %s event dropped", event.alarm.id, event.kind)

    def _publish(self, event: AlarmEvent) -> None:
        if self._client is None:
            return
        try:
            info = self._client.publish(alerts_topic(event.alarm.province), event.payload(), qos=1)
        except (ValueError, OSError) as exc:
            self.counters.add("mqtt_failed")
            _LOGGER.warning("alarm %s event not published: %s", event.alarm.id, exc)
            return
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            # Not connected right now: paho drops it (no offline queue); the webhook path still carries it.
            self.counters.add("mqtt_failed")
            _LOGGER.warning("alarm %s event not published: %s", event.alarm.id, mqtt.error_string(info.rc))
            return
        self.counters.add("mqtt_published")

    def _send_webhooks(self) -> None:
        with httpx.Client(timeout=self._timeout_s, headers={"content-type": "application/json"}) as http:
            while True:
                event = self._queue.get()
                if event is None:
                    return
                body = event.payload()
                for url in self._webhooks:
                    self._post(http, url, body, event)

    def _post(self, http: httpx.Client, url: str, body: bytes, event: AlarmEvent) -> None:
        for attempt in range(1, self._attempts + 1):
            try:
                response = http.post(url, content=body)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.is_success:
                    self.counters.add("webhook_sent")
                    return
                problem = f"HTTP {response.status_code}"
                if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                    break  # the receiver refuses this payload: retrying will not help
            if attempt < self._attempts:
                self.counters.add("webhook_retries")
                time.sleep(WEBHOOK_BACKOFF_S * 2 ** (attempt - 1))
        self.counters.add("webhook_failed")
        _LOGGER.warning("webhook %s failed for alarm %s %s: %s", url, event.alarm.id, event.kind, problem)


def now_utc() -> datetime:
    return datetime.now(UTC)
