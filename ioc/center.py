"""Process wiring of the center: the parts `ioc up` and `ioc demo` run side by side, each a context manager, each
with the broker account of its role (ingest, commands, alerts)."""

from __future__ import annotations

import contextlib
import functools
import random
import socket
from collections.abc import Iterator

from analytics.runner import run_job
from core.lifecycle import running_in_thread
from core.settings import Settings
from devices.catalog import Catalog
from devices.monitor import DeviceMonitor, MonitorConfig
from devices.onboarding import DeviceBroker
from devices.provinces import load_provinces
from embedded.services import ServiceUrls
from firmware_sim.firmware import SimDevice
from ingest.supervisor import IngestSupervisor, ingest_config
from protocol.broker_url import parse_broker_url


def free_or(port: int) -> int:
    """`port` when it is free, else any free port (the demo must start even where 8000 is taken)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ingest_running(settings: Settings, urls: ServiceUrls, *, workers: int) -> IngestSupervisor:
    """The ingest workers and their watcher, for a `with` block."""
    return IngestSupervisor(
        ingest_config(settings, database_url=urls.database_url, mqtt_url=urls.role_url("ingest")),
        workers=workers,
        metrics_dir=settings.runtime_dir / "metrics",
        log_level=settings.log_level,
    )


@contextlib.contextmanager
def monitor_running(urls: ServiceUrls) -> Iterator[DeviceMonitor]:
    """Device status, command acks and timeouts, and the broker's access files kept in sync with the registry."""
    monitor = DeviceMonitor(
        MonitorConfig(
            database_url=urls.database_url,
            broker=parse_broker_url(urls.role_url("commands")),
            access=urls.broker_access,
        )
    )
    with running_in_thread(monitor.run, name="device-monitor"):
        yield monitor


def analytics_running(settings: Settings, urls: ServiceUrls) -> contextlib.AbstractContextManager[object]:
    """The streaming job on a thread of this process, with its own pool and MQTT client."""
    job = functools.partial(run_job, settings, database_url=urls.database_url, mqtt_url=urls.role_url("alerts"))
    return running_in_thread(job, name="analytics-job")


def device_broker(settings: Settings, urls: ServiceUrls) -> DeviceBroker:
    """Where new devices are told to connect: the operator's public address, else the broker the center runs."""
    return DeviceBroker.from_urls(
        public_url=settings.device_broker_url,
        center_url=urls.mqtt_url,
        tls_url=urls.device_tls_url,
        ca_file=urls.ca_file if urls.ca_file is not None else settings.broker_ca_file,
    )


@contextlib.contextmanager
def lifecycle_running(settings: Settings, urls: ServiceUrls) -> Iterator[None]:
    """Rollups every minute and retention every hour (store.lifecycle), on a thread with a connection of its own."""
    from store.lifecycle import LifecycleConfig, LifecycleJob
    from store.pool import open_pool
    from store.retention import retention_policy

    config = LifecycleConfig(
        policy=retention_policy(settings),
        rollup_every_s=settings.rollup_interval_s,
        retention_every_s=settings.retention_interval_s,
    )
    with (
        open_pool(urls.database_url, min_size=1, max_size=1, name="ioc-lifecycle") as pool,
        running_in_thread(LifecycleJob(config, pool=pool).run, name="data-lifecycle"),
    ):
        yield


def serve_api(
    settings: Settings, urls: ServiceUrls, *, host: str, port: int, workers: int = 1, banner: str = ""
) -> None:
    """The HTTP API until interrupted: in this process, or in `workers` processes sharing the listening socket
    (uvicorn's supervisor restarts one that dies). Each process has its own database pool and rate-limit counters."""
    import functools

    import uvicorn
    from uvicorn.supervisors import Multiprocess

    from api.app import create_app

    app_factory = functools.partial(
        create_app,
        settings,
        database_url=urls.database_url,
        metrics_dir=settings.runtime_dir / "metrics",
        mqtt_url=urls.role_url("commands"),
        device_broker=device_broker(settings, urls),
    )
    # The factory (pickled to each worker, which spawns) builds its own app: nothing is shared between processes.
    config = uvicorn.Config(app_factory, factory=True, host=host, port=port, workers=workers, log_level="warning")
    # Listening before the banner: a client told the API is up waits until a worker accepts, never refused.
    sockets = [config.bind_socket()]
    sockets[0].listen(config.backlog)
    if banner:
        print(banner, flush=True)
    if workers == 1:
        uvicorn.Server(config).run(sockets=sockets)
    else:
        Multiprocess(config, sockets=sockets).run()


def demo_fleet(catalog: Catalog, *, count: int, seed: int) -> list[SimDevice]:
    """`count` devices spread over the catalog's types and a few provinces, deterministic for a seed."""
    rng = random.Random(seed)
    provinces = sorted(load_provinces())
    types = sorted(catalog.types.values(), key=lambda t: t.code)
    fleet = []
    for i in range(count):
        dtype = types[i % len(types)]
        fleet.append(
            SimDevice(
                device_id=f"demo-{dtype.code.replace('_', '-')}-{i:03d}",
                type_code=dtype.code,
                province=rng.choice(provinces),
                sector=dtype.sector,
            )
        )
    return fleet


@contextlib.contextmanager
def reporting_running(settings: Settings, urls: ServiceUrls) -> Iterator[None]:
    """The national-center push and the daily province reports, when configured (`IOC_FEDERATION_URL`,
    `IOC_REPORTS_DIR`); nothing otherwise."""
    from api.federation.push import FederationPusher, PushConfig
    from api.federation.report import DailyReporter, ReportConfig
    from store.pool import open_pool

    if settings.federation_url is None and settings.reports_dir is None:
        yield
        return
    with contextlib.ExitStack() as stack:
        pool = stack.enter_context(open_pool(urls.database_url, min_size=1, max_size=2, name="ioc-reporting"))
        if settings.federation_url is not None:
            token = settings.federation_token.get_secret_value() if settings.federation_token else None
            pusher = FederationPusher(
                PushConfig(
                    url=settings.federation_url,
                    provinces=tuple(settings.federation_provinces),
                    period_s=settings.federation_period_s,
                    token=token,
                ),
                pool=pool,
            )
            stack.enter_context(running_in_thread(pusher.run, name="federation-push"))
        if settings.reports_dir is not None:
            reporter = DailyReporter(
                ReportConfig(
                    folder=settings.reports_dir,
                    provinces=tuple(settings.federation_provinces),
                    hour_local=settings.report_hour_local,
                ),
                pool=pool,
            )
            stack.enter_context(running_in_thread(reporter.run, name="daily-reports"))
        yield
