"""The ingest benchmark's load generator: a minimal MQTT 3.1.1 QoS 1 publisher on a raw socket.

The benchmark measures the center, but its load generator shares the same two cores. paho spends about
100 µs of Python per QoS 1 publish; this writer pre-frames packets, sends them in bulk and counts PUBACKs,
at a few µs per message, so the cores go to what is being measured. It speaks plain MQTT 3.1.1, as many
field devices do, which the center must accept as well as MQTT 5.
"""

from __future__ import annotations

import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from protocol.broker_url import BrokerAddress

CONNACK = 0x20
PUBACK = 0x40
PINGREQ = b"\xc0\x00"
KEEPALIVE_S = 60
SEND_CHUNK_MESSAGES = 64
PACE_S = 0.005
PUBACK_BYTES = 4


class PublishError(Exception):
    """The broker refused or dropped the connection."""


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _utf8(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def connect_packet(client_id: str, *, username: str | None, password: str | None) -> bytes:
    flags = 0x02  # clean session
    payload = _utf8(client_id)
    if username is not None:
        flags |= 0x80
        payload += _utf8(username)
        if password is not None:
            flags |= 0x40
            payload += _utf8(password)
    variable = _utf8("MQTT") + bytes([4, flags]) + struct.pack("!H", KEEPALIVE_S)
    body = variable + payload
    return bytes([0x10]) + _remaining_length(len(body)) + body


def publish_packet(topic: bytes, payload: bytes, packet_id: int) -> bytes:
    body_len = 2 + len(topic) + 2 + len(payload)
    return b"".join(
        (
            b"\x32",
            _remaining_length(body_len),
            struct.pack("!H", len(topic)),
            topic,
            struct.pack("!H", packet_id),
            payload,
        )
    )


@dataclass(slots=True)
class PublishCounts:
    sent: int = 0
    acked: int = 0


class RawPublisher:
    """One MQTT connection publishing QoS 1 messages with at most `window` unacknowledged at a time."""

    def __init__(self, broker: BrokerAddress, *, client_id: str, window: int = 2000) -> None:
        self._sock = socket.create_connection((broker.host, broker.port), timeout=30)
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock.sendall(connect_packet(client_id, username=broker.username, password=broker.password))
        reply = self._sock.recv(4)
        if len(reply) < 4 or reply[0] != CONNACK or reply[3] != 0:
            raise PublishError(f"broker refused the connection: {reply!r}")
        self._sock.setblocking(False)
        self._window = window
        self._pending = b""
        self._next_id = 1
        self._last_io = time.monotonic()
        self.counts = PublishCounts()

    def _read_acks(self, timeout_s: float) -> None:
        readable, _, _ = select.select([self._sock], [], [], timeout_s)
        if not readable:
            return
        data = self._sock.recv(1 << 16)
        if not data:
            raise PublishError("broker closed the connection")
        data = self._pending + data
        # Only PUBACKs (4 bytes) and PINGRESPs (2 bytes) come back on this connection.
        pos, end, acks = 0, len(data), 0
        while pos < end:
            size = PUBACK_BYTES if data[pos] == PUBACK else 2
            if pos + size > end:
                break
            acks += data[pos] == PUBACK
            pos += size
        self.counts.acked += acks
        self._pending = data[pos:]

    def _send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self._sock.send(view)
            except BlockingIOError:
                select.select([], [self._sock], [], 1.0)
                continue
            view = view[sent:]
        self._last_io = time.monotonic()

    def publish_many(self, topics_payloads: list[tuple[bytes, bytes]]) -> None:
        """Send these messages, waiting for acknowledgements while the window is full."""
        while self.counts.sent - self.counts.acked + len(topics_payloads) > self._window:
            self._read_acks(0.05)
        packets = []
        for topic, payload in topics_payloads:
            packets.append(publish_packet(topic, payload, self._next_id))
            self._next_id = self._next_id % 65535 + 1
        self._send(b"".join(packets))
        self.counts.sent += len(packets)
        self._read_acks(0.0)
        if time.monotonic() - self._last_io > KEEPALIVE_S / 2:
            self._send(PINGREQ)

    def drain(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while self.counts.acked < self.counts.sent and time.monotonic() < deadline:
            self._read_acks(0.05)

    def close(self) -> None:
        try:
            self._sock.setblocking(True)
            self._sock.sendall(b"\xe0\x00")  # DISCONNECT
        finally:
            self._sock.close()


def run_publisher(
    publisher: RawPublisher,
    *,
    make_message: Callable[[int], tuple[bytes, bytes]],
    seconds: float,
    rate: float,
    may_send: Callable[[int], bool] = lambda sent: True,
) -> float:
    """Publish `make_message(i)` for `seconds` (at `rate` messages/s, or as fast as `may_send(sent)` allows
    when 0); returns the seconds spent publishing."""
    begin = time.monotonic()
    end = begin + seconds
    i = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if rate > 0:
            # Send what is due in chunks of about PACE_S worth of messages: one write per chunk, not per message.
            count = min(SEND_CHUNK_MESSAGES, int((now - begin) * rate) - i)
            if count < min(SEND_CHUNK_MESSAGES, max(1, int(rate * PACE_S))):
                time.sleep(PACE_S)
                continue
        else:
            if not may_send(publisher.counts.sent):
                time.sleep(0.002)
                continue
            count = SEND_CHUNK_MESSAGES
        publisher.publish_many([make_message(i + k) for k in range(count)])
        i += count
    return time.monotonic() - begin
