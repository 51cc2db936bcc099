"""Alarm lifecycle against the real database and broker: raise, de-duplicate, acknowledge, auto-clear, escalate,
notify (MQTT alerts topic and a webhook), plus the job's watermark under a late commit and its state across a
restart."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from analytics.detector_state import Detector, new_detector
from analytics.job import AnalyticsJob
from analytics.notify import Notifier
from analytics.scoring import JobConfig
from devices.catalog import Catalog
from embedded.runtime import EmbeddedMosquitto
from protocol.broker_url import parse_broker_url
from protocol.topics import alerts_topic
from store.pool import Pool, open_pool
from store.readings import write_readings
from tests.integration.conftest import ApiServer, ScratchDatabase
from tests.integration.device_fixtures import tokens_fixture  # noqa: F401

PROVINCE = "can-tho"
T0 = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)


class Clock:
    """The job's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now.timestamp()


class AlertListener:
    """A real MQTT client subscribed to a province's alerts topic."""

    def __init__(self, broker_url: str, province: str) -> None:
        address = parse_broker_url(broker_url)
        self.events: queue.Queue[dict[str, object]] = queue.Queue()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"listener-{province}")
        self.client.on_connect = lambda c, *_: c.subscribe(alerts_topic(province), qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.events.put(json.loads(msg.payload))
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "alerts listener did not subscribe"

    def next(self, timeout_s: float = 10.0) -> dict[str, object]:
        return self.events.get(timeout=timeout_s)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class WebhookReceiver:
    """A tiny HTTP server on 127.0.0.1 recording the JSON bodies POSTed to it."""

    def __init__(self, *, fail_first: int = 0) -> None:
        received: queue.Queue[dict[str, object]] = queue.Queue()
        self.received = received
        self.fail_left = fail_first
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                if outer.fail_left > 0:
                    outer.fail_left -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                received.put(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def pool(database: ScratchDatabase) -> Iterator[Pool]:
    with open_pool(database.url, min_size=1, max_size=3, name="test-analytics") as p:
        yield p


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver(fail_first=1)
    yield receiver
    receiver.close()


@pytest.fixture
def listener(broker: EmbeddedMosquitto) -> Iterator[AlertListener]:
    alerts = AlertListener(broker.url, PROVINCE)
    yield alerts
    alerts.close()


@pytest.fixture
def notifier(broker: EmbeddedMosquitto, webhook: WebhookReceiver) -> Iterator[Notifier]:
    with Notifier(broker=parse_broker_url(broker.url), webhooks=[webhook.url], client_id="alerts-test") as n:
        assert n.wait_connected(10)
        yield n


def _write(database: ScratchDatabase, device_id: str, metric: str, points: list[tuple[datetime, float]]) -> None:
    with psycopg.connect(database.url) as conn:
        write_readings(conn, [(ts, device_id, metric, value, 0) for ts, value in points])
        conn.commit()


def _minutes(start: int, stop: int, value: float) -> list[tuple[datetime, float]]:
    return [(T0 + timedelta(minutes=i), value) for i in range(start, stop)]


def _alarms(database: ScratchDatabase) -> list[dict[str, Any]]:
    with database.connect() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return list(cur.execute("SELECT * FROM alarms ORDER BY id").fetchall())


class LowVoltageDetector:
    """A stand-in detector with a known answer (below 3.2 is anomalous), so alarm plumbing is tested exactly;
    the production detector is exercised by the restart test and the end-to-end test."""

    def update(self, t: float, x: float) -> float:
        return 0.95 if x < 3.2 else 0.1


def _job(
    pool: Pool,
    catalog: Catalog,
    notifier: Notifier | None,
    clock: Clock,
    detector_factory: Callable[[], Detector] = new_detector,
    **config: object,
) -> AnalyticsJob:
    return AnalyticsJob(
        JobConfig(**config),  # type: ignore[arg-type]
        pool=pool,
        catalog=catalog,
        notifier=notifier,
        clock=clock,
        detector_factory=detector_factory,
    )


def test_raise_deduplicate_acknowledge_autoclear_and_notify(
    database: ScratchDatabase,
    register: Callable[..., object],
    catalog: Catalog,
    pool: Pool,
    notifier: Notifier,
    listener: AlertListener,
    webhook: WebhookReceiver,
    api: Callable[[], ApiServer],
    tokens: dict[str, dict[str, str]],
) -> None:
    register("fridge-ct-1", "vaccine_fridge", PROVINCE)
    clock = Clock(T0 + timedelta(minutes=12))
    job = _job(pool, catalog, notifier, clock)

    # Above 8 °C from 08:00: nothing before 10 minutes have passed, an alarm at 08:10.
    _write(database, "fridge-ct-1", "temperature", _minutes(0, 10, 9.2))
    assert job.tick().raised == 0
    assert _alarms(database) == []
    _write(database, "fridge-ct-1", "temperature", _minutes(10, 12, 9.4))
    stats = job.tick()
    assert (stats.readings, stats.raised) == (2, 1)
    [alarm] = _alarms(database)
    assert (alarm["status"], alarm["severity"], alarm["cause"], alarm["metric"]) == (
        "active",
        "critical",
        "threshold_above@8",
        "temperature",
    )
    assert alarm["first_reading_ts"] == T0
    assert alarm["trigger_reading_ts"] == T0 + timedelta(minutes=10)
    assert alarm["last_reading_ts"] == T0 + timedelta(minutes=11)
    assert alarm["occurrences"] == 2
    assert alarm["message"] == "Vaccine fridge above 8 Cel for 10 min: vaccines at risk"

    event = listener.next()
    assert event["event"] == "raised"
    assert event["alarm"]["id"] == alarm["id"] and event["alarm"]["device_id"] == "fridge-ct-1"  # type: ignore[index]
    hooked = webhook.received.get(timeout=15)  # the receiver refused the first attempt: this is the retry
    assert hooked["event"] == "raised" and hooked["alarm"]["id"] == alarm["id"]  # type: ignore[index]
    assert notifier.counters.webhook_retries >= 1

    # Still warm: the same alarm counts the repeats; no second alarm, no second "raised" event.
    _write(database, "fridge-ct-1", "temperature", _minutes(12, 15, 9.6))
    stats = job.tick()
    assert (stats.raised, stats.repeated) == (0, 1)
    [alarm] = _alarms(database)
    assert alarm["occurrences"] == 5
    assert alarm["last_reading_ts"] == T0 + timedelta(minutes=14)
    assert alarm["last_value"] == 9.6
    with pytest.raises(queue.Empty):
        listener.next(timeout_s=0.5)

    with api() as client:
        client.headers.update(tokens["operator"])
        assert client.post(f"/alarms/{alarm['id']}/ack", json={"by": "nguyen.lan"}).status_code == 422
        assert client.post("/alarms/999999/ack", json={}).status_code == 404
        acked = client.post(f"/alarms/{alarm['id']}/ack", json={"note": "on my way"})
        assert acked.status_code == 200, acked.text
        body = acked.json()
        assert (body["status"], body["acknowledged_by"], body["ack_note"]) == (
            "acknowledged",
            "key:test-operator",
            "on my way",
        )
        assert datetime.fromisoformat(body["acknowledged_at"]) <= datetime.now(UTC)
        again = client.post(f"/alarms/{alarm['id']}/ack", json={})
        assert again.status_code == 409 and "acknowledged" in again.json()["detail"]

        # The alarm links to the readings that raised it.
        link = body["readings"]
        assert link.startswith("/devices/fridge-ct-1/readings?metric=temperature&from=")
        linked = client.get(link).json()
        assert [r["value"] for r in linked] == [9.6] * 3 + [9.4] * 2 + [9.2] * 10  # newest first

        listed = client.get("/alarms", params={"status": "acknowledged", "province": PROVINCE}).json()
        assert [a["id"] for a in listed] == [alarm["id"]]
        assert client.get("/alarms", params={"province": "ha-noi"}).json() == []
        assert client.get("/alarms", params={"status": "nonsense"}).status_code == 422

        # Back to 5 °C: the condition ended, the alarm clears by itself.
        _write(database, "fridge-ct-1", "temperature", _minutes(15, 16, 5.0))
        assert job.tick().cleared == 1
        cleared = client.get(f"/alarms/{alarm['id']}").json()
        assert (cleared["status"], cleared["clear_reason"], cleared["cleared_by"]) == (
            "cleared",
            "condition_ended",
            "ioc-analytics",
        )
        assert cleared["acknowledged_by"] == "key:test-operator"  # who acknowledged is kept
        assert client.post(f"/alarms/{alarm['id']}/clear", json={}).status_code == 409
    event = listener.next()
    assert (event["event"], event["alarm"]["status"]) == ("cleared", "cleared")  # type: ignore[index]
    assert webhook.received.get(timeout=15)["event"] == "cleared"

    with database.connect() as conn:
        target = f"alarm:{alarm['id']}"
        audit = conn.execute("SELECT actor, action FROM audit_log WHERE target = %s ORDER BY id", (target,)).fetchall()
    assert audit == [("key:test-operator", "alarm.acknowledge"), ("ioc-analytics", "alarm.clear")]

    # A new excursion after the clear is a new alarm.
    _write(database, "fridge-ct-1", "temperature", _minutes(16, 27, 8.5))
    assert job.tick().raised == 1
    assert [a["status"] for a in _alarms(database)] == ["cleared", "active"]


def test_unacknowledged_alarm_escalates_one_level_per_period_until_acknowledged(
    database: ScratchDatabase,
    register: Callable[..., object],
    catalog: Catalog,
    pool: Pool,
    notifier: Notifier,
    listener: AlertListener,
    api: Callable[[], ApiServer],
    tokens: dict[str, dict[str, str]],
) -> None:
    register("fridge-ct-2", "vaccine_fridge", PROVINCE)
    clock = Clock(T0 + timedelta(minutes=6))
    job = _job(pool, catalog, notifier, clock, escalate_after_s=600.0)

    def door_open(device_id: str) -> None:
        # The device keeps reporting (door still open), so only the escalation timer moves.
        _write(database, device_id, "door_open", [(clock.now - timedelta(minutes=i), 1.0) for i in range(6, -1, -1)])

    # The door open for more than 5 minutes: a minor alarm.
    door_open("fridge-ct-2")
    assert job.tick().raised == 1
    assert listener.next()["event"] == "raised"
    [alarm] = _alarms(database)
    assert alarm["severity"] == "minor"

    clock.now += timedelta(seconds=599)
    door_open("fridge-ct-2")
    assert job.tick().escalated == 0
    clock.now += timedelta(seconds=1)
    door_open("fridge-ct-2")
    assert job.tick().escalated == 1
    [alarm] = _alarms(database)
    assert (alarm["severity"], alarm["initial_severity"], alarm["escalation_level"]) == ("major", "minor", 1)
    assert alarm["escalated_at"] == clock.now
    event = listener.next()
    assert (event["event"], event["alarm"]["severity"]) == ("escalated", "major")  # type: ignore[index]

    clock.now += timedelta(seconds=600)
    door_open("fridge-ct-2")
    assert job.tick().escalated == 1
    [alarm] = _alarms(database)
    assert alarm["severity"] == "critical"
    assert listener.next()["event"] == "escalated"

    # Critical is the top; and an acknowledged alarm does not escalate.
    clock.now += timedelta(seconds=600)
    door_open("fridge-ct-2")
    assert job.tick().escalated == 0
    register("fridge-ct-3", "vaccine_fridge", PROVINCE)
    door_open("fridge-ct-3")
    assert job.tick().raised == 1
    second = next(a for a in _alarms(database) if a["device_id"] == "fridge-ct-3")
    with api() as client:
        assert client.post(f"/alarms/{second['id']}/ack", headers=tokens["operator"]).status_code == 200
    for _ in range(3):
        clock.now += timedelta(seconds=600)
        door_open("fridge-ct-2")
        door_open("fridge-ct-3")
        assert job.tick().escalated == 0
    alarms = {a["device_id"]: a for a in _alarms(database)}
    assert len(alarms) == 2
    assert (alarms["fridge-ct-3"]["severity"], alarms["fridge-ct-3"]["status"]) == ("minor", "acknowledged")
    assert alarms["fridge-ct-2"]["occurrences"] > 20  # every reading with the door open counted on one alarm


def test_silent_device_alarm_and_its_clear(
    database: ScratchDatabase, register: Callable[..., object], catalog: Catalog, pool: Pool
) -> None:
    register("fridge-ct-4", "vaccine_fridge", PROVINCE)
    _write(database, "fridge-ct-4", "temperature", _minutes(0, 3, 5.0))
    clock = Clock(T0 + timedelta(minutes=2, seconds=900))
    job = _job(pool, catalog, None, clock, silence_reports=None)  # the rule's 15 minutes, not 2.5 reports
    assert job.tick().raised == 0
    clock.now += timedelta(seconds=1)
    assert job.tick().raised == 1
    [alarm] = _alarms(database)
    assert (alarm["cause"], alarm["metric"], alarm["severity"]) == ("silent", None, "major")
    assert alarm["first_reading_ts"] == T0 + timedelta(minutes=2)  # silent since the last reading
    clock.now += timedelta(minutes=30)
    assert job.tick().raised == 0  # one alarm per silence
    _write(database, "fridge-ct-4", "temperature", [(clock.now - timedelta(seconds=5), 5.0)])
    assert job.tick().cleared == 1
    assert _alarms(database)[0]["clear_reason"] == "condition_ended"


def test_operator_clear_and_anomalies_endpoint(
    database: ScratchDatabase,
    register: Callable[..., object],
    catalog: Catalog,
    pool: Pool,
    api: Callable[[], ApiServer],
    tokens: dict[str, dict[str, str]],
) -> None:
    register("fridge-ct-5", "vaccine_fridge", PROVINCE)
    job = _job(pool, catalog, None, Clock(T0 + timedelta(hours=4)), LowVoltageDetector, detector_threshold=0.5)
    steady = [(T0 + timedelta(minutes=i), 4.5 + 0.05 * ((i * 7) % 5)) for i in range(240)]
    _write(database, "fridge-ct-5", "battery_v", steady)
    assert job.tick().anomalies == 0
    _write(database, "fridge-ct-5", "battery_v", [(T0 + timedelta(minutes=240), 3.0)])
    stats = job.tick()
    assert (stats.anomalies, stats.raised) == (1, 1)
    detector_alarm = next(a for a in _alarms(database) if a["source"] == "detector")
    assert detector_alarm["metric"] == "battery_v" and detector_alarm["kind"] == "univariate"
    with api() as client:
        client.headers.update(tokens["operator"])
        found = client.get(
            "/devices/fridge-ct-5/anomalies",
            params={"from": T0.isoformat(), "to": (T0 + timedelta(days=1)).isoformat()},
        ).json()
        assert [(a["metric"], a["value"], a["detector"]) for a in found] == [("battery_v", 3.0, "univariate")]
        assert 0.0 < found[0]["score"] <= 1.0
        assert client.get("/devices/nobody/anomalies").status_code == 404
        cleared = client.post(f"/alarms/{detector_alarm['id']}/clear", json={"note": "battery swapped"})
        assert cleared.status_code == 200
        body = cleared.json()
        assert (body["status"], body["cleared_by"], body["clear_reason"], body["clear_note"]) == (
            "cleared",
            "key:test-operator",
            "operator",
            "battery swapped",
        )
        assert client.get("/alarms/424242").status_code == 404


def test_a_late_commit_is_not_skipped_by_the_watermark(
    database: ScratchDatabase, register: Callable[..., object], catalog: Catalog, pool: Pool
) -> None:
    register("fridge-ct-6", "vaccine_fridge", PROVINCE)
    register("fridge-ct-6b", "vaccine_fridge", PROVINCE)
    # Silence after the rule's 15 minutes (not 2.5 reports): this test is about the watermark.
    job = _job(pool, catalog, None, Clock(T0 + timedelta(minutes=13)), silence_reports=None)
    # The day's chunk exists already (a transaction creating a chunk holds off other writers to it until commit).
    _write(database, "fridge-ct-6b", "temperature", [(T0 - timedelta(minutes=1), 5.0)])
    assert job.tick().readings == 1
    slow = psycopg.connect(database.url)
    try:
        # An ingest transaction that started first but commits last (another worker's batch commits meanwhile).
        slow.execute("SELECT 1")  # open the transaction the way ingest does: the write joins it
        write_readings(slow, [(T0 + timedelta(minutes=i), "fridge-ct-6", "temperature", 9.0, 0) for i in range(12)])
        _write(database, "fridge-ct-6b", "temperature", _minutes(0, 4, 5.0))
        # The job may not pass the open transaction: it reads nothing yet rather than skip it forever.
        assert job.tick().readings == 0
        slow.commit()
    finally:
        slow.close()
    totals = sum(job.tick().readings for _ in range(5))
    assert totals == 16
    [alarm] = _alarms(database)
    assert alarm["device_id"] == "fridge-ct-6"
    assert alarm["first_reading_ts"] == T0 and alarm["trigger_reading_ts"] == T0 + timedelta(minutes=10)


def test_state_and_watermark_survive_a_restart(
    database: ScratchDatabase, register: Callable[..., object], catalog: Catalog, pool: Pool
) -> None:
    register("fridge-ct-7", "vaccine_fridge", PROVINCE)
    clock = Clock(T0 + timedelta(minutes=10))
    first = _job(pool, catalog, None, clock)
    _write(database, "fridge-ct-7", "temperature", _minutes(0, 6, 9.0))
    assert first.tick().readings == 6
    assert first.save() == 1
    detector_n = first.scorer.series[("fridge-ct-7", "temperature")].detector.n  # type: ignore[attr-defined]
    assert detector_n == 6

    # A new process: it resumes at the saved watermark and remembers the series (baseline and rule timer).
    second = _job(pool, catalog, None, clock)
    _write(database, "fridge-ct-7", "temperature", _minutes(6, 11, 9.0))
    stats = second.tick()
    assert stats.readings == 5  # not the 6 already processed
    assert second.scorer.series[("fridge-ct-7", "temperature")].detector.n == detector_n + 5  # type: ignore[attr-defined]
    [alarm] = _alarms(database)
    assert alarm["trigger_reading_ts"] == T0 + timedelta(minutes=10)
    assert database.scalar("SELECT count(*) FROM analytics_state") == 1
