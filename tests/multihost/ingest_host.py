"""One ingest host of the multi-host test: `ip netns exec <ns> python -m tests.multihost.ingest_host READY_FILE`.

Built as production builds it, from the `IOC_*` settings in the environment (IOC_INGEST_SOURCE=jetstream,
IOC_JETSTREAM_SERVERS, IOC_DATABASE_URL, …), with the ingest supervisor; writes READY_FILE once its worker is
consuming, and runs until SIGTERM.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
from pathlib import Path

from core.settings import Settings
from ingest.supervisor import IngestSupervisor, ingest_config

UNUSED_MQTT_URL = "mqtt://127.0.0.1:1"  # the JetStream path subscribes on no MQTT broker


def main() -> int:
    ready_file = Path(sys.argv[1])
    settings = Settings()
    assert settings.database_url is not None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    base = ingest_config(settings, database_url=settings.database_url.get_secret_value(), mqtt_url=UNUSED_MQTT_URL)
    base = dataclasses.replace(base, client_id=ready_file.stem)
    with IngestSupervisor(base, workers=1, metrics_dir=settings.runtime_dir / "metrics") as supervisor:
        if not supervisor.wait_ready(120):
            return 1
        ready_file.write_text("ready\n", encoding="utf-8")
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
