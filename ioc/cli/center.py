"""`ioc up`, `ioc demo`, `ioc db migrate`, `ioc ingest`, `ioc api`, `ioc services`: running the center."""

from __future__ import annotations

import argparse
import logging
import shutil
import threading
from pathlib import Path

from core.errors import InvalidRequest
from core.settings import Settings

_LOGGER = logging.getLogger(__name__)


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    up = sub.add_parser("up", help="run the center: migrate, ingest workers, device monitor, analytics and the API")
    up.add_argument("--workers", type=int, default=None, help="ingest worker processes (default: IOC_INGEST_WORKERS)")
    up.set_defaults(func=cmd_up)

    demo = sub.add_parser("demo", help="run the center plus a simulated device fleet")
    demo.add_argument("--devices", type=int, default=24, help="simulated devices (default 24)")
    demo.add_argument("--interval", type=float, default=2.0, help="seconds between a device's reports (default 2)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the fleet's layout and signals (default 7)")
    demo.set_defaults(func=cmd_demo)

    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    migrate = db_sub.add_parser("migrate", help="apply pending migrations and sync catalog data (idempotent)")
    migrate.set_defaults(func=cmd_db_migrate)
    from ioc.cli import backup  # `ioc db backup|restore`

    backup.add_db_parsers(db_sub)
    from ioc.cli import lifecycle  # `ioc db rollup|retention`

    lifecycle.add_db_parsers(db_sub)

    ingest = sub.add_parser("ingest", help="run ingest workers against the configured broker and database")
    ingest.add_argument("--workers", type=int, default=None, help="worker processes (default: IOC_INGEST_WORKERS)")
    ingest.set_defaults(func=cmd_ingest)

    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default=None, help="listen address (default: IOC_API_HOST)")
    api.add_argument("--port", type=int, default=None, help="listen port (default: IOC_API_PORT)")
    api.add_argument("--workers", type=int, default=None, help="API processes (default: IOC_API_WORKERS)")
    api.set_defaults(func=cmd_api)

    services = sub.add_parser("services", help="start the embedded broker and database and print their URLs")
    services.set_defaults(func=cmd_services)

    broker = sub.add_parser(
        "broker",
        help="run the center's Mosquitto (password file and ACL plugin from the registry, TLS, supervised) "
        "against IOC_DATABASE_URL: the compose stack's broker",
    )
    broker.add_argument("--port", type=int, default=1883, help="plain MQTT port when IOC_BROKER_PLAIN (default 1883)")
    broker.add_argument("--tls-port", type=int, default=8883, help="mqtts port (default 8883)")
    broker.add_argument("--export-ca", type=Path, default=None, help="copy the CA certificate (only) into this folder")
    broker.set_defaults(func=cmd_broker)


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from devices.schema import migrate_database
    from embedded.services import center_services

    with center_services(Settings()) as urls:
        changed = migrate_database(urls.database_url)
    print("applied: " + ", ".join(changed) if changed else "database is up to date")
    return 0


def cmd_services(args: argparse.Namespace) -> int:
    from devices.schema import migrate_database
    from embedded.services import center_services

    with center_services(Settings()) as urls:
        migrate_database(urls.database_url)
        print(f"IOC_DATABASE_URL={urls.database_url}\nIOC_MQTT_URL={urls.mqtt_url}\n(Ctrl-C stops them)", flush=True)
        threading.Event().wait()
    return 0


def cmd_broker(args: argparse.Namespace) -> int:
    """The broker as its own service: Mosquitto owned and restarted by this process, its password file kept in
    sync with the registry by the device monitor (which also records device status and command acks)."""
    from core.errors import RuntimeServiceError
    from devices.schema import migrate_database
    from embedded.services import ServiceUrls, embedded_broker
    from embedded.supervisor import ServiceSupervisor
    from ioc.center import monitor_running

    settings = Settings()
    if settings.database_url is None:
        raise RuntimeServiceError("ioc broker keeps the broker in sync with a database: set IOC_DATABASE_URL")
    database_url = settings.database_url.get_secret_value()
    migrate_database(database_url)
    root = settings.runtime_dir / "mosquitto"
    with embedded_broker(settings, root, port=settings.broker_port or args.port, tls_port=args.tls_port) as mq:
        if args.export_ca is not None and mq.tls_files is not None:
            shutil.copyfile(mq.tls_files.ca_cert, args.export_ca / "ca.crt")
        urls = ServiceUrls(
            database_url=database_url,
            mqtt_url=mq.url,
            broker_access=mq.access_target(),
            commands_mqtt_url=mq.role_url("commands"),
        )
        with ServiceSupervisor([mq]), monitor_running(urls):
            print(f"ioc broker: mqtt {mq.port if mq.plain else 'off'}, mqtts {mq.tls_port or 'off'}", flush=True)
            threading.Event().wait()
    return 0


def _ingest_settings() -> Settings:
    """Settings for a command that runs ingest; InvalidRequest for a source that cannot run as configured."""
    settings = Settings()
    if settings.ingest_source == "jetstream" and settings.mqtt_url is None:
        # Devices publish to the NATS nodes' MQTT listeners; commands and alerts go out through one of them too.
        raise InvalidRequest(
            "IOC_INGEST_SOURCE=jetstream needs IOC_MQTT_URL: the MQTT listener of a NATS node (docs/scaling.md); "
            "the embedded Mosquitto is for the single-machine path"
        )
    return settings


