"""The one Settings object: every knob of ioc, read from `IOC_*` environment variables at entry points."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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
    # The center's broker accounts per role (least rights; devices.access.CENTER_ACCOUNTS); unset = IOC_MQTT_URL.
    mqtt_ingest_url: SecretStr | None = Field(default=None, description="broker URL of ingest (role ingest)")
    mqtt_commands_url: SecretStr | None = Field(
        default=None, description="broker URL of the command publisher and device monitor (role commands)"
    )
    mqtt_alerts_url: SecretStr | None = Field(default=None, description="broker URL of alarm alerts (role alerts)")
    # The broker ioc runs (embedded, or `ioc broker` in the compose stack).
    broker_bind: str = Field(default="127.0.0.1", description="address the broker ioc runs listens on")
    broker_plain: bool = Field(default=True, description="plain MQTT listener (1883-style) on; TLS only when off")
    broker_port: int = Field(default=0, ge=0, description="plain MQTT port of the broker ioc runs (0 = a free port)")
    broker_tls: bool = Field(default=True, description="an mqtts listener with the center's (or the given) CA")
    broker_tls_port: int = Field(default=0, ge=0, description="mqtts port (0 = a free port)")
    broker_tls_hosts: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "localhost"], description="names in the broker's server certificate"
    )
    broker_ca_file: Path | None = Field(
        default=None, description="the operator's CA certificate (its ca.key beside it to sign server certs)"
    )
    device_broker_url: str | None = Field(
        default=None,
        description="the broker address new devices are given, e.g. mqtts://mqtt.example.vn:8883 (with "
        "broker_ca_file); unset = the broker's own address",
    )
    broker_require_client_cert: bool = Field(
        default=False, description="devices must also present a client certificate signed by the CA"
    )
    broker_acl_plugin: Path | None = Field(
        default=None, description="a built ioc_acl Mosquitto plugin (unset: built from deploy/mosquitto/ioc_acl.c)"
    )
    broker_accounts: dict[str, SecretStr] = Field(
        default_factory=dict,
        description='passwords of the center\'s broker accounts, {"ioc-ingest": "…"}; unset: generated',
    )
    broker_password_file: Path | None = Field(
        default=None, description="an external broker's password file to keep in sync with the registry"
    )
    broker_pid_file: Path | None = Field(
        default=None, description="the external broker's pid file: it is sent SIGHUP after each sync"
    )
    api_host: str = Field(default="127.0.0.1", description="API listen address")
    api_port: int = Field(default=8000, description="API listen port (0 = pick a free port)")
    api_workers: int = Field(
        default=2,
        ge=1,
        le=64,
        description="API processes sharing the listen port (Python runs one request's code at a time per process)",
    )
    ingest_workers: int = Field(default=1, ge=1, description="ingest processes in the shared subscription")
    ingest_group: str = Field(default="ioc-ingest", description="MQTT 5 shared-subscription group")
    # The distributed path (docs/scaling.md): ingest as one durable consumer of a NATS JetStream cluster that devices
    # reach over MQTT. Mosquitto with several workers is not restart-safe; this path is.
    ingest_source: Literal["mqtt", "jetstream"] = Field(
        default="mqtt", description="mqtt: subscribe on the broker; jetstream: consume a NATS JetStream cluster"
    )
    jetstream_servers: list[str] = Field(
        default_factory=list, description='NATS nodes for ingest_source=jetstream, e.g. ["nats://10.0.0.1:4222"]'
    )
    jetstream_user: str = Field(default="ioc-ingest", description="ingest's NATS account")
    jetstream_password: SecretStr | None = Field(default=None, description="its password")
    jetstream_durable: str = Field(default="ioc-ingest", description="the durable consumer every worker shares")
    jetstream_ack_wait_s: float = Field(
        default=30.0, gt=0, description="a message not acknowledged this long goes to another worker"
    )
    jetstream_stream_replicas: int = Field(
        default=3, ge=1, le=5, description="replicas of the MQTT message stream when ingest has to create it"
    )
    batch_max_rows: int = Field(default=5000, ge=1, description="rows per COPY batch at most")
    batch_max_wait_ms: int = Field(default=50, ge=1, description="longest a reading waits for its batch")
    queue_max_messages: int = Field(default=20000, ge=10, description="in-flight messages before back-pressure")
    max_payload_bytes: int = Field(default=256 * 1024, description="larger payloads are quarantined")
    max_future_skew_s: float = Field(default=300.0, description="readings further in the future are refused")
    quarantine_per_device_per_min: int = Field(
        default=60, ge=1, description="quarantined messages stored in full per device and minute; beyond: sampled"
    )
    quarantine_sample_every: int = Field(
        default=100, ge=1, description="beyond the per-device limit, one message in this many is stored"
    )
    quarantine_payload_max_bytes: int = Field(
        default=16 * 1024, ge=0, description="raw bytes kept per quarantined message at most"
    )
    quarantine_retention_days: float = Field(default=14.0, gt=0, description="quarantined messages are kept this long")
    # Data lifecycle (store.rollups, store.retention): raw readings per sector, rollups for years, append-only tables.
    raw_retention_days: float = Field(default=90.0, gt=0, description="raw readings are kept this long")
    raw_retention_days_by_sector: dict[Literal["agriculture", "energy", "transport", "health"], float] = Field(
        default_factory=dict, description='per-sector raw retention, e.g. {"health": 365}; others: raw_retention_days'
    )
    rollup_minute_retention_days: float = Field(
        default=731.0, gt=0, description="one-minute rollups are kept this long"
    )
    rollup_hour_retention_days: float = Field(default=3653.0, gt=0, description="one-hour rollups are kept this long")
    anomaly_retention_days: float = Field(default=365.0, gt=0, description="detected anomalies are kept this long")
    alarm_event_retention_days: float = Field(
        default=365.0,
        gt=0,
        description="alarm events (the streams' history; alarms themselves stay) are kept this long",
    )
    federation_delivered_retention_days: float = Field(
        default=30.0,
        gt=0,
        description="snapshots delivered to the national center are kept this long (undelivered: until sent)",
    )
    audit_retention_days: float = Field(
        default=3653.0,
        gt=0,
        description="the audit log is a legal record: kept this long; set it to what the operator's regulations require",
    )
    rollup_interval_s: float = Field(default=60.0, gt=0, description="how often the rollup job runs (Apache build)")
    retention_interval_s: float = Field(default=3600.0, gt=0, description="how often retention runs")
    api_db_timeout_s: float = Field(
        default=3.0, gt=0, description="an API request waits this long for a database connection, then 503"
    )
    pool_max_size: int = Field(default=8, ge=1, description="database connections per process at most")
    log_level: str = Field(default="INFO", description="logging level")
    alarm_webhooks: list[str] = Field(
        default_factory=list, description='URLs that receive alarm events as JSON POSTs, e.g. ["https://ops/hook"]'
    )
    alarm_escalate_after_s: float = Field(default=900.0, gt=0, description="unacknowledged this long: severity +1")
    anomaly_quiet_s: float = Field(default=600.0, gt=0, description="no anomalous score this long clears an alarm")
    analytics_state_save_s: float = Field(default=60.0, gt=0, description="how often detector state is saved")
    # When a learned-detector anomaly becomes an alarm (analytics.alarm_policy; anomalies are recorded either way).
    # The detectors' own anomalous state decides; a series first learns its normal for `detector_alarm_learn_s`.
    detector_alarm_learn_points: int = Field(default=0, ge=0, description="a series' first points raise no alarm")
    detector_alarm_learn_s: float = Field(
        default=86400.0, ge=0, description="a series raises no detector alarm in its first seconds of reading time"
    )
    detector_alarm_high_score: float = Field(
        default=0.0, ge=0, le=1, description="a detector score this high raises at once (0 = the state decides)"
    )
    detector_alarm_persist_points: int = Field(default=1, ge=1, description="anomalous points needed within the window")
    detector_alarm_persist_window: int = Field(default=1, ge=1, description="the recent points counted, at most 62")
    detector_alarm_device_gap_s: float = Field(
        default=0.0, ge=0, description="reading time between new detector alarms of one device"
    )
    # Joint detection, silence and flood control of alarms (analytics.scoring, analytics.flood).
    joint_detection: bool = Field(default=True, description="watch each device's metrics jointly beside one by one")
    silence_reports: float = Field(
        default=2.5, gt=1, description="silent after this many report intervals without a reading (or the rule's time)"
    )
    silence_reminder_s: float = Field(
        default=3600.0, gt=0, description="a silent device's alarm is notified again this often until acted on"
    )
    alarm_group_window_s: float = Field(
        default=1800.0, ge=0, description="alarms of a device (silence: of a province) this close form one incident"
    )
    alarm_flap_count: int = Field(default=3, ge=2, description="raised this often within the flap window: flapping")
    alarm_flap_window_s: float = Field(default=3600.0, gt=0, description="the flap window, in reading time")
    notify_device_per_hour: float = Field(default=6.0, gt=0, description="notifications per device and hour at most")
    notify_type_per_hour: float = Field(default=60.0, gt=0, description="notifications per device type and hour")
    notify_province_per_hour: float = Field(default=120.0, gt=0, description="notifications per province and hour")
    # The national center (api.federation): where province snapshots are pushed, and the daily province reports.
    federation_url: str | None = Field(
        default=None, description="national endpoint for province snapshots; unset = off"
    )
    federation_token: SecretStr | None = Field(default=None, description="bearer token the national endpoint expects")
    federation_provinces: list[str] = Field(
        default_factory=list, description='provinces this center reports, e.g. ["can-tho"]; empty = those with devices'
    )
    federation_period_s: float = Field(default=300.0, ge=10, description="one snapshot per province per period")
    reports_dir: Path | None = Field(default=None, description="where the daily province reports (CSV) go; unset = off")
    report_hour_local: int = Field(default=6, ge=0, le=23, description="hour (Asia/Ho_Chi_Minh) of the daily report")
    # People's sessions (POST /auth/login) and the limits on failed logins and unknown tokens (api.access).
    access_token_ttl_s: float = Field(default=900.0, gt=0, description="an access token's lifetime")
    refresh_token_ttl_s: float = Field(
        default=43200.0, gt=0, description="a session's lifetime: refresh tokens renew access tokens until then"
    )
    refresh_retry_grace_s: float = Field(
        default=10.0,
        ge=0,
        description="a spent refresh token presented again this soon, the session's only renewal in that time, is "
        "an answer that never arrived (a page reloaded mid-renewal) and is renewed once more; otherwise it ends the "
        "session as a stolen token",
    )
    login_failure_window_s: float = Field(default=900.0, gt=0, description="failed logins are counted this long")
    login_failures_per_user: int = Field(default=5, ge=1, description="failed logins of one username in the window")
    login_failures_per_address: int = Field(
        default=20, ge=1, description="failed logins from one client address in the window"
    )
    token_failure_window_s: float = Field(default=60.0, gt=0, description="unknown bearer tokens are counted this long")
    token_failures_per_address: int = Field(
        default=20, ge=1, description="unknown bearer tokens from one client address in the window"
    )
    # Grafana (dashboards/): where `ioc dashboards provision` upserts, and the datasource as Grafana reaches the
    # database (defaults: the compose stack's read-only role "grafana" of deploy/timescaledb/initdb-grafana-reader.sh).
    grafana_url: str = Field(default="http://127.0.0.1:3000", description="Grafana's address for its HTTP API")
    grafana_token: SecretStr | None = Field(
        default=None, description="a Grafana service account token (Editor or Admin); unset = grafana_user/password"
    )
    grafana_user: str = Field(default="admin", description="Grafana login used when no token is set")
    grafana_password: SecretStr | None = Field(default=None, description="password of grafana_user")
    grafana_db_host: str = Field(default="timescaledb:5432", description="host:port of the database as Grafana sees it")
    grafana_db_name: str = Field(default="ioc", description="database Grafana reads")
    grafana_db_user: str = Field(default="grafana", description="read-only role Grafana logs in as")
    grafana_db_password: SecretStr | None = Field(
        default=None,
        description="its password; unset = provision leaves the datasource to file provisioning and only checks it",
    )
    grafana_db_sslmode: str = Field(default="disable", description="sslmode of Grafana's database connection")
