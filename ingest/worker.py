"""One ingest worker: MQTT subscription → decode → validate → batch → COPY → commit → acknowledge.

paho's network thread only decodes and queues (STYLE 4); the calling thread drains the queue in batches, so a
full queue blocks the network thread and the broker stops sending to this worker (back-pressure). A QoS 1
message is acknowledged only after the transaction holding its rows (or its quarantine entry) has committed.
A message with some bad readings has its good ones stored and a quarantine entry listing the bad ones, in the
same transaction.
With `IngestConfig.jetstream` set, the messages come from a NATS JetStream durable consumer instead
(`ingest.jetstream_source`): the same decode, batch, commit, then acknowledge.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.errors import DecodeError, ValidationError
from core.lifecycle import running_in_thread
from devices.access import access_version
from devices.audit import record_audit
from devices.catalog import Catalog
from devices.registry import DeviceRecord, lookup_devices
from ingest import metrics
from ingest.jetstream_source import JetStreamSource, JetStreamSourceConfig
from ingest.quarantine_limit import QuarantineLimiter
from ingest.validate import ReadingSplitter, summarize_refusals
from mqtt_client.client import CenterClient, connect, make_client
from mqtt_client.publish_reader import ReceivedPublish
from protocol.broker_url import BrokerAddress
from protocol.telemetry import Telemetry, decode_telemetry
from protocol.topics import (
    TELEMETRY_FILTER,
    TELEMETRY_SENML_FILTER,
    TopicAddress,
    parse_topic,
    shared_filter,
)
from store.pool import Pool, open_pool
from store.quarantine import (
    QuarantinedMessage,
    QuarantinedReading,
    SuppressedCount,
    add_suppressed,
    delete_expired,
    insert_quarantined,
)
from store.readiness import beat
from store.readings import LatestValues, ReadingRow, upsert_latest, write_readings

_LOGGER = logging.getLogger(__name__)

UNKNOWN_DEVICE_RECHECK_S = 5.0
# A device moved to another province or decommissioned is noticed within this long.
KNOWN_DEVICE_TTL_S = 30.0
DB_RETRY_MAX_DELAY_S = 5.0
QUEUE_PUT_TIMEOUT_S = 1.0
# Backfilled readings are old on purpose; only readings this fresh count toward live latency.
LIVE_LATENCY_WINDOW_S = 60.0
# device_latest is refreshed at most this often (and whenever ingest is idle), not with every batch.
LATEST_FLUSH_S = 1.0
TOPIC_CACHE_MAX = 200_000
# The registry's access version is read this often (one query, never per message): a revoked or decommissioned
# device's cached entry is dropped within about this long.
ACCESS_CHECK_S = 1.0
# Refused telemetry (revoked, decommissioned, unknown) is written to the device's audit trail at most this often.
REFUSAL_AUDIT_S = 300.0
REFUSAL_REASONS = frozenset({"credential_revoked", "device_decommissioned", "unknown_device"})
RETENTION_SWEEP_S = 300.0
# Every this long the worker records that it is alive and whether it is subscribed (`/readyz`).
HEARTBEAT_S = 2.0


@dataclass(frozen=True, slots=True)
class IngestConfig:
    database_url: str
    broker: BrokerAddress
    client_id: str
    group: str = "ioc-ingest"
    # One worker subscribes directly; several share one MQTT 5 shared subscription. Mosquitto 2.0 does not
    # restore shared subscriptions from its persistence file: across a broker restart a shared group loses
    # what was queued for it and what arrives before it resubscribes (measured: 411 of 3,000 messages),
    # while a direct persistent subscription loses nothing. So the single-worker default is restart-safe.
    shared_subscription: bool = False
    # Set: consume a NATS JetStream durable consumer instead of subscribing on `broker` (the distributed path,
    # where several workers stay restart-safe).
    jetstream: JetStreamSourceConfig | None = None
    batch_max_rows: int = 5000
    batch_max_wait_s: float = 0.05
    queue_max_messages: int = 20000
    max_payload_bytes: int = 256 * 1024
    max_future_s: float = 300.0
    # Quarantine limits: per device and minute this many bad messages are stored in full, then one in
    # `quarantine_sample_every`; the rest are counted. Payloads are cut at `quarantine_payload_max_bytes`.
    quarantine_per_minute: int = 60
    quarantine_sample_every: int = 100
    quarantine_payload_max_bytes: int = 16 * 1024
    quarantine_retention_s: float = 14 * 86400.0


@dataclass(slots=True)
class _Inbound:
    """A received message and what decoding made of it."""

    mid: int
    qos: int
    generation: int
    topic: str
    payload: bytes
    address: TopicAddress | None = None
    telemetry: Telemetry | None = None
    error: DecodeError | None = None
    # Quarantine only: the entry, the limiter's decision (kept in full or counted) and its minute, the decision
    # fixed on first sight so that a batch retried after a database outage is counted once.
    quarantined: QuarantinedMessage | None = None
    kept: bool | None = None
    window_s: int = 0


class _Inbox:
    """The hand-off from paho's network thread to the writer: a deque (atomic append and popleft) with
    events touched only on transitions, because a locked queue per message costs more than decoding it."""

    def __init__(self, capacity: int) -> None:
        self._items: deque[_Inbound] = deque()
        self._capacity = capacity
        self._nonempty = threading.Event()
        self._space = threading.Event()
        self._space.set()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: _Inbound, stop: threading.Event) -> bool:
        """Append, waiting while full (back-pressure: the network thread stops reading). False if stopped."""
        while len(self._items) >= self._capacity:
            metrics.BACKPRESSURE.inc()
            self._space.clear()
            if len(self._items) < self._capacity:
                break
            if stop.is_set():
                return False
            self._space.wait(QUEUE_PUT_TIMEOUT_S)
        self._items.append(item)
        if not self._nonempty.is_set():
            self._nonempty.set()
        return True

    def pop(self) -> _Inbound | None:
        try:
            item = self._items.popleft()
        except IndexError:
            return None
        if not self._space.is_set() and len(self._items) < self._capacity:
            self._space.set()
        return item

    def wait(self, timeout_s: float) -> bool:
        """Wait until something is in the inbox (or the timeout passes)."""
        if self._items:
            return True
        self._nonempty.clear()
        if self._items:
            return True
        return self._nonempty.wait(timeout_s)


@dataclass(slots=True)
class _Batch:
    items: list[_Inbound] = field(default_factory=list)
    readings: int = 0


class IngestWorker:
    """Owns one MQTT client and one database pool; `run(stop)` blocks until `stop` is set."""

    def __init__(self, config: IngestConfig, *, catalog: Catalog, on_ready: Callable[[], None] | None = None) -> None:
        self._config = config
        self._catalog = catalog
        self._inbox = _Inbox(config.queue_max_messages)
        self._generation = 0
        self._connected = threading.Event()
        self._on_ready = on_ready
        self._stop = threading.Event()
        self._devices: dict[str, DeviceRecord] = {}
        self._known_until: dict[str, float] = {}
        self._unknown_until: dict[str, float] = {}
        self._client: CenterClient | None = None
        self._jetstream: JetStreamSource | None = None
        self._latest = LatestValues()
        self._addresses: dict[str, TopicAddress] = {}
        self._latest_flushed = 0.0
        self._access_version = -1
        self._access_checked = 0.0
        self._limiter = QuarantineLimiter(
            per_window=config.quarantine_per_minute, sample_every=config.quarantine_sample_every
        )
        self._refusals_audited: dict[str, float] = {}
        self._retention_next = 0.0
        self._heartbeat_next = 0.0

    # --- paho callbacks: network thread, no I/O -------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            _LOGGER.warning("broker refused ingest connection: %s", reason)
            return
        self._generation += 1
        direct = [TELEMETRY_FILTER, TELEMETRY_SENML_FILTER]
        shared = [shared_filter(self._config.group, f) for f in direct]
        filters, stale = (shared, direct) if self._config.shared_subscription else (direct, shared)
        client.subscribe([(f, 1) for f in filters])
        if flags.session_present:
            # A session kept from a run with another worker count still holds the other kind of subscription
            # (worker 0 is direct alone, shared among several): left in place, every message would come twice.
            # Dropped after subscribing, so that no message falls between the two.
            client.unsubscribe(stale)
        _LOGGER.info("ingest %s connected (session present: %s)", self._config.client_id, flags.session_present)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        refused = [r for r in reasons if r.is_failure]
        if refused:
            _LOGGER.error("broker refused the ingest subscription: %s", refused)
            return
        metrics.CONNECTED.set(1)
        # Ready only once subscribed: the broker keeps nothing for a subscription it has not yet made.
        self._connected.set()
        if self._on_ready is not None:
            self._on_ready()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._connected.clear()
        metrics.CONNECTED.set(0)
        if not self._stop.is_set():
            _LOGGER.warning("ingest %s lost the broker: %s", self._config.client_id, reason)

    def _on_publish(self, message: ReceivedPublish) -> None:
        item = _Inbound(
            mid=message.mid,
            qos=message.qos,
            generation=self._generation,
            topic=message.topic,
            payload=message.payload,
        )
        content_type = message.content_type
        try:
            item.address = self._address(item.topic)
            item.telemetry = decode_telemetry(
                item.payload,
                content_type=content_type,
                senml_topic=item.address.senml,
                max_bytes=self._config.max_payload_bytes,
            )
        except DecodeError as exc:
            item.error = exc
        # When stopping with a full inbox the message is dropped unacknowledged: the broker delivers it again.
        self._inbox.put(item, self._stop)

    def _address(self, topic: str) -> TopicAddress:
        """`parse_topic`, remembered: a device publishes on the same topic again and again."""
        address = self._addresses.get(topic)
        if address is None:
            if len(self._addresses) >= TOPIC_CACHE_MAX:
                self._addresses.clear()
            address = self._addresses[topic] = parse_topic(topic)
        return address

    # --- the writer: calling thread --------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        self._stop = stop
        cfg = self._config
        receiving = self._receiving_jetstream if cfg.jetstream is not None else self._receiving_mqtt
        with open_pool(cfg.database_url, min_size=1, max_size=2, name=f"ingest-{cfg.client_id}") as pool, receiving():
            while not stop.is_set():
                if self._jetstream is not None and self._jetstream.failed.is_set():
                    raise RuntimeError("the JetStream pull loop ended; the supervisor restarts this worker")
                batch = self._collect(stop)
                if batch.items:
                    self._commit(pool, batch, stop)
                elif len(self._latest):
                    self._flush_latest(pool)
                else:
                    self._sweep_retention(pool)
                self._heartbeat(pool)

    @contextlib.contextmanager
    def _receiving_mqtt(self) -> Iterator[None]:
        cfg = self._config
        client = make_client(cfg.broker, client_id=cfg.client_id, manual_ack=True, persistent=True)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_publish_received = self._on_publish
        self._client = client
        connect(client, cfg.broker, persistent=True)
        client.loop_start()
        try:
            yield
        finally:
            client.disconnect()
            client.loop_stop()
            self._client = None

    @contextlib.contextmanager
    def _receiving_jetstream(self) -> Iterator[None]:
        config = self._config.jetstream
        assert config is not None
        source = JetStreamSource(
            config,
            client_name=self._config.client_id,
            deliver=self._on_publish,
            capacity=self._config.queue_max_messages,
            on_ready=self._source_ready,
            on_lost=self._source_lost,
        )
        self._jetstream = source
        try:
            with running_in_thread(source.run, name=f"jetstream-{self._config.client_id}"):
                yield
        finally:
            self._jetstream = None

    def _source_ready(self) -> None:
        metrics.CONNECTED.set(1)
        self._connected.set()
        if self._on_ready is not None:
            self._on_ready()

    def _source_lost(self) -> None:
        self._connected.clear()
        metrics.CONNECTED.set(0)

    def wait_connected(self, timeout_s: float) -> bool:
        """True once connected and subscribed."""
        return self._connected.wait(timeout_s)

    def _collect(self, stop: threading.Event) -> _Batch:
        """Messages until the batch holds `batch_max_rows` readings or its first message waited long enough."""
        batch = _Batch()
        if not self._inbox.wait(0.1):
            return batch
        deadline = time.monotonic() + self._config.batch_max_wait_s
        while batch.readings < self._config.batch_max_rows:
            item = self._inbox.pop()
            if item is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or stop.is_set():
                    break
                self._inbox.wait(min(remaining, 0.01))
                continue
            self._add(batch, item)
        return batch

    @staticmethod
    def _add(batch: _Batch, item: _Inbound) -> None:
        batch.items.append(item)
        if item.telemetry is not None:
            batch.readings += len(item.telemetry.readings)

    def _check_access_version(self, pool: Pool, now: float) -> None:
        """Forget every cached device when the registry's access changed (a revocation, a decommissioning)."""
        if now < self._access_checked + ACCESS_CHECK_S:
            return
        with pool.connection() as conn:
            version = access_version(conn)
        self._access_checked = now
        if version != self._access_version:
            self._known_until.clear()
            self._unknown_until.clear()
            self._access_version = version

    def _resolve_devices(self, pool: Pool, items: Sequence[_Inbound]) -> None:
        now = time.monotonic()
        self._check_access_version(pool, now)
        missing = {
            it.address.device_id
            for it in items
            if it.address is not None
            and self._known_until.get(it.address.device_id, 0.0) <= now
            and self._unknown_until.get(it.address.device_id, 0.0) <= now
        }
        if not missing:
            return
        with pool.connection() as conn:
            found = lookup_devices(conn, sorted(missing))
        self._devices.update(found)
        for device_id in found:
            self._known_until[device_id] = now + KNOWN_DEVICE_TTL_S
        for device_id in missing - found.keys():
            self._devices.pop(device_id, None)
            self._known_until.pop(device_id, None)
            self._unknown_until[device_id] = now + UNKNOWN_DEVICE_RECHECK_S

    def _split(self, it: _Inbound, splitter: ReadingSplitter) -> int:
        """Judge one decoded message with `splitter` (its good rows and refused readings go to the splitter's lists);
        return the rows appended. Raises DecodeError/ValidationError when the message must be quarantined whole."""
        if it.error is not None:
            raise it.error
        if it.address is None or it.telemetry is None:
            raise DecodeError("bad_topic", it.topic)
        device = self._devices.get(it.address.device_id)
        if device is None:
            raise ValidationError("unknown_device", it.address.device_id)
        device_type = self._catalog.get(device.type_code)
        if device_type is None:
            raise ValidationError("unknown_device_type", device.type_code)
        return splitter.split(address=it.address, telemetry=it.telemetry, device=device, device_type=device_type)

    def _prepare(self, items: Sequence[_Inbound]) -> tuple[list[ReadingRow], list[QuarantinedMessage]]:
        """The rows to store and the entries to quarantine (each also noted on its item, for `_limit`): a message
        refused whole, or one whose good readings are stored and whose entry lists the readings it refused."""
        rows: list[ReadingRow] = []
        bad: list[QuarantinedMessage] = []
        refused: list[QuarantinedReading] = []  # one message's, reused: nothing is allocated when all are good
        splitter = ReadingSplitter(
            now=datetime.now(UTC), max_future=timedelta(seconds=self._config.max_future_s), rows=rows, refused=refused
        )
        for it in items:
            it.quarantined = None  # a retried batch judges again (the clock moved on)
            try:
                stored = self._split(it, splitter)
            except (DecodeError, ValidationError) as exc:
                it.quarantined = _entry(it, reason=exc.reason, detail=exc.detail)
                bad.append(it.quarantined)
                continue
            if refused:
                reason, detail = summarize_refusals(refused, stored=stored)
                it.quarantined = _entry(
                    it, reason=reason, detail=detail, readings_stored=stored, refused_readings=tuple(refused)
                )
                bad.append(it.quarantined)
                refused.clear()
        return rows, bad

    def _limit(self, items: Sequence[_Inbound]) -> tuple[list[QuarantinedMessage], list[SuppressedCount]]:
        """The bad messages stored in full, and the counts of those beyond their device's rate limit."""
        now_s = time.time()
        kept: list[QuarantinedMessage] = []
        counted: dict[tuple[str, int], SuppressedCount] = {}
        for it in items:
            q = it.quarantined
            if q is None:
                continue
            key = q.device_id or ""
            if it.kept is None:
                it.kept = self._limiter.admit(key, now_s)
                it.window_s = self._limiter.window_start(now_s)
            if it.kept:
                kept.append(q)
                continue
            before = counted.get((key, it.window_s))
            counted[(key, it.window_s)] = SuppressedCount(
                device_key=key,
                window_start=datetime.fromtimestamp(it.window_s, UTC),
                province=q.province,
                sector=q.sector,
                messages=(before.messages if before else 0) + 1,
                bytes=(before.bytes if before else 0) + len(q.payload),
                last_reason=q.reason,
            )
        return kept, list(counted.values())

    def _refusals_due(self, bad: Sequence[QuarantinedMessage]) -> dict[str, QuarantinedMessage]:
        """Refused devices whose audit trail has not heard of a refusal lately (one entry per device)."""
        now = time.monotonic()
        due: dict[str, QuarantinedMessage] = {}
        for q in bad:
            if (
                q.reason in REFUSAL_REASONS
                and q.device_id is not None
                and q.device_id not in due
                and self._refusals_audited.get(q.device_id, -REFUSAL_AUDIT_S) + REFUSAL_AUDIT_S <= now
            ):
                due[q.device_id] = q
        return due

    def _heartbeat(self, pool: Pool) -> None:
        now = time.monotonic()
        if now < self._heartbeat_next:
            return
        self._heartbeat_next = now + HEARTBEAT_S
        try:
            with pool.connection() as conn, conn.transaction():
                beat(conn, client_id=self._config.client_id, connected=self._connected.is_set())
        except psycopg.OperationalError:
            pass  # the database is away: the batch path says so, and a missing heartbeat is the signal

    def _sweep_retention(self, pool: Pool) -> None:
        """While idle, now and then: drop quarantine entries older than the retention period."""
        now = time.monotonic()
        if now < self._retention_next:
            return
        self._retention_next = now + RETENTION_SWEEP_S
        try:
            with pool.connection() as conn, conn.transaction():
                dropped = delete_expired(conn, older_than=timedelta(seconds=self._config.quarantine_retention_s))
        except psycopg.OperationalError as exc:
            _LOGGER.warning("quarantine retention not applied, will retry: %s", exc)
            self._retention_next = now + 5.0
            return
        if dropped:
            _LOGGER.info("quarantine retention dropped %d entries", dropped)

    def _commit(self, pool: Pool, batch: _Batch, stop: threading.Event) -> None:
        """Write the batch until it commits (retrying through database outages), then acknowledge it."""
        delay = 0.1
        while True:
            try:
                self._resolve_devices(pool, batch.items)
                rows, bad = self._prepare(batch.items)
                kept, suppressed = self._limit(batch.items) if bad else ([], [])
                audits = self._refusals_due(bad)
                started = time.monotonic()
                self._latest.add(rows)  # idempotent: a retried batch adds the same rows again
                flush_latest = started - self._latest_flushed >= LATEST_FLUSH_S
                with pool.connection() as conn, conn.transaction():
                    result = write_readings(conn, rows)
                    insert_quarantined(conn, kept, payload_max_bytes=self._config.quarantine_payload_max_bytes)
                    add_suppressed(conn, suppressed)
                    for device_id, q in sorted(audits.items()):
                        record_audit(
                            conn,
                            actor="ingest",
                            action="telemetry_refused",
                            target=device_id,
                            details={"reason": q.reason, "topic": q.topic[:200]},
                        )
                    if flush_latest:
                        upsert_latest(conn, self._latest.rows())
                break
            except psycopg.OperationalError as exc:
                metrics.DB_RETRIES.inc()
                _LOGGER.warning("batch of %d messages not committed, retrying: %s", len(batch.items), exc)
                if stop.wait(delay):
                    return  # shutting down: unacknowledged messages are redelivered to the group
                delay = min(delay * 2, DB_RETRY_MAX_DELAY_S)
        committed = time.time()
        if flush_latest:
            self._latest.clear()
            self._latest_flushed = started
        metrics.COMMIT_SECONDS.observe(time.monotonic() - started)
        metrics.BATCH_ROWS.observe(len(rows))
        metrics.ROWS.inc(result.inserted)
        metrics.DUPLICATE_ROWS.inc(result.duplicates)
        if bad:
            _count_quarantined(bad)
        if suppressed:
            metrics.QUARANTINE_SUPPRESSED.inc(sum(c.messages for c in suppressed))
        refused_at = time.monotonic()
        for device_id in audits:
            self._refusals_audited[device_id] = refused_at
        for row in rows[:: max(1, len(rows) // 50)]:  # a sample is enough for the latency histogram
            age = committed - row[0].timestamp()
            if 0 <= age < LIVE_LATENCY_WINDOW_S:
                metrics.LATENCY_SECONDS.observe(age)
        self._acknowledge(batch.items)
        # Counted per batch, not per message: a metric update takes a lock, which costs on the hot path.
        metrics.MESSAGES.inc(len(batch.items))
        metrics.QUEUE_DEPTH.set(len(self._inbox))

    def _flush_latest(self, pool: Pool) -> None:
        """While idle, bring `device_latest` up to date (a failure just leaves it for the next try)."""
        if time.monotonic() - self._latest_flushed < LATEST_FLUSH_S:
            return
        try:
            with pool.connection() as conn, conn.transaction():
                upsert_latest(conn, self._latest.rows())
        except psycopg.OperationalError as exc:
            _LOGGER.warning("device_latest not refreshed, will retry: %s", exc)
            return
        self._latest.clear()
        self._latest_flushed = time.monotonic()

    def _acknowledge(self, items: Sequence[_Inbound]) -> None:
        if self._jetstream is not None:
            # Stream acknowledgements stay valid across reconnects: no generation to check.
            self._jetstream.acknowledge([it.mid for it in items])
            return
        client = self._client
        if client is None:
            return
        generation = self._generation
        # A message from before a reconnect is redelivered by the broker; its old packet id means nothing now.
        client.ack_many([it.mid for it in items if it.qos == 1 and it.generation == generation])


def _entry(
    it: _Inbound,
    *,
    reason: str,
    detail: str,
    readings_stored: int = 0,
    refused_readings: tuple[QuarantinedReading, ...] = (),
) -> QuarantinedMessage:
    address = it.address
    return QuarantinedMessage(
        topic=it.topic,
        device_id=address.device_id if address is not None else None,
        reason=reason,
        detail=detail,
        payload=it.payload,
        province=address.province if address is not None else None,
        sector=address.sector if address is not None else None,
        readings_stored=readings_stored,
        refused_readings=refused_readings,
    )


def _count_quarantined(bad: Sequence[QuarantinedMessage]) -> None:
    """Messages refused whole by reason, messages stored in part, and readings refused one by one by reason
    (summed first: each counter update takes a lock)."""
    refused: dict[str, int] = {}
    for q in bad:
        if q.readings_stored:
            metrics.PARTIAL_MESSAGES.inc()
        else:
            metrics.QUARANTINED.labels(reason=q.reason).inc()
        for r in q.refused_readings:
            refused[r.reason] = refused.get(r.reason, 0) + 1
    for reason, count in sorted(refused.items()):
        metrics.READINGS_REFUSED.labels(reason=reason).inc(count)
