"""The one Settings object: every knob of ioc, read from `IOC_*` environment variables at entry points."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Configuration of the center. Unset URLs mean: run the embedded broker and database."""

    model_config = SettingsConfigDict(env_prefix="IOC_", env_file=None, extra="ignore")

    database_url: SecretStr | None = Field(
        default=None, description="PostgreSQL (TimescaleDB) URL; unset = embedded cluster"
    )
    mqtt_url: SecretStr | None = Field(
        default=None, description="MQTT broker URL mqtt://user:pass@host:port; unset = embedded Mosquitto"
    )
    runtime_dir: Path = Field(default=REPO_ROOT / ".runtime", description="where the embedded services keep their data")
    api_host: str = Field(default="127.0.0.1", description="API listen address")
    api_port: int = Field(default=8000, description="API listen port (0 = pick a free port)")
    ingest_workers: int = Field(default=1, ge=1, description="ingest processes in the shared subscription")
    ingest_group: str = Field(default="ioc-ingest", description="MQTT 5 shared-subscription group")
    batch_max_rows: int = Field(default=5000, ge=1, description="rows per COPY batch at most")
    batch_max_wait_ms: int = Field(default=50, ge=1, description="longest a reading waits for its batch")
    queue_max_messages: int = Field(default=20000, ge=10, description="in-flight messages before back-pressure")
    max_payload_bytes: int = Field(default=256 * 1024, description="larger payloads are quarantined")
    max_future_skew_s: float = Field(default=300.0, description="readings further in the future are refused")
    pool_max_size: int = Field(default=8, ge=1, description="database connections per process at most")
    log_level: str = Field(default="INFO", description="logging level")
    alarm_webhooks: list[str] = Field(
        default_factory=list, description='URLs that receive alarm events as JSON POSTs, e.g. ["https://ops/hook"]'
    )
    alarm_escalate_after_s: float = Field(default=900.0, gt=0, description="unacknowledged this long: severity +1")
    anomaly_quiet_s: float = Field(default=600.0, gt=0, description="no anomalous score this long clears an alarm")
    analytics_state_save_s: float = Field(default=60.0, gt=0, description="how often detector state is saved")
    # When a learned-detector anomaly becomes an alarm (analytics.alarm_policy; anomalies are recorded either way).
    detector_alarm_learn_points: int = Field(default=0, ge=0, description="a series' first points raise no alarm")
    detector_alarm_high_score: float = Field(
        default=0.78, ge=0, le=1, description="a detector score this high raises at once (0 = never at once)"
    )
    detector_alarm_persist_points: int = Field(default=3, ge=1, description="anomalous points needed within the window")
    detector_alarm_persist_window: int = Field(default=6, ge=1, description="the recent points counted, at most 62")
    detector_alarm_device_gap_s: float = Field(
        default=600.0, ge=0, description="reading time between new detector alarms of one device"
    )
