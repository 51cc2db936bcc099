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
from devices.onboarding import DeviceBroker
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
    # Where devices connect, told to a new device in its onboarding answer (empty when the API is not told).
    device_broker: DeviceBroker = field(default_factory=DeviceBroker)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.ioc
    return state


def get_conn(state: Annotated[AppState, Depends(get_state)]) -> Iterator[Conn]:
    """A pooled connection for one route; leaving the block commits (or rolls back on an error)."""
    with state.pool.connection() as conn:
        yield conn


StateDep = Annotated[AppState, Depends(get_state)]
# scope="function": the transaction commits when the route returns, before the response is sent. With the default
# ("request") it would commit after the client had its answer, so a client's next request could miss its own write
# (an account re-enabled, then a login refused as disabled).
ConnDep = Annotated[Conn, Depends(get_conn, scope="function")]
