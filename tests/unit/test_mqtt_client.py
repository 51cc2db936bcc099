"""CenterClient's fast receive path delivers exactly what paho's own decoding delivers, and acknowledges as MQTT requires.

CenterClient overrides private paho methods, so a paho upgrade that changes them must fail here, not in production.
The peer is a scripted MQTT server on a local socket (Mosquitto cannot be made to send topic aliases or arbitrary
properties): it writes a fixed stream of PUBLISH packets and records every byte the client sends back.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

import mqtt_client.client
from mqtt_client.client import KEEPALIVE_S, CenterClient, _BufferedSocket, connect, make_client
from mqtt_client.publish_reader import ReceivedPublish, decode_qos1_publish
from protocol.broker_url import BrokerAddress

TIMEOUT_S = 5.0
LARGE_PAYLOAD_BYTES = 40_000  # remaining length > 16,383: three length bytes
TELEMETRY = "ioc/v1/can-tho/agriculture/soil-1/telemetry"
SENML = "ioc/v1/can-tho/agriculture/soil-2/telemetry/senml"
STATUS = "ioc/v1/can-tho/agriculture/soil-1/status"
UTF8_TOPIC = "ioc/v1/cần-thơ/nông-nghiệp/độ-ẩm-1/telemetry"

_U16 = struct.Struct("!H")
_DISCONNECT = b"\xe0\x00"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value % 128, value // 128
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _str16(text: str | bytes) -> bytes:
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return _U16.pack(len(raw)) + raw


def _packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + _varint(len(body)) + body


def _with_mid(first_byte: int, mid: int) -> bytes:
    """PUBACK / PUBREC / PUBREL / PUBCOMP with reason Success, which MQTT 5 lets a sender leave out (3.4.2.1)."""
    return _packet(first_byte, _U16.pack(mid))


def _puback(mid: int) -> bytes:
    return _with_mid(0x40, mid)


def _pubrec(mid: int) -> bytes:
    return _with_mid(0x50, mid)


def _pubrel(mid: int) -> bytes:
    return _with_mid(0x62, mid)  # PUBREL's fixed-header flags must be 0010 (3.6.1)


def _pubcomp(mid: int) -> bytes:
    return _with_mid(0x70, mid)


@dataclass(frozen=True, slots=True)
class Publish:
    """One PUBLISH the peer sends, encoded by hand from MQTT 5.0 section 3.3 (not by paho)."""

    topic: str
    payload: bytes
    qos: int
    mid: int = 0
    retain: bool = False
    content_type: str | None = None
    payload_format: int | None = None
    expiry_s: int | None = None
    topic_alias: int | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_id: int | None = None
    user_properties: tuple[tuple[str, str], ...] = ()

    def properties(self) -> bytes:
        props = bytearray()
        if self.payload_format is not None:
            props += bytes([0x01, self.payload_format])
        if self.expiry_s is not None:
            props += b"\x02" + struct.pack("!I", self.expiry_s)
        if self.content_type is not None:
            props += b"\x03" + _str16(self.content_type)
        if self.response_topic is not None:
            props += b"\x08" + _str16(self.response_topic)
        if self.correlation_data is not None:
            props += b"\x09" + _str16(self.correlation_data)
        if self.subscription_id is not None:
            props += b"\x0b" + _varint(self.subscription_id)
        if self.topic_alias is not None:
            props += b"\x23" + _U16.pack(self.topic_alias)
        for key, value in self.user_properties:
            props += b"\x26" + _str16(key) + _str16(value)
        return _varint(len(props)) + bytes(props)

    def wire(self, protocol: MQTTProtocolVersion) -> bytes:
        body = _str16(self.topic)
        if self.qos:
            body += _U16.pack(self.mid)
        if protocol == mqtt.MQTTv5:
            body += self.properties()
        return _packet(0x30 | self.qos << 1 | int(self.retain), body + self.payload)


@dataclass(frozen=True, slots=True)
class Delivery:
    """What a subscriber learns of a message; the packet id only where MQTT defines one (QoS 1 and 2)."""

    topic: str
    payload: bytes
    qos: int
    content_type: str | None
    mid: int | None


def _delivery(*, topic: str, payload: bytes, qos: int, content_type: str | None, mid: int) -> Delivery:
    return Delivery(topic=topic, payload=payload, qos=qos, content_type=content_type, mid=mid if qos else None)


def _expected_deliveries(stream: Sequence[Publish]) -> list[Delivery]:
    """QoS 0 and 1 are delivered on arrival; QoS 2 on PUBREL, which the peer sends after the whole stream.

    A PUBLISH that only names a topic alias is delivered with an empty topic: paho 2.2 does not resolve received
    aliases, and the center sends no Topic Alias Maximum, so a broker may not send it any (MQTT 5.0 3.1.2.11.8).
    """
    ordered = [p for p in stream if p.qos < 2] + [p for p in stream if p.qos == 2]
    return [
        _delivery(topic=p.topic, payload=p.payload, qos=p.qos, content_type=p.content_type, mid=p.mid) for p in ordered
    ]


def _expected_acknowledgements(stream: Sequence[Publish]) -> list[bytes]:
    """PUBACK for QoS 1 and PUBREC for QoS 2 in arrival order, then a PUBCOMP for each PUBREL, then DISCONNECT."""
    first = [_puback(p.mid) if p.qos == 1 else _pubrec(p.mid) for p in stream if p.qos]
    return [*first, *(_pubcomp(p.mid) for p in stream if p.qos == 2), _DISCONNECT]


MQTT5_STREAM = (
    Publish(TELEMETRY, b'{"seq": 1, "ts": 1700000000, "readings": {"soil_moisture": 31.2}}', 1, mid=1),
    Publish(SENML, b'[{"n": "soil_moisture", "v": 30.9}]', 1, mid=2, content_type="application/senml+json"),
    Publish(
        TELEMETRY,
        b"\x81\xa2\x00ebattery_v\x02\xfb@\r\xb8Q\xeb\x85\x1e\xb8",
        1,
        mid=3,
        content_type="application/senml+cbor",
        user_properties=(("site", "can-tho"), ("firmware", "2.4.1"), ("site", "vinh-long")),
    ),
    Publish(TELEMETRY, b'{"seq": 4}', 1, mid=4, payload_format=1, expiry_s=3600, content_type="application/json"),
    Publish(TELEMETRY, b'{"seq": 5}', 1, mid=5, response_topic="ioc/v1/reply", correlation_data=b"\x00\x01\xff"),
    Publish(TELEMETRY, b'{"seq": 6}', 1, mid=6, subscription_id=300, content_type="application/json"),
    Publish(STATUS, b"online", 1, mid=7, retain=True),
    Publish(TELEMETRY, b'{"seq": 8}', 0, content_type="application/json"),
    Publish(TELEMETRY, b'{"seq": 9}', 2, mid=9, content_type="application/json", user_properties=(("k", "v"),)),
    Publish(TELEMETRY, bytes(range(256)) * (LARGE_PAYLOAD_BYTES // 256), 1, mid=10),
    Publish(UTF8_TOPIC, '{"ghi_chú": "độ ẩm"}'.encode(), 1, mid=11, content_type="application/json"),
    # The first PUBLISH sets alias 7 together with its topic; the next one names only the alias.
    Publish(TELEMETRY, b'{"seq": 12}', 1, mid=12, topic_alias=7, content_type="application/json"),
    Publish("", b'{"seq": 13}', 1, mid=13, topic_alias=7, content_type="application/json"),
    Publish(TELEMETRY, b"", 1, mid=14),
    Publish(SENML, b"[]", 2, mid=15),
    Publish(TELEMETRY, b'{"seq": 16}', 0),
    Publish(TELEMETRY, b'{"seq": 17}', 1, mid=65535, content_type="application/json"),
)

MQTT311_STREAM = (
    Publish(TELEMETRY, b'{"seq": 1}', 1, mid=1),
    Publish(TELEMETRY, b'{"seq": 2}', 0),
    Publish(SENML, b"[]", 2, mid=3),
    Publish(STATUS, b"online", 1, mid=4, retain=True),
    Publish(TELEMETRY, bytes(range(256)) * (LARGE_PAYLOAD_BYTES // 256), 1, mid=5),
    Publish(UTF8_TOPIC, b'{"seq": 6}', 1, mid=6),
    Publish(TELEMETRY, b'{"seq": 7}', 2, mid=7),
)


# --- the scripted peer --------------------------------------------------------------------------------------------


def _recv_exactly(conn: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"peer closed after {len(data)} of {size} bytes")
        data += chunk
    return bytes(data)


def _read_packet(conn: socket.socket) -> bytes | None:
    """One whole MQTT packet as sent (fixed header included), or None at end of stream."""
    first = conn.recv(1)
    if not first:
        return None
    header = bytearray(first)
    length, shift = 0, 0
    while True:
        byte = _recv_exactly(conn, 1)[0]
        header.append(byte)
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    return bytes(header) + _recv_exactly(conn, length)


def _body(packet: bytes) -> bytes:
    """A packet without its fixed header."""
    pos = 1
    while packet[pos] & 0x80:
        pos += 1
    return packet[pos + 1 :]


def _connack(protocol: MQTTProtocolVersion) -> bytes:
    if protocol != mqtt.MQTTv5:
        return _packet(0x20, b"\x00\x00")
    # Receive Maximum, Topic Alias Maximum (for the client's own publishes), Shared Subscription Available.
    props = b"\x21" + _U16.pack(20) + b"\x22" + _U16.pack(10) + b"\x2a\x01"
    return _packet(0x20, b"\x00\x00" + _varint(len(props)) + props)


class ScriptedPeer:
    """The server side of one connection: accepts, answers CONNECT, plays its script, records what comes back."""

    def __init__(self, listener: socket.socket, protocol: MQTTProtocolVersion) -> None:
        self._listener = listener
        self._protocol = protocol
        self._conn: socket.socket | None = None
        self.after_disconnect: list[bytes] = []

    def accept(self) -> None:
        conn, _ = self._listener.accept()
        conn.settimeout(TIMEOUT_S)
        self._conn = conn
        connect_packet = self.read()
        assert connect_packet is not None
        assert connect_packet[0] == 0x10
        level = 5 if self._protocol == mqtt.MQTTv5 else 4
        assert _body(connect_packet)[:7] == b"\x00\x04MQTT" + bytes([level])
        conn.sendall(_connack(self._protocol))

    @property
    def conn(self) -> socket.socket:
        assert self._conn is not None
        return self._conn

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)

    def read(self) -> bytes | None:
        return _read_packet(self.conn)

    def read_until_closed(self) -> list[bytes]:
        packets = []
        while (packet := self.read()) is not None:
            packets.append(packet)
        return packets

    def play(self, stream: Sequence[Publish]) -> list[bytes]:
        """Sends the stream, answers each PUBREC with PUBREL once every first acknowledgement is in, and returns
        the acknowledgements the client sent."""
        self.send(b"".join(p.wire(self._protocol) for p in stream))
        acknowledgements = []
        for _ in range(sum(1 for p in stream if p.qos)):
            packet = self.read()
            assert packet is not None
            acknowledgements.append(packet)
        for p in stream:
            if p.qos == 2:
                self.send(_pubrel(p.mid))
        for _ in range(sum(1 for p in stream if p.qos == 2)):
            packet = self.read()
            assert packet is not None
            acknowledgements.append(packet)
        return acknowledgements

    def finish(self) -> None:
        """Records what the client sends until it closes the connection, then closes this side."""
        if self._conn is not None:
            with self._conn:
                self.after_disconnect = self.read_until_closed()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.settimeout(TIMEOUT_S)
        yield sock


def _client(
    protocol: MQTTProtocolVersion, *, manual_ack: bool, client_class: type[CenterClient] = CenterClient
) -> CenterClient:
    if protocol == mqtt.MQTTv5 and client_class is CenterClient:
        address = BrokerAddress(host="127.0.0.1", port=0)
        return make_client(address, client_id="ioc-test-center", manual_ack=manual_ack)
    return client_class(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id="ioc-test-center",
        protocol=protocol,
        manual_ack=manual_ack,
    )


@contextmanager
def _session(client: CenterClient, listener: socket.socket, protocol: MQTTProtocolVersion) -> Iterator[ScriptedPeer]:
    """The client connected to a scripted peer, its network thread running; on exit the client disconnects and the
    peer keeps what arrived after the script (`after_disconnect`)."""
    host, port = listener.getsockname()[:2]
    if protocol == mqtt.MQTTv5:
        connect(client, BrokerAddress(host=host, port=port), persistent=False)
    else:
        client.connect_async(host, port, keepalive=KEEPALIVE_S)
    peer = ScriptedPeer(listener, protocol)
    client.loop_start()
    try:
        peer.accept()
        # Until paho has read the CONNACK, closing its socket would leave it unread and reset the connection.
        deadline = time.monotonic() + TIMEOUT_S
        while not client.is_connected():
            assert time.monotonic() < deadline, "the client did not take the CONNACK"
            time.sleep(0.001)
        assert isinstance(client.socket(), _BufferedSocket)  # paho still builds its socket through _create_socket
        yield peer
    finally:
        client.disconnect()
        client.loop_stop()
        peer.finish()


def _from_fast_path(message: ReceivedPublish) -> Delivery:
    return _delivery(
        topic=message.topic,
        payload=message.payload,
        qos=message.qos,
        content_type=message.content_type,
        mid=message.mid,
    )


def _from_paho(message: mqtt.MQTTMessage) -> Delivery:
    properties = message.properties
    return _delivery(
        topic=message.topic,
        payload=bytes(message.payload),
        qos=message.qos,
        content_type=getattr(properties, "ContentType", None) if properties is not None else None,
        mid=message.mid,
    )


@dataclass
class Run:
    deliveries: list[Delivery]
    acknowledgements: list[bytes]
    retained_topics: list[str]


def _run_fast_path(listener: socket.socket, protocol: MQTTProtocolVersion, stream: Sequence[Publish]) -> Run:
    client = _client(protocol, manual_ack=False)
    received: list[Delivery] = []
    client.on_publish_received = lambda message: received.append(_from_fast_path(message))
    with _session(client, listener, protocol) as peer:
        acknowledgements = peer.play(stream)
    return Run(received, acknowledgements + peer.after_disconnect, retained_topics=[])


def _run_paho_path(listener: socket.socket, protocol: MQTTProtocolVersion, stream: Sequence[Publish]) -> Run:
    client = _client(protocol, manual_ack=False)
    received: list[Delivery] = []
    retained: list[str] = []

    def on_message(_client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        received.append(_from_paho(message))
        if message.retain:
            retained.append(message.topic)

    client.on_message = on_message
    with _session(client, listener, protocol) as peer:
        acknowledgements = peer.play(stream)
    return Run(received, acknowledgements + peer.after_disconnect, retained)


# --- the tests ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "stream"),
    [(mqtt.MQTTv5, MQTT5_STREAM), (mqtt.MQTTv311, MQTT311_STREAM)],
    ids=["mqtt5", "mqtt311"],
)
def test_fast_path_delivers_the_same_messages_as_paho(
    listener: socket.socket, protocol: MQTTProtocolVersion, stream: Sequence[Publish]
) -> None:
    paho_run = _run_paho_path(listener, protocol, stream)
    fast_run = _run_fast_path(listener, protocol, stream)

    assert paho_run.deliveries == _expected_deliveries(stream)
    assert fast_run.deliveries == paho_run.deliveries
    assert paho_run.retained_topics == [p.topic for p in stream if p.retain]


@pytest.mark.parametrize(
    ("protocol", "stream"),
    [(mqtt.MQTTv5, MQTT5_STREAM), (mqtt.MQTTv311, MQTT311_STREAM)],
    ids=["mqtt5", "mqtt311"],
)
@pytest.mark.parametrize("path", ["fast", "paho"])
def test_each_path_acknowledges_qos_1_with_puback_and_qos_2_with_the_pubrec_pubrel_pubcomp_flow(
    listener: socket.socket, protocol: MQTTProtocolVersion, stream: Sequence[Publish], path: str
) -> None:
    run = (_run_fast_path if path == "fast" else _run_paho_path)(listener, protocol, stream)

    assert run.acknowledgements == _expected_acknowledgements(stream)


@pytest.mark.parametrize(
    ("protocol", "stream"),
    [(mqtt.MQTTv5, MQTT5_STREAM), (mqtt.MQTTv311, MQTT311_STREAM)],
    ids=["mqtt5", "mqtt311"],
)
def test_fast_path_reads_plain_mqtt5_qos_1_publishes_itself_and_leaves_the_rest_to_paho(
    listener: socket.socket, protocol: MQTTProtocolVersion, stream: Sequence[Publish], monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[int | None] = []

    def recording_decode(packet: bytes | bytearray) -> ReceivedPublish | None:
        message = decode_qos1_publish(packet)
        read.append(None if message is None else message.mid)
        return message

    monkeypatch.setattr(mqtt_client.client, "decode_qos1_publish", recording_decode)
    _run_fast_path(listener, protocol, stream)

    if protocol == mqtt.MQTTv5:  # None: a topic alias, handed to paho
        assert read == [p.mid if p.topic_alias is None else None for p in stream if p.qos == 1]
    else:
        assert read == []


class _SendRecordingClient(CenterClient):
    """Records each buffer handed to the socket, to count writes."""

    sends: list[bytes]

    def _sock_send(self, buf: bytes | bytearray) -> int:
        sent = super()._sock_send(buf)
        self.sends.append(bytes(buf[:sent]))
        return sent


def _wait_until(condition: Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(int(TIMEOUT_S / 0.01)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("condition not reached in time")


def test_ack_many_in_manual_ack_mode_sends_every_puback_in_one_write(listener: socket.socket) -> None:
    count = 50
    stream = [
        Publish(TELEMETRY, f'{{"seq": {mid}}}'.encode(), 1, mid=mid, content_type="application/json")
        for mid in range(1, count + 1)
    ]
    client = _client(mqtt.MQTTv5, manual_ack=True, client_class=_SendRecordingClient)
    assert isinstance(client, _SendRecordingClient)
    client.sends = []
    received: list[ReceivedPublish] = []
    client.on_publish_received = received.append
    expected = b"".join(_puback(p.mid) for p in stream)

    with _session(client, listener, mqtt.MQTTv5) as peer:
        peer.send(b"".join(p.wire(mqtt.MQTTv5) for p in stream))
        _wait_until(lambda: len(received) == count)
        client.ack_many([message.mid for message in received])
        acknowledged = _recv_exactly(peer.conn, len(expected))

    assert [message.mid for message in received] == [p.mid for p in stream]
    assert acknowledged == expected  # nothing was acknowledged before ack_many
    assert peer.after_disconnect == [_DISCONNECT]
    assert client.sends.count(expected) == 1


def test_ack_many_with_no_packet_ids_sends_nothing(listener: socket.socket) -> None:
    client = _client(mqtt.MQTTv5, manual_ack=True, client_class=_SendRecordingClient)
    assert isinstance(client, _SendRecordingClient)
    client.sends = []
    with _session(client, listener, mqtt.MQTTv5) as peer:
        client.ack_many([])

    assert peer.after_disconnect == [_DISCONNECT]
    assert client.sends[1:] == [_DISCONNECT]  # CONNECT, then nothing but DISCONNECT
