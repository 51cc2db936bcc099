"""The connection pool: opened by each entry point that owns it, passed down as a pool or a connection."""

from __future__ import annotations

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool

from core.errors import StorageError

DEFAULT_TIMEOUT_S = 30.0

Conn = psycopg.Connection[TupleRow]
Pool = ConnectionPool[Conn]


def open_pool(
    url: str, *, min_size: int = 1, max_size: int = 8, name: str = "ioc", timeout_s: float = DEFAULT_TIMEOUT_S
) -> Pool:
    """An opened pool; use it as a context manager (`with open_pool(url) as pool:`) so it is closed.
    `timeout_s`: how long a caller waits for a connection (PoolTimeout after it)."""
    pool: Pool = ConnectionPool(
        url,
        min_size=min_size,
        max_size=max_size,
        name=name,
        open=False,
        timeout=timeout_s,
        # A restarted database leaves dead connections behind: check each one before handing it out.
        check=ConnectionPool.check_connection,
        kwargs={"autocommit": False},
    )
    try:
        pool.open(wait=True, timeout=DEFAULT_TIMEOUT_S)
    except Exception as exc:
        pool.close()
        raise StorageError(f"cannot connect to the database: {exc}") from exc
    return pool


def connect(url: str, *, autocommit: bool = False) -> Conn:
    """One connection, for commands that do one thing and exit."""
    try:
        return psycopg.connect(url, autocommit=autocommit)
    except psycopg.OperationalError as exc:
        raise StorageError(f"cannot connect to the database: {exc}") from exc