def cmd_ingest(args: argparse.Namespace) -> int:
    from devices.schema import migrate_database
    from embedded.services import center_services
    from ioc.center import ingest_running

    settings = _ingest_settings()
    with center_services(settings) as urls:
        migrate_database(urls.database_url)
        with ingest_running(settings, urls, workers=args.workers or settings.ingest_workers):
            threading.Event().wait()
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    from embedded.services import center_services
    from ioc.center import serve_api

    settings = Settings()
    with center_services(settings) as urls:
        serve_api(
            settings,
            urls,
            host=args.host or settings.api_host,
            port=args.port or settings.api_port,
            workers=args.workers or settings.api_workers,
        )
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from devices.schema import migrate_database
    from embedded.services import center_services
    from ioc.center import (
        analytics_running,
        free_or,
        ingest_running,
        lifecycle_running,
        monitor_running,
        reporting_running,
        serve_api,
    )
    from protocol.broker_url import parse_broker_url

    settings = _ingest_settings()
    with center_services(settings) as urls:
        migrate_database(urls.database_url)
        port = free_or(settings.api_port)
        broker = parse_broker_url(urls.mqtt_url)
        with (
            ingest_running(settings, urls, workers=args.workers or settings.ingest_workers),
            monitor_running(urls),
            analytics_running(settings, urls),
            reporting_running(settings, urls),
            lifecycle_running(settings, urls),
        ):
            serve_api(
                settings,
                urls,
                host=settings.api_host,
                port=port,
                workers=settings.api_workers,
                banner=f"ioc is up: API http://{settings.api_host}:{port}/docs  MQTT {broker.host}:{broker.port}"
                + (f"  MQTTS {urls.device_tls_url} (CA {urls.ca_file})" if urls.device_tls_url else ""),
            )
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import dataclasses

    from api.access.users import create_first_admin
    from core.lifecycle import running_in_thread
    from devices.access import sync_broker_access
    from devices.catalog import load_catalog
    from devices.provisioning import FleetDevice, provision_fleet
    from devices.schema import migrate_database
    from embedded.services import center_services
    from firmware_sim.fleet import Fleet, FleetConfig
    from ioc.center import (
        analytics_running,
        demo_fleet,
        free_or,
        ingest_running,
        lifecycle_running,
        monitor_running,
        serve_api,
    )
    from protocol.broker_url import parse_broker_url
    from store.pool import connect

    settings = Settings()
    catalog = load_catalog()
    fleet = demo_fleet(catalog, count=args.devices, seed=args.seed)
    with center_services(settings) as urls:
        migrate_database(urls.database_url)
        with connect(urls.database_url) as conn:
            # Registered once; every run gives each simulated device a fresh secret.
            secrets = provision_fleet(
                conn,
                [FleetDevice(d.device_id, d.type_code, d.province, name=f"demo {d.type_code}") for d in fleet],
                catalog=catalog,
                actor="ioc demo",
            )
            admin_password = create_first_admin(conn, actor="ioc demo")  # None when users exist already
            conn.commit()
            if urls.broker_access is not None:
                sync_broker_access(conn, urls.broker_access)
        fleet = [dataclasses.replace(d, password=secrets[d.device_id]) for d in fleet]
        port = free_or(settings.api_port)
        base = f"http://{settings.api_host}:{port}"
        sample = fleet[0]
        sim_broker = parse_broker_url(urls.mqtt_url).with_credentials(None, None)
        banner = "\n".join(
            [
                "",
                f"ioc demo: {len(fleet)} simulated devices publish every {args.interval:g} s to "
                f"{sim_broker.host}:{sim_broker.port}",
                f"  console         {base}/console   (wall screen: {base}/console?kiosk=1&rotate=province)",
                f"  log in          admin / {admin_password}   (shown once; keep it)"
                if admin_password
                else "  log in          as an existing user (ioc users list; ioc users reset-password NAME)",
                f"  API docs        {base}/docs   (Authorize with the same login)",
                f"  one device      {base}/console#/device/{sample.device_id}",
                f"  its readings    {base}/devices/{sample.device_id}/readings   (API, with a token)",
                "Ctrl-C stops everything.",
                "",
            ]
        )
        sim = Fleet(FleetConfig(broker=sim_broker, devices=fleet, interval_s=args.interval, seed=args.seed))

        def run_demo_fleet(stop: threading.Event) -> None:
            failure = sim.run(stop).failure
            if failure is not None:  # the center goes on; the screen would otherwise just stay empty
                _LOGGER.error(
                    "the demo fleet stopped: the broker at %s:%d gave %s (%d) %s",
                    sim_broker.host,
                    sim_broker.port,
                    failure.kind,
                    failure.count,
                    failure.detail,
                )

        with (
            ingest_running(settings, urls, workers=settings.ingest_workers),
            monitor_running(urls),
            analytics_running(settings, urls),
            lifecycle_running(settings, urls),
            running_in_thread(run_demo_fleet, name="demo-fleet", join_timeout_s=10),
        ):
            serve_api(settings, urls, host=settings.api_host, port=port, workers=settings.api_workers, banner=banner)
    return 0
