"""The center's database made ready: the store's migrations applied and the catalog's data synced."""

from __future__ import annotations

from devices.catalog import load_catalog
from devices.provinces import load_provinces
from devices.registry import sync_catalog, sync_provinces
from store.migrate import apply_migrations
from store.pool import connect


def migrate_database(database_url: str) -> list[str]:
    """Apply pending migrations and sync the catalog data; returns what changed (empty when up to date)."""
    changed: list[str] = []
    with connect(database_url) as conn:
        changed.extend(apply_migrations(conn))
        with conn.transaction():
            types = sync_catalog(conn, load_catalog())
            provinces = sync_provinces(conn, load_provinces().values())
        if types:
            changed.append(f"{types} device types")
        if provinces:
            changed.append(f"{provinces} provinces")
    return changed
