"""The FastAPI application: `create_app(settings, database_url=…)`; its lifespan owns the database pool."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from api.errors import register_error_handlers
from api.routers import alarms, commands, device_health, devices, health, metrics, readings
from api.state import AppState
from core.settings import Settings
from devices.catalog import load_catalog
from devices.downlink import CommandPublisher
from protocol.broker_url import parse_broker_url
from store.pool import open_pool


def create_app(
    settings: Settings, *, database_url: str, metrics_dir: Path | None = None, mqtt_url: str | None = None
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with contextlib.ExitStack() as stack:
            pool = stack.enter_context(open_pool(database_url, min_size=1, max_size=settings.pool_max_size, name="api"))
            publisher = None
            if mqtt_url is not None:
                publisher = stack.enter_context(
                    CommandPublisher(
                        parse_broker_url(mqtt_url), client_id=f"ioc-api-commands-{os.getpid()}-{id(app):x}"
                    )
                )
            app.state.ioc = AppState(settings=settings, pool=pool, catalog=load_catalog(), commands=publisher)
            yield

    app = FastAPI(
        title="ioc",
        summary="IoT telemetry ingestion and smart-monitoring center",
        version="0.1.0",
        lifespan=lifespan,
    )
    register_error_handlers(app)
    app.include_router(health.router)
    app.include_router(device_health.router)
    app.include_router(devices.router)
    app.include_router(commands.router)
    app.include_router(readings.router)
    app.include_router(alarms.router)
    app.include_router(alarms.device_router)
    app.include_router(metrics.build_router(metrics_dir))
    return app
