"""The national center's feed: the summary in its versioned schema, and the push job delivering every snapshot
exactly once through an outage of the national endpoint."""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psycopg

from api.access.keys import create_api_key
from api.federation.push import FederationPusher, PushConfig
from api.federation.report import LOCAL_ZONE, DailyReporter, ReportConfig
from embedded.runtime import find_free_port
from store.pool import open_pool
from store.scope import Scope
from tests.integration.conftest import ApiServer, ScratchDatabase, wait_for

PERIOD_S = 300.0


@dataclass
class NationalCenter:
    """A real HTTP endpoint that keeps each snapshot once by its Idempotency-Key, and can lose an answer."""

    port: int
    deliveries: list[str] = field(default_factory=list)
    kept: dict[str, dict[str, object]] = field(default_factory=dict)
    lose_next_answer: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        center = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers["Idempotency-Key"]
                with center.lock:
                    center.deliveries.append(key)
                    center.kept.setdefault(key, body)
                    lost, center.lose_next_answer = center.lose_next_answer, False
                self.send_response(503 if lost else 201)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    @contextmanager
    def up(self) -> Iterator[None]:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler())
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield
        finally:
            server.shutdown()
            server.server_close()


class SteppedClock:
    def __init__(self) -> None:
        self.now = 1_795_000_000.0 - 1_795_000_000.0 % PERIOD_S

    def __call__(self) -> float:
        return self.now

    def next_period(self) -> None:
        self.now += PERIOD_S


def test_every_snapshot_arrives_exactly_once_through_an_outage(
    database: ScratchDatabase, register: Callable[..., object]
) -> None:
    register("meter-ct-9", "smart_meter", "can-tho")
    register("fridge-ct-9", "vaccine_fridge", "can-tho")
    national = NationalCenter(port=find_free_port())
    clock = SteppedClock()
    config = PushConfig(
        url=f"http://127.0.0.1:{national.port}/ingest",
        provinces=("can-tho",),
        period_s=PERIOD_S,
        token="national-token",
        timeout_s=2.0,
        backoff_first_s=0.05,
        backoff_max_s=0.2,
    )
    with open_pool(database.url, min_size=1, max_size=2, name="federation-test") as pool:
        pusher = FederationPusher(config, pool=pool, clock=clock)
        keys = []

        def snapshot() -> None:
            assert pusher.take_snapshots() == 1
            assert pusher.take_snapshots() == 0  # once per period
            keys.append(f"can-tho:{pusher.period_start(clock()).isoformat()}")
            clock.next_period()

        with national.up():
            snapshot()
            assert pusher.deliver_due() == 1
        # The national endpoint is down: snapshots wait in the outbox, attempts back off.
        for _ in range(4):
            snapshot()
            assert pusher.deliver_due() == 0
        backlog = int(database.scalar("SELECT count(*) FROM federation_outbox WHERE delivered_at IS NULL"))
        assert backlog == 4
        with national.up():
            national.lose_next_answer = True  # it stores one snapshot but the answer never arrives: a retry
            snapshot()

            def drained() -> bool:
                pusher.deliver_due()
                return int(database.scalar("SELECT count(*) FROM federation_outbox WHERE delivered_at IS NULL")) == 0

            wait_for(drained, timeout_s=30, what="outbox drained")

    assert list(national.kept) == keys  # every snapshot once, in order
    assert sorted(set(national.deliveries)) == sorted(keys)
    assert len(national.deliveries) == len(keys) + 1  # the one whose answer was lost came twice, kept once
    first = national.kept[keys[0]]
    assert first["kind"] == "ioc.federation.summary" and first["schema_version"] == "1.0"
    assert first["province"] == "can-tho"
    assert first["devices"]["total"] == 2  # type: ignore[index]


