"""The FastAPI application: `create_app(settings, database_url=…)`; its lifespan owns the database pool."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from api.docs import add_docs_pages
from api.errors import register_error_handlers
from api.openapi import use_truthful_openapi
from api.request_text import UnstorableTextGuard
from api.routers import (
    alarms,
    audit,
    auth,
    catalog,
    commands,
    console,
    device_health,
    devices,
    export,
    federation,
    health,
    keys,
    kpis,
    maintenance,
    metrics,
    quarantine,
    readings,
    stream,
    users,
)
from api.state import AppState
from core.settings import Settings
from devices.catalog import load_catalog
from devices.downlink import CommandPublisher
from devices.onboarding import DeviceBroker
from protocol.broker_url import parse_broker_url
from store.pool import open_pool


def create_app(
    settings: Settings,
    *,
    database_url: str,
    metrics_dir: Path | None = None,
    mqtt_url: str | None = None,
    device_broker: DeviceBroker | None = None,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with contextlib.ExitStack() as stack:
            pool = stack.enter_context(
                open_pool(
                    database_url,
                    min_size=1,
                    max_size=settings.pool_max_size,
                    name="api",
                    timeout_s=settings.api_db_timeout_s,  # issue 14: 503 fast while the database is down
                )
            )
            publisher = None
            if mqtt_url is not None:
                publisher = stack.enter_context(
                    CommandPublisher(
                        parse_broker_url(mqtt_url), client_id=f"ioc-api-commands-{os.getpid()}-{id(app):x}"
                    )
                )
            app.state.ioc = AppState(
                settings=settings,
                pool=pool,
                catalog=load_catalog(),
                commands=publisher,
                # Told to new devices; unless given, the broker the API itself reaches (without its credentials).
                device_broker=device_broker
                or DeviceBroker.from_urls(
                    public_url=settings.device_broker_url,
                    center_url=mqtt_url,
                    tls_url=None,
                    ca_file=settings.broker_ca_file,
                ),
            )
            yield

    app = FastAPI(
        title="ioc",
        summary="IoT telemetry ingestion and smart-monitoring center",
        version="0.1.0",
        lifespan=lifespan,
        # Served from the project's own copies by add_docs_pages, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    register_error_handlers(app)
    app.add_middleware(UnstorableTextGuard)
    add_docs_pages(app)
    use_truthful_openapi(app)
    app.include_router(health.router)
    app.include_router(device_health.router)
    app.include_router(devices.router)
    app.include_router(commands.router)
    app.include_router(readings.router)
    app.include_router(alarms.router)
    app.include_router(alarms.device_router)
    app.include_router(audit.router)
    app.include_router(metrics.build_router(metrics_dir))
    app.include_router(catalog.router)
    app.include_router(stream.router)
    app.include_router(export.router)
    app.include_router(federation.router)
    app.include_router(kpis.router)
    app.include_router(auth.router)
    app.include_router(users.router)
    app.include_router(keys.router)
    app.include_router(console.router)
    app.include_router(quarantine.router)
    app.include_router(maintenance.router)
    return app
