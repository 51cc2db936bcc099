"""The center's own MQTT connections (ingest, commands, alerts): one way to build a paho MQTT 5 client.

`CenterClient` overrides private paho methods; pyproject.toml pins paho to the minor version they were written
against, and tests/unit/test_mqtt_client.py checks them against paho's own decoding.
"""

from __future__ import annotations

import ssl
import struct
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import PUBACK
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from mqtt_client.publish_reader import ReceivedPublish, decode_qos1_publish
from protocol.broker_url import BrokerAddress

_PUBACK = struct.Struct("!BBH")
KEEPALIVE_S = 30
READ_CHUNK_BYTES = 256 * 1024
SESSION_EXPIRY_S = 7 * 24 * 3600
RECEIVE_MAXIMUM = 65535


class _BufferedSocket:
    """Serves paho's many small reads (1-byte header, length bytes, body) from one large `recv`.

    paho reads each packet with three or more system calls and returns to `select` after every packet; at
    thousands of messages per second that is most of the ingest CPU. `pending()` tells paho's loop that bytes
    are buffered, exactly as it does for TLS sockets, so nothing waits in this buffer for the next `select`.
    """

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = memoryview(b"")
        self._pos = 0

    def recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._buf):
            data = self._sock.recv(READ_CHUNK_BYTES)
            if not data:
                return b""
            self._buf = memoryview(data)
            self._pos = 0
        end = self._pos + bufsize
        chunk = self._buf[self._pos : end].tobytes()
        self._pos += len(chunk)
        return chunk

    def pending(self) -> int:
        inner = self._sock.pending() if hasattr(self._sock, "pending") else 0
        return len(self._buf) - self._pos + int(inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class CenterClient(mqtt.Client):
    """paho's client with buffered socket reads and batched acknowledgements: the same protocol handling,
    far fewer system calls.

    With `on_publish_received` set (ingest), QoS 1 PUBLISH packets skip paho's general decoding (a Properties
    object and an MQTTMessage per message, most of ingest's CPU at thousands of messages per second): the lean
    reader in `publish_reader` takes the topic, packet id, Content Type and payload, and hands on a `ReceivedPublish`.
    Anything unusual (QoS 0 or 2, MQTT 3, a topic alias, an unknown property) still goes through paho.
    """

    on_publish_received: Callable[[ReceivedPublish], None] | None = None

    def _handle_publish(self) -> MQTTErrorCode:
        deliver = self.on_publish_received
        if deliver is None or (self._in_packet["command"] & 0x06) != 0x02 or self._protocol != mqtt.MQTTv5:
            return super()._handle_publish()
        message = decode_qos1_publish(self._in_packet["packet"])
        if message is None:
            return super()._handle_publish()
        with self._in_callback_mutex:
            deliver(message)
        return MQTTErrorCode.MQTT_ERR_SUCCESS if self._manual_ack else self._send_puback(message.mid)

    def message_callback_add(self, sub: str, callback: Any) -> None:
        raise NotImplementedError("CenterClient dispatches every message to on_message")

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
        deliver = self.on_publish_received
        if deliver is not None:  # a PUBLISH the lean path left to paho
            properties = message.properties
            with self._in_callback_mutex:
                deliver(
                    ReceivedPublish(
                        message.mid,
                        message.qos,
                        message.topic,
                        bytes(message.payload),
                        getattr(properties, "ContentType", None) if properties is not None else None,
                    )
                )
            return
        # paho matches every topic against per-filter callbacks first; the center never registers any.
        on_message = self.on_message
        if on_message is not None:
            with self._in_callback_mutex:
                on_message(self, self._userdata, message)

    def ack_many(self, mids: Sequence[int]) -> None:
        """Acknowledge received QoS 1 messages (manual-ack mode) with one write instead of one per message."""
        if mids:
            packet = b"".join([_PUBACK.pack(PUBACK, 2, mid) for mid in mids])
            self._packet_queue(PUBACK, packet, 0, 0)

    def _create_socket(self) -> Any:
        return _BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        sock = self._sock
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and isinstance(sock, _BufferedSocket) and sock.pending() > 0:
            rc = super().loop_read(max_packets)
            sock = self._sock
        return rc


def make_client(
    address: BrokerAddress, *, client_id: str, manual_ack: bool = False, persistent: bool = False
) -> CenterClient:
    """A configured, not yet connected MQTT 5 client; `persistent` keeps the session (and its queue) across
    disconnects, `manual_ack` leaves QoS 1 acknowledgements to the caller."""
    client = CenterClient(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if address.username is not None:
        client.username_pw_set(address.username, address.password)
    if address.tls:
        client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
    client.reconnect_delay_set(min_delay=1, max_delay=10)
    # 0 = no limit: paho rescans every in-flight message on each PUBACK when a limit is set (quadratic).
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    client.user_data_set({"persistent": persistent})
    return client


def connect_properties(*, persistent: bool) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S if persistent else 0
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    return props


def connect(client: mqtt.Client, address: BrokerAddress, *, persistent: bool) -> None:
    """Start connecting (asynchronously; paho reconnects by itself after a loss)."""
    client.connect_async(
        address.host,
        address.port,
        keepalive=KEEPALIVE_S,
        clean_start=not persistent,
        properties=connect_properties(persistent=persistent),
    )
