"""A fleet of simulated devices, each with its own MQTT connection, all driven from one thread.

paho clients run on an external event loop: their sockets sit in one `selectors` selector, and the loop calls
`loop_read`/`loop_write`/`loop_misc` itself, so one process holds ten thousand connections on one core. Devices
sample on their clock whether or not they are connected; what cannot be sent goes to the on-disk buffer and is
backfilled in `batch` messages, with the original timestamps, after the device reconnects. QoS 1 messages not
acknowledged before a connection loss are resent by paho on reconnect (the center absorbs the duplicates).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import random
import resource
import selectors
import shutil
import ssl
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Final, Literal

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from core.errors import DecodeError
from firmware_sim.buffer import DiskBuffer
from firmware_sim.clock import Clock, WallClock
from firmware_sim.faults import NO_FAULTS, FaultLabel, FaultSpec, ms_to_datetime
from firmware_sim.firmware import Firmware, FirmwareDevice, Message, ReplayDevice, Sample, SimDevice
from protocol.broker_url import BrokerAddress
from protocol.commands import PING, REBOOT, SET_INTERVAL, CommandAck, decode_command, encode_command_ack
from protocol.status import OFFLINE, ONLINE
from protocol.telemetry import MAX_READINGS_PER_MESSAGE, encode_json_batch
from protocol.topics import command_ack_topic, command_topic, status_topic, telemetry_topic

_LOGGER = logging.getLogger(__name__)

KEEPALIVE_S: Final = 60
RECONNECT_MIN_S: Final = 1.0
RECONNECT_MAX_S: Final = 15.0
AUTH_RETRY_S: Final = 30.0  # a device refused after it had been connected (revoked mid-run) tries again
AUTH_GRACE_RETRY_S: Final = 1.0  # within `auth_grace_s`: credentials just registered, the broker not yet synced
REFUSAL_SETTLE_S: Final = 2.0  # after the first fatal refusal, how long the others get to be counted
UNREACHABLE_AFTER_S: Final = 5.0
REBOOT_S: Final = 5.0
MISC_PERIOD_S: Final = 5.0  # each client's keepalive bookkeeping runs this often
POLL_MAX_S: Final = 0.05
COMMIT_EVERY_S: Final = 0.2
INFLIGHT_BATCHES_MAX: Final = 2
FD_HEADROOM: Final = 256
# MQTT 5 reason code 0x04: the broker publishes the Last Will although the client said goodbye.
_DISCONNECT_WITH_WILL: Final = 4
# CONNACK reason codes that refuse the device itself (MQTT 5 §3.2.2.2): client id not valid, bad user name or
# password, not authorized, banned, bad authentication method. Waiting does not change them.
_REFUSED_CODES: Final = frozenset({0x85, 0x86, 0x87, 0x8A, 0x8C})

State = Literal["idle", "queued", "connecting", "connected", "waiting", "offline", "stopped"]


@dataclass(frozen=True, slots=True)
class Replay:
    """A recorded series to stream as one metric of one device."""

    device: SimDevice
    metric: str
    points: Sequence[tuple[float, float]]
    speed: float = 1.0


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """What to simulate and how hard: `interval_s` None means each type's catalogue report interval."""

    broker: BrokerAddress
    devices: Sequence[SimDevice]
    seed: int = 0
    interval_s: float | None = 10.0
    faults: FaultSpec = NO_FAULTS
    replays: Sequence[Replay] = ()
    buffer_dir: Path | None = None
    buffer_max_messages: int = 10_000  # per device: about 28 h at one message every 10 s
    connect_rate_per_s: float = 500.0
    keepalive_s: int = KEEPALIVE_S
    batch_max_messages: int = 100
    drain_messages_per_tick: int = 500
    flush_timeout_s: float = 30.0
    # TLS (an mqtts:// broker): the CA that signed the broker's certificate (None: the system's CAs) and,
    # for brokers that require one, the devices' client certificate and key.
    ca_file: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    # A device whose first connection is refused ends the run (its credentials never worked), except within this
    # many seconds of the start: credentials just registered reach the broker at its next access sync.
    auth_grace_s: float = 0.0
    # No device ever connected and connection attempts kept failing this long: the broker is unreachable.
    unreachable_after_s: float = UNREACHABLE_AFTER_S


FailureKind = Literal["refused", "unreachable", "undelivered"]


