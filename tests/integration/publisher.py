"""A plain MQTT publisher for tests: QoS 1, waits for the broker's acknowledgement of each message."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol.broker_url import parse_broker_url


class Publisher:
    def __init__(
        self, broker_url: str, *, client_id: str, username: str | None = None, password: str | None = None
    ) -> None:
        address = parse_broker_url(broker_url)
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self._connected = threading.Event()
        self.connect_reason: object = None
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self._acked_lock = threading.Lock()
        self.acked = 0
        self.client.max_inflight_messages_set(100)
        self.client.connect(address.host, address.port)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: object, props: object) -> None:
        self.connect_reason = reason
        self._connected.set()

    def _on_publish(self, client: mqtt.Client, userdata: object, mid: int, reason: object, props: object) -> None:
        with self._acked_lock:
            self.acked += 1

    def wait_connected(self, timeout_s: float = 10) -> bool:
        return self._connected.wait(timeout_s)

    def publish(
        self, topic: str, payload: bytes, *, content_type: str | None = None, wait: bool = True
    ) -> mqtt.MQTTMessageInfo:
        props = None
        if content_type is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.ContentType = content_type
        info = self.client.publish(topic, payload, qos=1, properties=props)
        if wait:
            info.wait_for_publish(timeout=30)
        return info

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def __enter__(self) -> Publisher:
        assert self.wait_connected(), "publisher did not connect"
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
