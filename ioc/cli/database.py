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
    url: str | None = None
    if settings.database_url is not None:
        url = settings.database_url.get_secret_value()
    else:
        port_file = settings.runtime_dir / "postgres.port"
        if (settings.runtime_dir / "postgres" / "data" / "postmaster.pid").exists() and port_file.exists():
            url = f"postgresql://ioc@127.0.0.1:{port_file.read_text().strip()}/ioc"
    with contextlib.ExitStack() as stack:
        if url is None:
            url = stack.enter_context(center_services(settings)).database_url
            migrate_database(url)
        with connect(url) as conn:
            yield conn
            conn.commit()