@dataclass(frozen=True, slots=True)
class FleetFailure:
    """Why a run ended without doing its job: `refused` devices' credentials (ids in `devices`), an `unreachable`
    broker (`detail` is the last connection error), or messages left `undelivered` (`count`) because the broker
    stopped answering."""

    kind: FailureKind
    count: int
    detail: str = ""
    devices: tuple[str, ...] = ()


def tls_context(config: FleetConfig) -> ssl.SSLContext:
    """One TLS context for the whole fleet (loading the CA once, not per device): verifies the broker."""
    context = ssl.create_default_context(cafile=None if config.ca_file is None else str(config.ca_file))
    if config.client_cert is not None:
        context.load_cert_chain(config.client_cert, config.client_key)
    return context


@dataclass(slots=True)
class FleetStats:
    """Counters of a run. Messages are telemetry messages; a backfill `batch` carries several."""

    devices: int = 0
    connected: int = 0
    connects: int = 0
    disconnects: int = 0  # connections lost without being asked to (broker or network gone)
    fault_disconnects: int = 0  # connections ended on purpose by an `offline` fault or a `reboot` command
    connect_failures: int = 0
    auth_failures: int = 0  # CONNACKs refusing a device (each attempt)
    refused_devices: int = 0  # devices whose first connection was refused (credentials that never worked)
    generated: int = 0  # messages the firmware produced (malformed ones included, duplicates not)
    readings: int = 0  # readings in generated well-formed messages
    malformed: int = 0
    published: int = 0  # telemetry PUBLISH packets handed to MQTT (duplicates and batches each count once)
    published_live: int = 0
    published_batches: int = 0
    acked: int = 0  # telemetry PUBLISH packets the broker acknowledged
    rejected: int = 0  # telemetry PUBLISH packets the broker refused (not authorised)
    buffered: int = 0  # messages in the on-disk buffer now
    buffered_total: int = 0
    backfilled: int = 0  # buffered messages delivered (acknowledged)
    dropped: int = 0  # messages pushed out of a full buffer: never delivered
    dropped_readings: int = 0
    dropped_malformed: int = 0
    unacked: int = 0  # telemetry packets still waiting for an acknowledgement
    commands: int = 0
    faults: dict[str, int] = field(default_factory=dict)
    labels: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    cpu_pct: float = 0.0
    rss_mb: float = 0.0
    peak_rss_mb: float = 0.0

    @property
    def expected_stored_messages(self) -> int:
        """Well-formed messages the center should have stored (each once) if every packet was acknowledged."""
        return self.generated - self.malformed - (self.dropped - self.dropped_malformed)

    @property
    def expected_quarantined(self) -> int:
        """Malformed messages the center should have quarantined."""
        return self.malformed - self.dropped_malformed

    @property
    def expected_rows(self) -> int:
        return self.readings - self.dropped_readings

    @property
    def lost_messages(self) -> int:
        """Telemetry that did not reach the center: pushed out of a full buffer, refused by the broker, or still
        unacknowledged when the run ended. A clean run, reconnects or not, loses none."""
        return self.dropped + self.rejected + self.unacked

    def snapshot(self) -> dict[str, object]:
        doc = asdict(self)
        doc["faults"] = dict(self.faults)
        doc["lost_messages"] = self.lost_messages
        doc["expected_stored_messages"] = self.expected_stored_messages
        doc["expected_quarantined"] = self.expected_quarantined
        doc["expected_rows"] = self.expected_rows
        return doc


@dataclass(frozen=True, slots=True)
class FleetResult:
    """Stats, labels, and the clock time (epoch ms) the devices' sampling grids started from."""

    stats: FleetStats
    labels: tuple[FaultLabel, ...]
    start_ms: int
    failure: FleetFailure | None = None


@dataclass(frozen=True, slots=True)
class _Pending:
    """What the acknowledgement of one packet confirms."""

    kind: Literal["live", "batch", "other"]
    rowids: tuple[int, ...] = ()


