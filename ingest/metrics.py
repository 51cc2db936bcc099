"""Ingest self-metrics in Prometheus form; with several worker processes they are shared through
prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set by the supervisor)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter("ioc_ingest_messages_total", "MQTT telemetry messages processed (stored or quarantined)")
ROWS = Counter("ioc_ingest_rows_total", "readings inserted into the readings table")
DUPLICATE_ROWS = Counter("ioc_ingest_duplicate_rows_total", "readings absorbed by the unique key (redeliveries)")
QUARANTINED = Counter("ioc_ingest_quarantined_total", "messages refused whole and put in quarantine", ["reason"])
PARTIAL_MESSAGES = Counter(
    "ioc_ingest_partial_messages_total", "messages stored in part: good readings stored, the rest quarantined"
)
READINGS_REFUSED = Counter(
    "ioc_ingest_refused_readings_total",
    "readings refused one by one (in messages stored in part or whose every reading was refused)",
    ["reason"],
)
QUARANTINE_SUPPRESSED = Counter(
    "ioc_ingest_quarantine_suppressed_total", "quarantined messages counted but not stored (device over its limit)"
)
CONNECTED = Gauge(
    "ioc_ingest_connected", "ingest workers connected to the broker and subscribed", multiprocess_mode="livesum"
)
BACKPRESSURE = Counter("ioc_ingest_backpressure_total", "times the receive queue was full and reading paused")
DB_RETRIES = Counter("ioc_ingest_db_retries_total", "batch commits retried after a database error")
BATCH_ROWS = Histogram(
    "ioc_ingest_batch_rows",
    "readings per committed batch",
    buckets=(1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 20000),
)
COMMIT_SECONDS = Histogram(
    "ioc_ingest_commit_seconds",
    "time to write and commit one batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
LATENCY_SECONDS = Histogram(
    "ioc_ingest_latency_seconds",
    "from a reading's device timestamp to its commit (live readings only, not backfills)",
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1, 2, 5, 10, 30),
)
QUEUE_DEPTH = Gauge(
    "ioc_ingest_queue_depth", "messages received and waiting for the next batch", multiprocess_mode="livesum"
)
