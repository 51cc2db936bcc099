"""The FastAPI application: `create_app(settings, database_url=…)`; its lifespan owns the database pool."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from api.routers import devices, health, metrics, readings
from api.state import AppState
from devices.catalog import load_catalog
from ioc.settings import Settings
from store.pool import open_pool


def create_app(settings: Settings, *, database_url: str, metrics_dir: Path | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with open_pool(database_url, min_size=1, max_size=settings.pool_max_size, name="api") as pool:
            app.state.ioc = AppState(settings=settings, pool=pool, catalog=load_catalog())
            yield

    app = FastAPI(
        title="ioc",
        summary="IoT telemetry ingestion and smart-monitoring center",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.include_router(health.router)
    app.include_router(devices.router)
    app.include_router(readings.router)
    app.include_router(metrics.build_router(metrics_dir))
    return app
