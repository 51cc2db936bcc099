"""`/metrics`: Prometheus text of the ingest workers (multiprocess files) and of this process, for an admin
principal (a scraper uses an admin API key: `authorization: Bearer ioc_k_…`)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from api.auth import AdminDep
from api.errors import error_responses
from core.errors import Forbidden, Unauthenticated


def build_router(metrics_dir: Path | None) -> APIRouter:
    router = APIRouter(tags=["metrics"])

    @router.get("/metrics", response_class=Response, responses=error_responses(Unauthenticated, Forbidden))
    def read_metrics(principal: AdminDep) -> Response:
        if metrics_dir is not None and metrics_dir.is_dir():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=str(metrics_dir))  # type: ignore[no-untyped-call]
            body = generate_latest(registry)
        else:
            body = generate_latest(REGISTRY)
        return Response(content=body, media_type=CONTENT_TYPE_LATEST)

    return router
