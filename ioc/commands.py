"""The center's commands: `up`, `demo`, `db migrate`, `ingest`, `api`, `services`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import random
import socket
import threading
from collections.abc import Iterator

from analytics.live_commands import analytics_running
from core.settings import Settings
from devices.catalog import Catalog, load_catalog
from devices.monitor import MonitorConfig, monitor_running
from devices.provinces import load_provinces
from devices.registry import create_device, lookup_devices
from devices.schema import migrate_database
from firmware_sim.firmware import SimDevice
from firmware_sim.fleet import Fleet, FleetConfig
from ingest.supervisor import IngestSupervisor
from ingest.worker import IngestConfig
from ioc.services import ServiceUrls, center_services
from protocol.broker_url import parse_broker_url
from store.pool import connect

_LOGGER = logging.getLogger(__name__)


def ingest_config(settings: Settings, urls: ServiceUrls) -> IngestConfig:
    return IngestConfig(
        database_url=urls.database_url,
        broker=parse_broker_url(urls.mqtt_url),
        client_id=settings.ingest_group,
        group=settings.ingest_group,
        batch_max_rows=settings.batch_max_rows,
        batch_max_wait_s=settings.batch_max_wait_ms / 1000,
        queue_max_messages=settings.queue_max_messages,
        max_payload_bytes=settings.max_payload_bytes,
        max_future_s=settings.max_future_skew_s,
    )


def _free_or(port: int) -> int:
    """`port` when it is free, else any free port (the demo must start even where 8000 is taken)."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _ingest_running(settings: Settings, urls: ServiceUrls, workers: int) -> Iterator[IngestSupervisor]:
    stop = threading.Event()
    supervisor = IngestSupervisor(
        ingest_config(settings, urls),
        workers=workers,
        metrics_dir=settings.runtime_dir / "metrics",
        log_level=settings.log_level,
    )
    supervisor.start()
    watcher = threading.Thread(target=supervisor.watch, args=(stop,), name="ingest-watch", daemon=True)
    watcher.start()
    try:
        yield supervisor
    finally:
        stop.set()
        watcher.join()
        supervisor.stop()


def _serve_api(settings: Settings, urls: ServiceUrls, *, host: str, port: int, banner: str = "") -> None:
    import uvicorn

    from api.app import create_app

    app = create_app(
        settings, database_url=urls.database_url, metrics_dir=settings.runtime_dir / "metrics", mqtt_url=urls.mqtt_url
    )
    config = uvicorn.Config(app, host=host, port=port, log_level="warning")
    server = uvicorn.Server(config)
    if banner:
        print(banner, flush=True)
    server.run()


def _monitor_running(urls: ServiceUrls) -> contextlib.AbstractContextManager[object]:
    """Device status, command acks and timeouts, and the broker's access files kept in sync with the registry."""
    config = MonitorConfig(
        database_url=urls.database_url, broker=parse_broker_url(urls.mqtt_url), access=urls.broker_access
    )
    return monitor_running(config)


def cmd_db_migrate(args: argparse.Namespace) -> int:
    settings = Settings()
    with center_services(settings) as urls:
        changed = migrate_database(urls.database_url)
    print("applied: " + ", ".join(changed) if changed else "database is up to date")
    return 0


def cmd_services(args: argparse.Namespace) -> int:
    settings = Settings()
    with center_services(settings) as urls:
        migrate_database(urls.database_url)
        print(f"IOC_DATABASE_URL={urls.database_url}\nIOC_MQTT_URL={urls.mqtt_url}\n(Ctrl-C stops them)", flush=True)
        threading.Event().wait()
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    settings = Settings()
    workers = args.workers or settings.ingest_workers
    with center_services(settings) as urls:
        migrate_database(urls.database_url)
        stop = threading.Event()
        supervisor = IngestSupervisor(
            ingest_config(settings, urls),
            workers=workers,
            metrics_dir=settings.runtime_dir / "metrics",
            log_level=settings.log_level,
        )
        try:
            supervisor.run(stop)
        except KeyboardInterrupt:
            stop.set()
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    settings = Settings()
    with center_services(settings) as urls:
        _serve_api(settings, urls, host=args.host or settings.api_host, port=args.port or settings.api_port)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    settings = Settings()
    workers = args.workers or settings.ingest_workers
    with center_services(settings) as urls:
        migrate_database(urls.database_url)
        port = _free_or(settings.api_port)
        broker = parse_broker_url(urls.mqtt_url)
        with _ingest_running(settings, urls, workers), _monitor_running(urls), analytics_running(settings, urls):
            _serve_api(
                settings,
                urls,
                host=settings.api_host,
                port=port,
                banner=f"ioc is up: API http://{settings.api_host}:{port}/docs  MQTT {broker.host}:{broker.port}",
            )
    return 0


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


def _provision(database_url: str, fleet: list[SimDevice], catalog: Catalog, type_of: dict[str, str]) -> list[SimDevice]:
    """Register the fleet (once) and give every simulated device a fresh secret for this run."""
    import dataclasses

    from devices.provisioning import rotate_secret

    with connect(database_url) as conn:
        known = lookup_devices(conn, [d.device_id for d in fleet])
        for device in fleet:
            if device.device_id not in known:
                create_device(
                    conn,
                    device_id=device.device_id,
                    type_code=type_of[device.device_id],
                    province=device.province,
                    catalog=catalog,
                    name=f"demo {type_of[device.device_id]}",
                )
        secured = [dataclasses.replace(d, password=rotate_secret(conn, d.device_id, actor="ioc demo")) for d in fleet]
        conn.commit()
    return secured


def cmd_demo(args: argparse.Namespace) -> int:
    settings = Settings()
    catalog = load_catalog()
    fleet = demo_fleet(catalog, count=args.devices, seed=args.seed)
    type_of = {d.device_id: d.type_code for d in fleet}
    with center_services(settings) as urls:
        migrate_database(urls.database_url)
        fleet = _provision(urls.database_url, fleet, catalog, type_of)
        if urls.broker_access is not None:
            from devices.access import sync_broker_access

            with connect(urls.database_url) as conn:
                sync_broker_access(conn, urls.broker_access)
        port = _free_or(settings.api_port)
        base = f"http://{settings.api_host}:{port}"
        sample = fleet[0]
        sim_broker = parse_broker_url(urls.mqtt_url).with_credentials(None, None)
        banner = "\n".join(
            [
                "",
                f"ioc demo: {len(fleet)} simulated devices publish every {args.interval:g} s to "
                f"{sim_broker.host}:{sim_broker.port}",
                f"  API docs        {base}/docs",
                f"  devices         {base}/devices",
                f"  one device      {base}/devices/{sample.device_id}",
                f"  its readings    {base}/devices/{sample.device_id}/readings",
                f"  ingest metrics  {base}/metrics",
                "Ctrl-C stops everything.",
                "",
            ]
        )
        stop = threading.Event()
        sim = Fleet(FleetConfig(broker=sim_broker, devices=fleet, interval_s=args.interval, seed=args.seed))
        sim_thread = threading.Thread(target=sim.run, args=(stop,), name="demo-fleet", daemon=True)
        with (
            _ingest_running(settings, urls, settings.ingest_workers),
            _monitor_running(urls),
            analytics_running(settings, urls),
        ):
            sim_thread.start()
            try:
                _serve_api(settings, urls, host=settings.api_host, port=port, banner=banner)
            finally:
                stop.set()
                sim_thread.join(timeout=10)
    return 0
