"""The streaming job as a service runs it: settings turned into its config, with its own pool and alerts client."""

from __future__ import annotations

import threading

from analytics.alarm_policy import DetectorAlarmPolicy
from analytics.flood import NotificationLimiter, RateLimit
from analytics.job import AnalyticsJob
from analytics.notify import Notifier
from analytics.scoring import JobConfig
from core.settings import Settings
from devices.catalog import load_catalog
from protocol.broker_url import parse_broker_url
from store.pool import open_pool


def detector_policy(settings: Settings) -> DetectorAlarmPolicy:
    """When a learned-detector anomaly becomes an alarm, from the `IOC_DETECTOR_ALARM_*` settings."""
    return DetectorAlarmPolicy(
        learn_points=settings.detector_alarm_learn_points,
        learn_s=settings.detector_alarm_learn_s,
        high_score=settings.detector_alarm_high_score,
        persist_points=settings.detector_alarm_persist_points,
        persist_window=settings.detector_alarm_persist_window,
        device_gap_s=settings.detector_alarm_device_gap_s,
    )


def job_config(settings: Settings, *, name: str = "analytics") -> JobConfig:
    return JobConfig(
        name=name,
        state_save_interval_s=settings.analytics_state_save_s,
        anomaly_quiet_s=settings.anomaly_quiet_s,
        escalate_after_s=settings.alarm_escalate_after_s,
        detector_policy=detector_policy(settings),
        joint=settings.joint_detection,
        silence_reports=settings.silence_reports,
        silence_reminder_s=settings.silence_reminder_s,
        group_window_s=settings.alarm_group_window_s,
        flap_count=settings.alarm_flap_count,
        flap_window_s=settings.alarm_flap_window_s,
    )


def notification_limiter(settings: Settings) -> NotificationLimiter:
    """Notification rate limits from the `IOC_NOTIFY_*` settings (a burst of half an hour's worth)."""

    def limit(per_hour: float) -> RateLimit:
        return RateLimit(burst=max(1.0, per_hour / 2), per_hour=per_hour)

    return NotificationLimiter(
        device=limit(settings.notify_device_per_hour),
        device_type=limit(settings.notify_type_per_hour),
        province=limit(settings.notify_province_per_hour),
    )


def run_job(
    settings: Settings, stop: threading.Event, *, database_url: str, mqtt_url: str, name: str = "analytics"
) -> None:
    """The job with its own pool and alerts MQTT client until `stop` is set."""
    with (
        open_pool(database_url, min_size=1, max_size=2, name=f"ioc-{name}") as pool,
        Notifier(
            broker=parse_broker_url(mqtt_url), webhooks=settings.alarm_webhooks, client_id=f"ioc-{name}-alerts"
        ) as notifier,
    ):
        AnalyticsJob(
            job_config(settings, name=name),
            pool=pool,
            catalog=load_catalog(),
            notifier=notifier,
            limiter=notification_limiter(settings),
        ).run(stop)
