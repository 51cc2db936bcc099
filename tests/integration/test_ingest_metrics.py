"""Ingest self-metrics: worker processes count into shared files, the API serves them at /metrics."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import uvicorn

from api.app import create_app
from core.settings import Settings
from embedded.runtime import EmbeddedMosquitto, find_free_port
from ingest.supervisor import IngestSupervisor
from ingest.worker import IngestConfig
from protocol.telemetry import encode_json
from protocol.topics import telemetry_topic
from tests.integration.conftest import ScratchDatabase, wait_for
from tests.integration.device_fixtures import tokens_fixture  # noqa: F401
from tests.integration.publisher import Publisher


def _value(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_messages_rows_and_quarantine_by_reason(
    database: ScratchDatabase,
    broker: EmbeddedMosquitto,
    register: Callable[..., object],
    ingest_config: IngestConfig,
    runtime_root: Path,
    tokens: dict[str, dict[str, str]],
) -> None:
    register("meter-metrics", "smart_meter", "can-tho")
    topic = telemetry_topic("can-tho", "energy", "meter-metrics")
    metrics_dir = runtime_root / f"metrics-{os.getpid()}-endpoint"
    with IngestSupervisor(ingest_config, workers=1, metrics_dir=metrics_dir) as supervisor:
        assert supervisor.wait_ready(30)
        with Publisher(broker.url, client_id="meter-metrics") as pub:
            for i in range(10):
                pub.publish(topic, encode_json({"voltage": 230.0, "current": 1.0 + i}, seq=i, ts=datetime.now(UTC)))
            pub.publish(topic, b"{not json")
            pub.publish(topic, encode_json({"heart_rate": 1.0}, seq=99, ts=datetime.now(UTC)))
        wait_for(lambda: database.scalar("SELECT count(*) FROM quarantine") == 2, what="quarantine")

        port = find_free_port()
        app = create_app(Settings(), database_url=database.url, metrics_dir=metrics_dir)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            wait_for(lambda: server.started, what="API started")
            url = f"http://127.0.0.1:{port}/metrics"
            # A scraper uses an admin API key; nothing less reads the center's counters.
            refused = [httpx.get(url, timeout=10).status_code]
            refused += [httpx.get(url, headers=tokens[role], timeout=10).status_code for role in ("viewer", "operator")]
            response = httpx.get(url, headers=tokens["admin"], timeout=10)
        finally:
            server.should_exit = True
            thread.join(10)

    assert refused == [401, 403, 403]
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert _value(text, "ioc_ingest_messages_total") == 12
    assert _value(text, "ioc_ingest_rows_total") == 20
    assert _value(text, "ioc_ingest_quarantined_total", '{reason="invalid_json"}') == 1
    assert _value(text, "ioc_ingest_quarantined_total", '{reason="unknown_metric"}') == 1
    assert _value(text, "ioc_ingest_batch_rows_count") >= 1
    assert _value(text, "ioc_ingest_commit_seconds_count") >= 1
    assert "ioc_ingest_queue_depth" in text
