"""What the API's lifespan owns, and the dependency aliases that hand it to routes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from api.access.token_limiter import UnknownTokenLimiter
from core.settings import Settings
from devices.catalog import Catalog
from devices.downlink import CommandPublisher
from store.pool import Conn, Pool


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    pool: Pool
    catalog: Catalog
    # None when the API runs without a broker (commands are then refused with 503).
    commands: CommandPublisher | None = None
    # Unknown bearer tokens per client address (api.auth refuses an address that sends too many).
    token_failures: UnknownTokenLimiter = field(default_factory=UnknownTokenLimiter)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.ioc
    return state


def get_conn(state: Annotated[AppState, Depends(get_state)]) -> Iterator[Conn]:
    with state.pool.connection() as conn:
        yield conn


StateDep = Annotated[AppState, Depends(get_state)]
ConnDep = Annotated[Conn, Depends(get_conn)]
