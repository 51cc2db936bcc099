"""Ordered SQL migrations, applied once each and recorded in `schema_migrations`."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources

import psycopg

from core.errors import StorageError
from store.pool import Conn

_LOGGER = logging.getLogger(__name__)

# Any constant works: it serialises concurrent `ioc db migrate` runs against one database.
_MIGRATION_LOCK_KEY = 0x10C_D8


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations() -> list[Migration]:
    """The migrations shipped in `store/migrations`, ordered by their numeric prefix."""
    folder = resources.files("store") / "migrations"
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version, _, rest = entry.name.partition("_")
            found.append(Migration(version=version, name=rest.removesuffix(".sql"), sql=entry.read_text("utf-8")))
    return sorted(found, key=lambda m: int(m.version))


def apply_migrations(conn: Conn) -> list[str]:
    """Apply the pending migrations in one transaction each; returns the names applied (empty when up to date)."""
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
        done = {str(version): str(checksum) for version, checksum in rows}
        for migration in load_migrations():
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise StorageError(
                        f"migration {migration.version}_{migration.name} changed after it was applied; "
                        "add a new migration instead of editing an applied one"
                    )
                continue
            try:
                conn.execute(migration.sql.encode())
            except psycopg.Error as exc:
                raise StorageError(f"migration {migration.version}_{migration.name} failed: {exc}") from exc
            conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                (migration.version, migration.name, migration.checksum),
            )
            _LOGGER.info("applied migration %s_%s", migration.version, migration.name)
            applied.append(f"{migration.version}_{migration.name}")
    return applied
