"""The database a command works on: the configured one, the running embedded one, or one started for the call."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from core.settings import Settings


@contextlib.contextmanager
def command_database() -> Iterator[Any]:
    """A connection to the configured database, to the running embedded one, or to one started for this call."""
    from devices.schema import migrate_database
    from embedded.services import center_services
    from store.pool import connect

    settings = Settings()
    # A running center's embedded database is attached to (never stopped); otherwise one is started for this call.
    with center_services(settings) as urls:
        url = urls.database_url
        migrate_database(url)
        with connect(url) as conn:
            yield conn
            conn.commit()