class _Device:
    """Runtime of one device: its firmware, its paho client, its connection state and outstanding packets."""

    __slots__ = (
        "ack_topic",
        "attempts",
        "client",
        "cmd_topic",
        "cursor",
        "draining",
        "ever_connected",
        "firmware",
        "index",
        "inflight_batches",
        "pending",
        "settled",
        "spec",
        "state",
        "status_topic",
        "telemetry_topic",
        "unsent",
        "want_offline",
    )

    def __init__(self, index: int, spec: SimDevice, firmware: Firmware) -> None:
        self.index = index
        self.spec = spec
        self.firmware = firmware
        self.client: mqtt.Client | None = None
        self.state: State = "idle"
        self.attempts = 0
        self.want_offline = False
        self.pending: dict[int, _Pending] = {}
        self.inflight_batches = 0
        self.cursor = 0  # highest buffer row id handed to MQTT
        self.unsent = 0  # buffered rows above the cursor
        self.draining = False
        self.settled = False  # its first connection attempt has an outcome (connected, refused or failed)
        self.ever_connected = False
        self.telemetry_topic = telemetry_topic(spec.province, spec.sector, spec.device_id)
        self.status_topic = status_topic(spec.province, spec.sector, spec.device_id)
        self.cmd_topic = command_topic(spec.province, spec.sector, spec.device_id)
        self.ack_topic = command_ack_topic(spec.province, spec.sector, spec.device_id)


