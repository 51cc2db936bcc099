"""The center's own MQTT connections (ingest, commands, alerts): one way to build a paho MQTT 5 client."""

from __future__ import annotations

import ssl
import struct
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.client import PUBACK
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

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
    far fewer system calls."""

    def message_callback_add(self, sub: str, callback: Any) -> None:
        raise NotImplementedError("CenterClient dispatches every message to on_message")

    def _handle_on_message(self, message: mqtt.MQTTMessage) -> None:
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
