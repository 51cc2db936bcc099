"""Ingest's messages from a NATS JetStream cluster: one durable pull consumer shared by every worker.

Devices publish MQTT to any node of the cluster; nats-server stores each QoS 1 PUBLISH in the account's
`$MQTT_msgs` stream (replicated, interest retention) before it sends PUBACK, so a message a device saw
acknowledged is on a majority of nodes. Every ingest worker pulls from the same durable consumer on that stream
(the consumer, not a connection, holds the position: workers and nodes come and go), and acknowledges a message
only after the batch holding it has committed. A message whose worker died is delivered again after `ack_wait_s`,
to whichever worker pulls next; the readings' unique key absorbs what had been committed already.

nats-py is asyncio: the connection lives on this source's own thread and event loop. The worker's writer thread
hands acknowledgements over with `acknowledge`, which never blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy, StorageType, StreamConfig

from ingest import metrics
from mqtt_client.publish_reader import ReceivedPublish

if TYPE_CHECKING:
    from nats.aio.client import Client as NatsClient
    from nats.aio.msg import Msg
    from nats.js.client import JetStreamContext

_LOGGER = logging.getLogger(__name__)

# nats-server keeps QoS 1 MQTT messages of an account in this stream; MQTT topic `a/b/c` is subject `a.b.c` there,
# behind this prefix (embedded.nats holds the same names for the nodes it configures).
MQTT_STREAM: Final = "$MQTT_msgs"
MQTT_STREAM_SUBJECT_PREFIX: Final = "$MQTT.msgs."
TELEMETRY_FILTER: Final = MQTT_STREAM_SUBJECT_PREFIX + "ioc.v1.>"
_TELEMETRY_SUFFIXES: Final = (".telemetry", ".telemetry.senml")
RECONNECT_WAIT_S: Final = 0.5
CONNECT_TIMEOUT_S: Final = 2.0
API_TIMEOUT_S: Final = 5.0
FETCH_WAIT_S: Final = 0.5
RETRY_DELAY_S: Final = 0.5
CLOSE_TIMEOUT_S: Final = 5.0
# A node that went silent (cut off, not closed) is noticed within about PING_INTERVAL_S x (MAX_OUTSTANDING_PINGS + 1);
# nats-py's default (120 s x 2) would leave the worker pulling from nothing for minutes.
PING_INTERVAL_S: Final = 2
MAX_OUTSTANDING_PINGS: Final = 2


@dataclass(frozen=True, slots=True)
class JetStreamSourceConfig:
    """Where the cluster is and how the shared consumer is made; `repr` never shows the password."""

    servers: tuple[str, ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    durable: str = "ioc-ingest"
    stream: str = MQTT_STREAM
    filter_subject: str = TELEMETRY_FILTER
    subject_prefix: str = MQTT_STREAM_SUBJECT_PREFIX
    # Unacknowledged this long (a worker died or lost the cluster): delivered again to any worker.
    ack_wait_s: float = 30.0
    # Messages delivered and not yet acknowledged, over all workers; beyond it the cluster waits for acks.
    max_ack_pending: int = 50_000
    fetch_batch: int = 1000
    # The stream is created with this many replicas when ingest starts before any device ever connected (the
    # consumer must exist before the first message: the stream keeps only what a consumer is interested in).
    stream_replicas: int = 3


def subject_topic(subject: str, prefix: str) -> str | None:
    """The MQTT topic of a stream subject (`$MQTT.msgs.ioc.v1.p.s.d.telemetry` → `ioc/v1/p/s/d/telemetry`), None
    for what is not telemetry (status, command acks: other parts of the center read those)."""
    if not subject.startswith(prefix) or not subject.endswith(_TELEMETRY_SUFFIXES):
        return None
    # nats-server refuses '.' in MQTT topics, so every '.' here was a '/'.
    return subject[len(prefix) :].replace(".", "/")


class JetStreamSource:
    """One worker's connection to the cluster and its pull loop: `run(stop)` on a thread (`running_in_thread`).

    Each message is handed to `deliver` as a `ReceivedPublish` whose `mid` is this source's own number for it;
    `acknowledge(mids)` acks those after commit. At most `capacity` messages are held unacknowledged."""

    def __init__(
        self,
        config: JetStreamSourceConfig,
        *,
        client_name: str,
        deliver: Callable[[ReceivedPublish], None],
        capacity: int,
        on_ready: Callable[[], None],
        on_lost: Callable[[], None],
    ) -> None:
        self._config = config
        self._client_name = client_name
        self._deliver = deliver
        self._capacity = capacity
        self._on_ready = on_ready
        self._on_lost = on_lost
        self._held: dict[int, Msg] = {}
        self._next_mid = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._acking: set[asyncio.Task[None]] = set()
        self.skipped = 0
        # Set when the pull loop ended without being asked to: the worker exits and its supervisor restarts it.
        self.failed = threading.Event()

    def run(self, stop: threading.Event) -> None:
        try:
            asyncio.run(self._main(stop))
        finally:
            if not stop.is_set():
                self._on_lost()
                self.failed.set()

    def acknowledge(self, mids: Sequence[int]) -> None:
        """Ack these messages (their batch committed); called from the writer thread, returns at once."""
        msgs = [m for m in (self._held.pop(mid, None) for mid in mids) if m is not None]
        loop = self._loop
        if msgs and loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: unacked messages come again
                loop.call_soon_threadsafe(self._start_acking, msgs)

    # --- the event loop's side ---------------------------------------------------------------------------

    def _start_acking(self, msgs: list[Msg]) -> None:
        task = asyncio.get_running_loop().create_task(self._ack_all(msgs))
        self._acking.add(task)
        task.add_done_callback(self._acking.discard)

    @staticmethod
    async def _ack_all(msgs: list[Msg]) -> None:
        try:
            for msg in msgs:
                await msg.ack()
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            # Not acknowledged: the cluster delivers these again after ack_wait; the unique key absorbs them.
            _LOGGER.warning("acknowledging %d messages failed, they will be redelivered: %s", len(msgs), exc)

    async def _main(self, stop: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        nc = await self._connect(stop)
        if nc is None:
            return
        try:
            js = nc.jetstream(timeout=API_TIMEOUT_S)
            sub = await self._bind(js, stop)
            if sub is None:
                return
            self._on_ready()
            await self._pull(sub, stop)
        finally:
            if self._acking:
                await asyncio.wait(set(self._acking), timeout=CLOSE_TIMEOUT_S)
            with contextlib.suppress(nats.errors.Error, TimeoutError):
                await asyncio.wait_for(nc.flush(), CLOSE_TIMEOUT_S)
            with contextlib.suppress(nats.errors.Error):
                await nc.close()

    async def _connect(self, stop: threading.Event) -> NatsClient | None:
        cfg = self._config

        async def disconnected() -> None:
            if not stop.is_set():
                _LOGGER.warning("ingest %s lost the NATS cluster; reconnecting", self._client_name)
            self._on_lost()

        async def reconnected() -> None:
            _LOGGER.info("ingest %s reconnected to the NATS cluster", self._client_name)
            self._on_ready()

        async def error(exc: Exception) -> None:
            _LOGGER.debug("NATS client error: %s", exc)

        while not stop.is_set():
            try:
                return await nats.connect(
                    servers=list(cfg.servers),
                    user=cfg.username,
                    password=cfg.password,
                    name=self._client_name,
                    connect_timeout=CONNECT_TIMEOUT_S,
                    reconnect_time_wait=RECONNECT_WAIT_S,
                    max_reconnect_attempts=-1,
                    ping_interval=PING_INTERVAL_S,
                    max_outstanding_pings=MAX_OUTSTANDING_PINGS,
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                    error_cb=error,
                )
            except (nats.errors.Error, OSError) as exc:
                _LOGGER.warning("cannot reach the NATS cluster %s, retrying: %s", cfg.servers, exc)
                await asyncio.sleep(RETRY_DELAY_S)
        return None

    async def _bind(self, js: JetStreamContext, stop: threading.Event) -> JetStreamContext.PullSubscription | None:
        """The shared durable consumer (created, or found as another worker made it)."""
        cfg = self._config
        consumer = ConsumerConfig(
            durable_name=cfg.durable,
            ack_policy=AckPolicy.EXPLICIT,  # never AckAll: it would ack what another worker has not committed
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=cfg.ack_wait_s,
            max_ack_pending=cfg.max_ack_pending,
            filter_subject=cfg.filter_subject,
            max_deliver=-1,
        )
        while not stop.is_set():
            try:
                await self._ensure_stream(js)
                await js.add_consumer(cfg.stream, consumer)
                return await js.pull_subscribe_bind(cfg.durable, stream=cfg.stream)
            except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
                _LOGGER.warning("ingest consumer %s on %s not ready, retrying: %s", cfg.durable, cfg.stream, exc)
                await asyncio.sleep(RETRY_DELAY_S)
        return None

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        cfg = self._config
        try:
            await js.stream_info(cfg.stream)
        except nats.js.errors.NotFoundError:
            _LOGGER.info("creating stream %s with %d replicas", cfg.stream, cfg.stream_replicas)
            # The configuration nats-server gives its MQTT message stream, so that it adopts this one.
            await js.add_stream(
                StreamConfig(
                    name=cfg.stream,
                    subjects=[cfg.subject_prefix + ">"],
                    retention=RetentionPolicy.INTEREST,
                    storage=StorageType.FILE,
                    num_replicas=cfg.stream_replicas,
                )
            )

    async def _pull(self, sub: JetStreamContext.PullSubscription, stop: threading.Event) -> None:
        cfg = self._config
        while not stop.is_set():
            room = self._capacity - len(self._held)
            if room <= 0:
                metrics.BACKPRESSURE.inc()
                await asyncio.sleep(0.005)
                continue
            try:
                msgs = await sub.fetch(min(cfg.fetch_batch, room), timeout=FETCH_WAIT_S)
            except (TimeoutError, nats.errors.TimeoutError):  # nats-py raises either when nothing came
                continue
            except (nats.errors.Error, nats.js.errors.Error) as exc:
                # A node lost, a consumer leader being elected: the next pull goes to whoever leads now.
                _LOGGER.info("pull from %s failed, retrying: %s", cfg.durable, exc)
                await asyncio.sleep(RETRY_DELAY_S)
                continue
            self._hand_over(msgs)

    def _hand_over(self, msgs: list[Msg]) -> None:
        prefix = self._config.subject_prefix
        skipped: list[Msg] = []
        for msg in msgs:
            topic = subject_topic(msg.subject, prefix)
            if topic is None:
                skipped.append(msg)
                continue
            self._next_mid += 1
            mid = self._next_mid
            self._held[mid] = msg
            self._deliver(ReceivedPublish(mid, 1, topic, msg.data, None))
        if skipped:
            self.skipped += len(skipped)
            self._start_acking(skipped)