def raise_fd_limit(needed: int) -> int:
    """Raise this process's open-file limit towards `needed` (up to the hard limit); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        _LOGGER.warning("open-file limit %d is below the %d this fleet needs", target, needed)
    return target


class Fleet:
    """Runs a fleet: `run(stop, duration_s=…)` blocks, publishing until the duration passes or `stop` is set, then
    flushes buffers and in-flight messages, and returns the stats and the fault labels."""

    def __init__(
        self,
        config: FleetConfig,
        *,
        clock: Clock | None = None,
        labels_path: Path | None = None,
        on_progress: Callable[[FleetStats], None] | None = None,
        progress_every_s: float = 0.5,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or WallClock()
        self.labels_path = labels_path
        self.on_progress = on_progress
        self.progress_every_s = progress_every_s
        self.stats = FleetStats(devices=len(config.devices) + len(config.replays))
        self.labels: list[FaultLabel] = []
        self._net_rng = random.Random(f"{config.seed}:network")
        self._sel: selectors.BaseSelector | None = None
        self._buffer: DiskBuffer | None = None
        self._label_file: IO[str] | None = None
        self._devices: list[_Device] = []
        self._heap: list[tuple[int, int]] = []
        self._connect_queue: deque[int] = deque()
        self._tls: ssl.SSLContext | None = None  # made on the first TLS connection
        self._retry: list[tuple[float, int]] = []
        self._drain_queue: deque[int] = deque()
        self._delivered: list[tuple[str, tuple[int, ...]]] = []
        self._tokens = 0.0
        self._token_t = 0.0
        self._misc_cursor = 0
        self._misc_t = 0.0
        self._stopping = False
        self._refused: list[str] = []
        self._first_refusal_t: float | None = None
        self._unsettled = 0
        self._first_connect_failure_t: float | None = None
        self._last_connect_error = ""
        self._failure: FleetFailure | None = None
        self._connected_at_end = 0
        self._process = psutil.Process()
        self._cpu0 = 0.0
        self._t0 = 0.0
        self._start_ms = 0

    # ------------------------------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event | None = None, *, duration_s: float | None = None) -> FleetResult:
        stop = stop or threading.Event()
        cfg = self.config
        raise_fd_limit(len(cfg.devices) + len(cfg.replays) + FD_HEADROOM)
        temp_dir = None
        buffer_dir = cfg.buffer_dir
        if buffer_dir is None:
            temp_dir = Path(tempfile.mkdtemp(prefix="ioc-sim-buffer-"))
            buffer_dir = temp_dir
        self._t0 = time.monotonic()
        cpu = self._process.cpu_times()
        self._cpu0 = cpu.user + cpu.system
        try:
            with (
                DiskBuffer(buffer_dir / "outbox.sqlite3", max_messages_per_device=cfg.buffer_max_messages) as buf,
                selectors.DefaultSelector() as sel,
                self._open_labels() as label_file,
            ):
                self._buffer, self._sel, self._label_file = buf, sel, label_file
                self._build()
                self._loop(stop, duration_s)
                self._finish_firmware()
                if self._failure is None:  # refused or unreachable: nothing can be delivered, so no waiting
                    self._flush(stop)
                else:
                    self._commit()
                    self._count_unacked()
                self._shutdown()
                self._update_usage()
                self._check_delivered()
            self._write_final_labels()
        finally:
            self._buffer = self._sel = self._label_file = None
            if temp_dir is not None:
                shutil.rmtree(temp_dir, ignore_errors=True)
        return FleetResult(stats=self.stats, labels=tuple(self.labels), start_ms=self._start_ms, failure=self._failure)

    @contextlib.contextmanager
    def _open_labels(self) -> Iterator[IO[str] | None]:
        """The labels file, written as faults start (one line each, flushed) so a live evaluation can read it."""
        if self.labels_path is None:
            yield None
            return
        self.labels_path.parent.mkdir(parents=True, exist_ok=True)
        with self.labels_path.open("w", encoding="utf-8") as fh:
            yield fh

    def _write_final_labels(self) -> None:
        """Replace the live file by the exact labels: the same faults, but the end of a window that a dropout
        stretched or the run cut short is the last sample it really affected."""
        if self.labels_path is None:
            return
        partial = self.labels_path.with_name(self.labels_path.name + ".partial")
        with partial.open("w", encoding="utf-8") as fh:
            fh.writelines(label.to_json() + "\n" for label in self.labels)
        partial.replace(self.labels_path)

    def _build(self) -> None:
        cfg = self.config
        start_ms = self._start_ms = int(self.clock.now() * 1000)
        interval_ms = None if cfg.interval_s is None else max(1, round(cfg.interval_s * 1000))
        firmwares: list[Firmware] = [
            FirmwareDevice(device=d, seed=cfg.seed, start_ms=start_ms, interval_ms=interval_ms, faults=cfg.faults)
            for d in cfg.devices
        ]
        firmwares += [
            ReplayDevice(device=r.device, metric=r.metric, points=r.points, start_ms=start_ms, speed=r.speed)
            for r in cfg.replays
        ]
        assert self._buffer is not None
        backlog = self._buffer.counts()
        self._unsettled = len(firmwares)
        for index, firmware in enumerate(firmwares):
            device = _Device(index, firmware.device, firmware)
            device.unsent = backlog.get(firmware.device.device_id, 0)  # left over from an earlier run
            self._devices.append(device)
            self._heap.append((firmware.next_ms, index))
            self._connect_queue.append(index)
            device.state = "queued"
        self.stats.buffered = self._buffer.total
        heapq.heapify(self._heap)
        self._token_t = self._misc_t = time.monotonic()

    def _loop(self, stop: threading.Event, duration_s: float | None) -> None:
        start = self.clock.now()
        next_progress = next_commit = time.monotonic()
        while not stop.is_set() and self._failure is None:
            now = self.clock.now()
            if duration_s is not None and now - start >= duration_s:
                break
            self._check_failure()
            self._sample_due(int(now * 1000))
            self._service(next_due_ms=self._heap[0][0] if self._heap else None)
            mono = time.monotonic()
            if mono >= next_commit:
                self._commit()
                next_commit = mono + COMMIT_EVERY_S
            if mono >= next_progress:
                self._progress()
                next_progress = mono + self.progress_every_s

    def _service(self, *, next_due_ms: int | None) -> None:
        """One turn of the network: connect some, drain some backlog, wait for and handle socket events."""
        self._connect_some()
        self._drain_some()
        self._misc_some()
        timeout = POLL_MAX_S
        if next_due_ms is not None:
            ahead_s = (next_due_ms / 1000 - self.clock.now()) / self.clock.speed
            timeout = min(POLL_MAX_S, max(0.0, ahead_s))
        self._poll(timeout)

    def _poll(self, timeout: float) -> None:
        assert self._sel is not None
        if not self._sel.get_map():
            time.sleep(timeout)
            return
        for key, mask in self._sel.select(timeout):
            device: _Device = key.data
            client = device.client
            if client is None:
                continue
            if mask & selectors.EVENT_READ:
                client.loop_read()
            if mask & selectors.EVENT_WRITE and client.socket() is not None:
                client.loop_write()

    # ---------------------------------------------------------------------------------------- sampling

    def _sample_due(self, now_ms: int) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            _, index = heapq.heappop(heap)
            device = self._devices[index]
            self._handle_sample(device, device.firmware.step())
            heapq.heappush(heap, (device.firmware.next_ms, index))

    def _handle_sample(self, device: _Device, sample: Sample) -> None:
        stats = self.stats
        stats.generated += sample.generated
        stats.readings += sample.readings
        stats.malformed += sample.malformed
        for kind in sample.started:
            stats.faults[kind] = stats.faults.get(kind, 0) + 1
        for label in sample.labels:
            self.labels.append(label)
            self.stats.labels += 1
        for label in sample.opened:
            self._write_label(label)
        if sample.offline and not device.want_offline:
            device.want_offline = True
            self._go_offline(device)
        elif not sample.offline and device.want_offline:
            device.want_offline = False
            if device.state == "offline":
                device.state = "queued"
                self._connect_queue.appendleft(device.index)
        for message in sample.messages:
            if device.state == "connected":
                self._publish_live(device, message)
            else:
                self._store(device, message)

    def _write_label(self, label: FaultLabel) -> None:
        if self._label_file is not None:
            self._label_file.write(label.to_json() + "\n")
            self._label_file.flush()

    def _publish_live(self, device: _Device, message: Message) -> None:
        client = device.client
        assert client is not None
        info = client.publish(device.telemetry_topic, message.payload(), qos=1)
        device.pending[info.mid] = _Pending("live")
        self.stats.published += 1
        self.stats.published_live += 1

    def _store(self, device: _Device, message: Message) -> None:
        assert self._buffer is not None
        _, dropped = self._buffer.push(
            device.spec.device_id, seq=message.seq, ts_ms=message.ts_ms, readings=message.readings, raw=message.raw
        )
        stats = self.stats
        stats.buffered_total += 1
        device.unsent += 1
        if dropped is None:
            stats.buffered += 1
        else:
            stats.dropped += 1
            stats.dropped_readings += dropped.readings
            stats.dropped_malformed += 1 if dropped.raw else 0
            if dropped.rowid > device.cursor:
                device.unsent -= 1
        if device.state == "connected" and not device.draining:
            self._queue_drain(device)

    # ------------------------------------------------------------------------------------- connections

    def _make_client(self, device: _Device) -> mqtt.Client:
        cfg = self.config
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=device.spec.device_id,
            protocol=mqtt.MQTTv5,
            userdata=device,
        )
        client.username_pw_set(device.spec.device_id, device.spec.password)
        if cfg.broker.tls:
            if self._tls is None:
                self._tls = tls_context(cfg)
            client.tls_set_context(self._tls)
        client.will_set(device.status_topic, OFFLINE, qos=1, retain=True)
        client.max_inflight_messages_set(20)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        client.connect_async(cfg.broker.host, cfg.broker.port, keepalive=cfg.keepalive_s, clean_start=True)
        return client

    def _connect_some(self) -> None:
        mono = time.monotonic()
        rate = self.config.connect_rate_per_s
        self._tokens = min(max(rate * 0.1, 1.0), self._tokens + (mono - self._token_t) * rate)
        self._token_t = mono
        while self._retry and self._retry[0][0] <= mono:
            _, index = heapq.heappop(self._retry)
            device = self._devices[index]
            if device.state == "waiting":
                device.state = "queued"
                self._connect_queue.append(index)
        while self._connect_queue and self._tokens >= 1.0:
            index = self._connect_queue.popleft()
            device = self._devices[index]
            if device.state != "queued" or device.want_offline:
                if device.want_offline:
                    device.state = "offline"
                continue
            self._tokens -= 1.0
            self._connect(index, device)

    def _connect(self, index: int, device: _Device) -> None:
        if device.client is None:
            device.client = self._make_client(device)
        device.state = "connecting"
        try:
            device.client.reconnect()
        except (TimeoutError, OSError) as exc:
            self.stats.connect_failures += 1
            _LOGGER.debug("%s cannot connect: %s", device.spec.device_id, exc)
            self._note_connect_failure(device, str(exc) or type(exc).__name__)
            self._retry_later(index, device)

    def _settle(self, device: _Device) -> None:
        if not device.settled:
            device.settled = True
            self._unsettled -= 1

    def _note_connect_failure(self, device: _Device, error: str) -> None:
        self._settle(device)
        self._last_connect_error = error
        if self._first_connect_failure_t is None:
            self._first_connect_failure_t = time.monotonic()

    def _check_failure(self) -> None:
        """End the run when it cannot do its job: devices refused (once the others had their first answer, or
        after a moment), or a broker that never let one device in."""
        mono = time.monotonic()
        if self._first_refusal_t is not None and (
            self._unsettled <= 0 or mono - self._first_refusal_t >= REFUSAL_SETTLE_S
        ):
            self._failure = FleetFailure("refused", len(self._refused), devices=tuple(self._refused))
        elif (
            self.stats.connects == 0
            and self._first_connect_failure_t is not None
            and mono - self._first_connect_failure_t >= self.config.unreachable_after_s
        ):
            self._failure = FleetFailure("unreachable", self.stats.connect_failures, detail=self._last_connect_error)

    def _check_delivered(self) -> None:
        """After the flush: telemetry left unacknowledged with no device connected means the broker went away."""
        if self._failure is None and self.stats.unacked > 0 and self._connected_at_end == 0:
            self._failure = FleetFailure("undelivered", self.stats.unacked, detail=self._last_connect_error)

    def _retry_later(self, index: int, device: _Device, *, delay_s: float | None = None) -> None:
        if self._stopping:
            device.state = "stopped"
            return
        device.attempts += 1
        if delay_s is None:
            delay_s = min(RECONNECT_MAX_S, RECONNECT_MIN_S * 2 ** min(device.attempts - 1, 6))
            delay_s *= self._net_rng.uniform(0.5, 1.0)  # jitter spreads a reconnect storm
        device.state = "waiting"
        heapq.heappush(self._retry, (time.monotonic() + delay_s, index))

    def _go_offline(self, device: _Device) -> None:
        """An `offline` fault: the link drops without a goodbye, so the broker publishes the Last Will."""
        if device.state == "connected" and device.client is not None:
            self._leave_connected(device, "offline", lost=False)
            device.client.disconnect(reasoncode=ReasonCode(PacketTypes.DISCONNECT, identifier=_DISCONNECT_WITH_WILL))
        elif device.state != "connecting":
            device.state = "offline"

    def _leave_connected(self, device: _Device, state: State, *, lost: bool) -> None:
        """A connection ends: `lost` when nobody asked for it (counted as a reconnect to make), else on purpose."""
        if device.state == "connected":
            self.stats.connected -= 1
            if lost:
                self.stats.disconnects += 1
            elif not self._stopping:
                self.stats.fault_disconnects += 1
        device.state = state

    def _misc_some(self) -> None:
        mono = time.monotonic()
        n = len(self._devices)
        count = min(n, int(n * (mono - self._misc_t) / MISC_PERIOD_S))
        if count <= 0:
            return
        self._misc_t = mono
        for _ in range(count):
            device = self._devices[self._misc_cursor]
            self._misc_cursor = (self._misc_cursor + 1) % n
            if device.client is not None and device.state in ("connected", "connecting"):
                device.client.loop_misc()

    # --------------------------------------------------------------------------- paho callbacks (no I/O)

    def _on_socket_open(self, client: mqtt.Client, device: _Device, sock: object) -> None:
        assert self._sel is not None
        self._sel.register(sock, selectors.EVENT_READ, device)  # type: ignore[arg-type]

    def _on_socket_close(self, client: mqtt.Client, device: _Device, sock: object) -> None:
        if self._sel is None:  # the fleet has ended: a client collected later has nothing to unregister
            return
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(sock)  # type: ignore[arg-type]

    def _on_register_write(self, client: mqtt.Client, device: _Device, sock: object) -> None:
        if self._sel is None:  # the fleet has ended: a client collected later has nothing to unregister
            return
        with contextlib.suppress(KeyError, ValueError):
            self._sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, device)  # type: ignore[arg-type]

    def _on_unregister_write(self, client: mqtt.Client, device: _Device, sock: object) -> None:
        if self._sel is None:  # the fleet has ended: a client collected later has nothing to unregister
            return
        with contextlib.suppress(KeyError, ValueError):
            self._sel.modify(sock, selectors.EVENT_READ, device)  # type: ignore[arg-type]

    def _on_connect(
        self, client: mqtt.Client, device: _Device, flags: object, reason: ReasonCode, props: object
    ) -> None:
        if reason.is_failure:
            self._on_refused(device, reason)
            return
        self._settle(device)
        device.ever_connected = True
        device.state = "connected"
        device.attempts = 0
        self.stats.connected += 1
        self.stats.connects += 1
        client.publish(device.status_topic, ONLINE, qos=1, retain=True)
        client.subscribe(device.cmd_topic, qos=1)
        if device.unsent > 0:
            self._queue_drain(device)
        if device.want_offline:  # the fault began while connecting
            self._go_offline(device)

    def _on_refused(self, device: _Device, reason: ReasonCode) -> None:
        """A CONNACK that refuses the device. Credentials that never worked end the run (outside the grace of
        fresh registrations); a device refused after it had been connected (revoked mid-run) keeps trying."""
        self.stats.auth_failures += 1
        mono = time.monotonic()
        if reason.value not in _REFUSED_CODES:  # server busy or unavailable: try again later
            _LOGGER.debug("broker turned %s away: %s", device.spec.device_id, reason)
            device.state = "waiting"
            heapq.heappush(self._retry, (mono + AUTH_GRACE_RETRY_S, device.index))
            return
        if mono - self._t0 < self.config.auth_grace_s:
            _LOGGER.debug("broker refused %s (within the registration grace): %s", device.spec.device_id, reason)
            device.state = "waiting"
            heapq.heappush(self._retry, (mono + AUTH_GRACE_RETRY_S, device.index))
            return
        if device.ever_connected:
            _LOGGER.warning("broker refused %s, which was connected before: %s", device.spec.device_id, reason)
            device.state = "waiting"
            heapq.heappush(self._retry, (mono + AUTH_RETRY_S, device.index))
            return
        _LOGGER.debug("broker refused %s: %s", device.spec.device_id, reason)
        self._settle(device)
        device.state = "stopped"
        self._refused.append(device.spec.device_id)
        self.stats.refused_devices += 1
        if self._first_refusal_t is None:
            self._first_refusal_t = mono

    def _on_disconnect(
        self, client: mqtt.Client, device: _Device, flags: object, reason: object, props: object
    ) -> None:
        if device.state == "connecting":  # the connection closed before the broker answered
            self._note_connect_failure(device, f"connection closed before the broker answered ({reason})")
        self._leave_connected(device, device.state, lost=True)
        device.inflight_batches = 0  # paho resends them on reconnect; their acks still arrive
        if device.state in ("offline", "stopped", "waiting"):
            return
        if device.want_offline:
            device.state = "offline"
            return
        self._retry_later(device.index, device)

    def _on_publish(self, client: mqtt.Client, device: _Device, mid: int, reason: ReasonCode, props: object) -> None:
        pending = device.pending.pop(mid, None)
        if pending is None or pending.kind == "other":
            return
        if reason.is_failure:
            self.stats.rejected += 1
        else:
            self.stats.acked += 1
        if pending.kind == "batch":
            device.inflight_batches = max(0, device.inflight_batches - 1)
            self._delivered.append((device.spec.device_id, pending.rowids))
            if not reason.is_failure:
                self.stats.backfilled += len(pending.rowids)
            if device.unsent > 0 and not device.draining and device.state == "connected":
                self._queue_drain(device)

    def _on_message(self, client: mqtt.Client, device: _Device, message: mqtt.MQTTMessage) -> None:
        try:
            command = decode_command(bytes(message.payload))
        except DecodeError as exc:
            _LOGGER.info("%s ignores a bad command: %s", device.spec.device_id, exc)
            return
        self.stats.commands += 1
        status, detail = "ok", ""
        if command.name == SET_INTERVAL:
            seconds = command.params["seconds"]
            assert isinstance(seconds, int)
            device.firmware.set_interval(seconds * 1000)
        elif command.name not in (PING, REBOOT):
            status, detail = "error", f"unsupported command {command.name}"
        ack = encode_command_ack(CommandAck(command.command_id, status, detail))
        client.publish(device.ack_topic, ack, qos=1)
        if command.name == REBOOT:
            client.publish(device.status_topic, OFFLINE, qos=1, retain=True)
            client.disconnect()
            self._leave_connected(device, "waiting", lost=False)
            heapq.heappush(self._retry, (time.monotonic() + REBOOT_S, device.index))

    # ------------------------------------------------------------------------------------------ backfill

    def _queue_drain(self, device: _Device) -> None:
        device.draining = True
        self._drain_queue.append(device.index)

    def _drain_some(self) -> None:
        budget = self.config.drain_messages_per_tick
        rounds = len(self._drain_queue)
        while self._drain_queue and budget > 0 and rounds > 0:
            rounds -= 1
            index = self._drain_queue.popleft()
            device = self._devices[index]
            if device.state != "connected" or device.unsent <= 0:
                device.draining = False
                continue
            if device.inflight_batches >= INFLIGHT_BATCHES_MAX:
                device.draining = False  # re-queued by the acknowledgement
                continue
            budget -= self._send_backlog(device)
            if device.unsent > 0:
                self._drain_queue.append(index)
            else:
                device.draining = False

    def _send_backlog(self, device: _Device) -> int:
        assert self._buffer is not None and device.client is not None
        items = self._buffer.peek(device.spec.device_id, after=device.cursor, limit=self.config.batch_max_messages)
        if not items:
            device.unsent = 0
            return 0
        if items[0].raw is not None:
            chosen = items[:1]
            payload = items[0].raw
        else:
            chosen = []
            readings = 0
            for item in items:
                if item.raw is not None or readings + len(item.readings) > MAX_READINGS_PER_MESSAGE:
                    break
                chosen.append(item)
                readings += len(item.readings)
            payload = encode_json_batch([(i.seq, ms_to_datetime(i.ts_ms), i.readings) for i in chosen])
        info = device.client.publish(device.telemetry_topic, payload, qos=1)
        device.pending[info.mid] = _Pending("batch", tuple(i.rowid for i in chosen))
        device.inflight_batches += 1
        device.cursor = chosen[-1].rowid
        device.unsent -= len(chosen)
        self.stats.published += 1
        self.stats.published_batches += 1
        return len(chosen)

    def _commit(self) -> None:
        assert self._buffer is not None
        if self._delivered:
            delivered, self._delivered = self._delivered, []
            self.stats.buffered -= self._buffer.remove(delivered)
        self._buffer.commit()

    # ---------------------------------------------------------------------------------------- shutdown

    def _finish_firmware(self) -> None:
        for device in self._devices:
            self._handle_sample(device, device.firmware.finish())

    def _outstanding(self) -> int:
        return sum(len(d.pending) for d in self._devices) + sum(d.unsent for d in self._devices)

    def _flush(self, stop: threading.Event) -> None:
        """Keep the network going until every buffered and in-flight message is acknowledged (or time is up)."""
        deadline = time.monotonic() + self.config.flush_timeout_s
        next_progress = time.monotonic()
        for device in self._devices:
            if device.want_offline:  # the run ends: offline devices come back to deliver what they hold
                device.want_offline = False
                if device.state == "offline":
                    device.state = "queued"
                    self._connect_queue.append(device.index)
        while time.monotonic() < deadline:
            self._commit()
            if self._outstanding() == 0:
                break
            self._service(next_due_ms=None)
            if time.monotonic() >= next_progress:
                self._progress()
                next_progress = time.monotonic() + self.progress_every_s
        self._commit()
        self._count_unacked()

    def _count_unacked(self) -> None:
        """Telemetry not acknowledged: in flight, or still in the buffer."""
        self.stats.unacked = sum(1 for d in self._devices for p in d.pending.values() if p.kind != "other") + sum(
            d.unsent for d in self._devices
        )

    def _shutdown(self) -> None:
        self._stopping = True
        self._connected_at_end = self.stats.connected
        for device in self._devices:
            client = device.client
            if client is not None and device.state == "connected":
                client.publish(device.status_topic, OFFLINE, qos=1, retain=True)
                client.disconnect()
                self._leave_connected(device, "stopped", lost=False)  # a goodbye, not a lost connection
        deadline = time.monotonic() + 5.0
        assert self._sel is not None
        while self._sel.get_map() and time.monotonic() < deadline:
            self._poll(POLL_MAX_S)
        for device in self._devices:
            if device.client is not None and device.client.socket() is not None:
                with contextlib.suppress(OSError):
                    device.client.disconnect()
                    device.client.loop_write()
            device.state = "stopped"
        self.stats.connected = 0

    # ------------------------------------------------------------------------------------------ progress

    def _update_usage(self) -> None:
        cpu = self._process.cpu_times()
        stats = self.stats
        stats.elapsed_s = time.monotonic() - self._t0
        stats.cpu_s = cpu.user + cpu.system - self._cpu0
        stats.cpu_pct = 100 * stats.cpu_s / stats.elapsed_s if stats.elapsed_s > 0 else 0.0
        stats.rss_mb = self._process.memory_info().rss / 1e6
        stats.peak_rss_mb = max(stats.peak_rss_mb, stats.rss_mb)

    def _progress(self) -> None:
        self._update_usage()
        self.stats.unacked = sum(len(d.pending) for d in self._devices)
        if self.on_progress is not None:
            self.on_progress(self.stats)


def run_fleet(
    config: FleetConfig,
    *,
    duration_s: float,
    clock: Clock | None = None,
    labels_path: Path | None = None,
    stop: threading.Event | None = None,
    on_progress: Callable[[FleetStats], None] | None = None,
) -> FleetResult:
    """Run `config` for `duration_s` seconds of clock time, flush, and return the stats and the fault labels."""
    fleet = Fleet(config, clock=clock, labels_path=labels_path, on_progress=on_progress)
    return fleet.run(stop, duration_s=duration_s)
