"""Live stream (SSE): readings reach subscribers in scope, never others, and a reconnect with Last-Event-ID
misses nothing."""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import psycopg

from api.access.keys import create_api_key
from core.settings import REPO_ROOT
from embedded.runtime import EmbeddedMosquitto
from protocol.telemetry import encode_json
from protocol.topics import telemetry_topic
from store.scope import Scope
from tests.integration.conftest import ApiServer, ScratchDatabase, wait_for
from tests.integration.publisher import Publisher

REPORT = REPO_ROOT / ".runtime" / "reports" / "stream_latency.json"


@dataclass
class Subscriber:
    """An SSE client on a thread: every event with its arrival time, and the last id seen."""

    base_url: str
    token: str
    params: dict[str, str] = field(default_factory=dict)
    last_event_id: str | None = None
    events: list[tuple[float, str, dict[str, object]]] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        with (
            httpx.Client(base_url=self.base_url, timeout=httpx.Timeout(30, read=None)) as client,
            client.stream("GET", "/stream", params=self.params, headers=headers) as response,
        ):
            assert response.status_code == 200, response.read()
            kind, data = "message", ""
            for line in response.iter_lines():
                if self.stop.is_set():
                    return
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data = line.removeprefix("data: ")
                elif line.startswith("id: "):
                    self.last_event_id = line.removeprefix("id: ")
                elif line == "":
                    if kind == "ready":
                        self.ready.set()
                    elif kind in ("reading", "alarm"):
                        self.events.append((time.monotonic(), kind, json.loads(data)))
                    kind, data = "message", ""

    def readings(self, device_id: str) -> list[dict[str, object]]:
        return [d for _, k, d in self.events if k == "reading" and d["device_id"] == device_id]


@contextmanager
def subscribed(subscriber: Subscriber) -> Iterator[Subscriber]:
    thread = threading.Thread(target=subscriber.run, daemon=True)
    thread.start()
    assert subscriber.ready.wait(15), "stream did not open"
    try:
        yield subscriber
    finally:
        subscriber.stop.set()


def _key(database: ScratchDatabase, name: str, provinces: list[str]) -> str:
    with psycopg.connect(database.url) as conn:
        key = create_api_key(
            conn,
            name=name,
            role="viewer",
            scope=Scope.of(provinces=provinces),
            lifetime=timedelta(hours=1),
            actor="test",
        )
        conn.commit()
    return key.secret


def test_a_reading_reaches_the_subscriber_in_scope_and_no_other(
    database: ScratchDatabase,
    broker: EmbeddedMosquitto,
    register: Callable[..., object],
    run_ingest: Callable[[], object],
    api: Callable[[], ApiServer],
) -> None:
    register("gauge-ct-1", "water_level_gauge", "can-tho")
    register("gauge-hn-1", "water_level_gauge", "ha-noi")
    can_tho, ha_noi = _key(database, "viewer-ct", ["can-tho"]), _key(database, "viewer-hn", ["ha-noi"])
    latencies: list[float] = []
    with api() as client, run_ingest(), Publisher(broker.url, client_id="gauge-ct-1") as pub:  # type: ignore[attr-defined]
        base = str(client.base_url)
        with (
            subscribed(Subscriber(base, can_tho)) as here,
            subscribed(Subscriber(base, ha_noi)) as elsewhere,
            subscribed(Subscriber(base, ha_noi, params={"province": "can-tho"})) as asking_outside,
        ):
            for i in range(5):
                sent_at = time.monotonic()
                ts = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30 - i)
                pub.publish(
                    telemetry_topic("can-tho", "agriculture", "gauge-ct-1"),
                    encode_json({"water_level": 1.5 + i / 10}, seq=i, ts=ts),
                )
                wait_for(
                    functools.partial(lambda n: len(here.readings("gauge-ct-1")) > n, i),
                    timeout_s=10,
                    what="reading streamed",
                )
                latencies.append(here.events[-1][0] - sent_at)
            time.sleep(1.0)  # a little longer, for anything that should not arrive
    assert [r["value"] for r in here.readings("gauge-ct-1")] == [1.5 + i / 10 for i in range(5)]
    assert all(r["province"] == "can-tho" for r in here.readings("gauge-ct-1"))
    assert elsewhere.events == []
    assert asking_outside.events == []
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps({"publish_to_stream_s": sorted(latencies)}, indent=2) + "\n", encoding="utf-8")


def test_a_reconnect_with_last_event_id_misses_nothing(
    database: ScratchDatabase,
    broker: EmbeddedMosquitto,
    register: Callable[..., object],
    run_ingest: Callable[[], object],
    api: Callable[[], ApiServer],
) -> None:
    register("gauge-ct-2", "water_level_gauge", "can-tho")
    token = _key(database, "viewer-ct2", ["can-tho"])
    topic = telemetry_topic("can-tho", "agriculture", "gauge-ct-2")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    with api() as client, run_ingest(), Publisher(broker.url, client_id="gauge-ct-2") as pub:  # type: ignore[attr-defined]
        base = str(client.base_url)
        with subscribed(Subscriber(base, token)) as first:
            for i in range(10):
                pub.publish(topic, encode_json({"water_level": float(i)}, seq=i, ts=start + timedelta(seconds=i)))
            wait_for(lambda: len(first.readings("gauge-ct-2")) == 10, what="first ten streamed")
        resume_from = first.last_event_id
        assert resume_from is not None
        # Disconnected: these are committed while nobody listens.
        for i in range(10, 30):
            pub.publish(topic, encode_json({"water_level": float(i)}, seq=i, ts=start + timedelta(seconds=i)))
        wait_for(
            lambda: database.scalar("SELECT count(*) FROM readings WHERE device_id = 'gauge-ct-2'") == 30,
            what="all stored",
        )
        with subscribed(Subscriber(base, token, last_event_id=resume_from)) as second:
            wait_for(lambda: len(second.readings("gauge-ct-2")) >= 20, what="missed readings streamed")
            time.sleep(0.5)
    seen = [float(str(r["value"])) for r in first.readings("gauge-ct-2") + second.readings("gauge-ct-2")]
    assert sorted(set(seen)) == [float(i) for i in range(30)]
    assert [r["value"] for r in second.readings("gauge-ct-2")] == [float(i) for i in range(10, 30)]


def test_the_stream_refuses_without_a_token(api: Callable[[], ApiServer]) -> None:
    with api() as client:
        assert client.get("/stream").status_code == 401