def test_the_summary_follows_its_schema_and_the_caller_scope(
    database: ScratchDatabase, register: Callable[..., object], api: Callable[[], ApiServer]
) -> None:
    register("meter-ct-8", "smart_meter", "can-tho")
    register("meter-hn-8", "smart_meter", "ha-noi")
    with psycopg.connect(database.url) as conn:
        key = create_api_key(
            conn,
            name="national",
            role="viewer",
            scope=Scope.of(provinces=["can-tho"]),
            lifetime=timedelta(hours=1),
            actor="test",
        )
        conn.commit()
    headers = {"Authorization": f"Bearer {key.secret}"}
    with api() as client:
        summary = client.get("/federation/summary", params={"province": "can-tho"}, headers=headers)
        assert summary.status_code == 200, summary.text
        body = summary.json()
        assert body["province_name"] == "Cần Thơ"
        assert body["devices"]["total"] == 1
        assert {s["sector"] for s in body["sectors"]} == {"agriculture", "energy", "transport", "health"}
        energy = next(s for s in body["sectors"] if s["sector"] == "energy")
        assert energy["devices"]["total"] == 1 and energy["open_alarms"]["critical"] == 0
        schema = client.get("/federation/schema", headers=headers).json()
        assert set(schema["required"]) >= {"province", "generated_at", "sectors", "devices", "open_alarms"}
        outside = client.get("/federation/summary", params={"province": "ha-noi"}, headers=headers)
        assert outside.status_code == 404
        assert client.get("/federation/summary", params={"province": "can-tho"}).status_code == 401


def test_the_daily_report_is_written_once_after_the_report_hour(
    database: ScratchDatabase, register: Callable[..., object], tmp_path: Path
) -> None:
    register("meter-ct-7", "smart_meter", "can-tho")
    register("fridge-ct-7", "vaccine_fridge", "can-tho")
    day = date(2026, 11, 26)
    local_noon = datetime.combine(day, datetime.min.time(), tzinfo=LOCAL_ZONE) + timedelta(hours=12)
    with psycopg.connect(database.url) as conn:
        conn.execute(
            "INSERT INTO readings (ts, device_id, metric, value) SELECT %s + make_interval(mins => i), 'meter-ct-7', "
            "'voltage', 230 FROM generate_series(0, 59) AS i",
            (local_noon,),
        )
        conn.execute(
            "INSERT INTO alarms (device_id, metric, source, kind, cause, province, sector, severity, "
            "initial_severity, message, first_reading_ts, last_reading_ts, raised_at) "
            "VALUES ('fridge-ct-7', 'temperature', 'rule', 'threshold_above', 'threshold_above@8', 'can-tho', "
            "'health', 'critical', 'critical', 'fridge above 8 °C for 10 min', %s, %s, %s)",
            (local_noon, local_noon, local_noon),
        )
        conn.commit()
    before_hour = (datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=LOCAL_ZONE)).timestamp()
    after_hour = before_hour + 7 * 3600
    with open_pool(database.url, min_size=1, max_size=1, name="report-test") as pool:
        early = DailyReporter(ReportConfig(folder=tmp_path, hour_local=6), pool=pool, clock=lambda: before_hour)
        assert early.write_due() == []
        reporter = DailyReporter(ReportConfig(folder=tmp_path, hour_local=6), pool=pool, clock=lambda: after_hour)
        written = reporter.write_due()
        assert sorted(p.name for p in written) == ["2026-11-26_alarms.csv", "2026-11-26_kpis.csv"]
        assert reporter.write_due() == []  # once
    kpis = list(csv.DictReader(io.StringIO((tmp_path / "can-tho" / "2026-11-26_kpis.csv").read_text("utf-8"))))
    by_sector = {row["sector"]: row for row in kpis}
    assert set(by_sector) == {"agriculture", "energy", "transport", "health"}
    assert by_sector["energy"]["devices"] == "1" and by_sector["energy"]["readings"] == "60"
    assert by_sector["health"]["open_critical"] == "1" and by_sector["health"]["unacknowledged"] == "1"
    alarms = list(csv.DictReader(io.StringIO((tmp_path / "can-tho" / "2026-11-26_alarms.csv").read_text("utf-8"))))
    assert [(a["device_id"], a["severity"], a["message"]) for a in alarms] == [
        ("fridge-ct-7", "critical", "fridge above 8 °C for 10 min")
    ]
