"""The center's own MQTT connections (ingest, commands, alerts): one way to build a paho MQTT 5 client."""

from __future__ import annotations

import ssl

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol.broker_url import BrokerAddress

KEEPALIVE_S = 30
SESSION_EXPIRY_S = 7 * 24 * 3600
RECEIVE_MAXIMUM = 65535


def make_client(
    address: BrokerAddress, *, client_id: str, manual_ack: bool = False, persistent: bool = False
) -> mqtt.Client:
    """A configured, not yet connected MQTT 5 client; `persistent` keeps the session (and its queue) across
    disconnects, `manual_ack` leaves QoS 1 acknowledgements to the caller."""
    client = mqtt.Client(
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
    client.max_inflight_messages_set(1000)
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
