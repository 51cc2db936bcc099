"""The database a command works on: the configured one, the running embedded one, or one started for the call."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from core.settings import Settings

if TYPE_CHECKING:
    from embedded.services import ServiceUrls


@contextlib.contextmanager
def command_center(settings: Settings) -> Iterator[tuple[Any, ServiceUrls]]:
    """A connection to the center's database and where its services are (the broker's address for devices)."""
    from devices.schema import migrate_database
    from embedded.services import center_services
    from store.pool import connect

    # A running center's embedded database is attached to (never stopped); otherwise one is started for this call.
    with center_services(settings) as urls:
        url = urls.database_url
        migrate_database(url)
        with connect(url) as conn:
            yield conn, urls
            conn.commit()


@contextlib.contextmanager
def command_database() -> Iterator[Any]:
    """A connection to the configured database, to the running embedded one, or to one started for this call."""
    with command_center(Settings()) as (conn, _):
        yield conn
