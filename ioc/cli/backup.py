"""`ioc db backup FILE` / `ioc db restore FILE`: a logical backup of the center's database with a manifest, and a
restore into a fresh database that proves itself equal to it (store/backup.py; docs/backup.md)."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from pathlib import Path

from core.settings import Settings


def add_db_parsers(db_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = db_sub.add_parser(
        "backup",
        help="dump the database (pg_dump custom format) to FILE, with FILE.manifest.json: versions, row counts "
        "and checksums taken in the dump's own snapshot",
    )
    backup.add_argument("file", type=Path, metavar="FILE", help="the dump to write (never overwritten)")
    backup.add_argument(
        "--no-fingerprint",
        action="store_true",
        help="skip counting and checksumming every table (faster; the restore can then check versions only)",
    )
    backup.set_defaults(func=cmd_backup)

    restore = db_sub.add_parser(
        "restore",
        help="restore FILE into an empty database (IOC_DATABASE_URL's, or a new one with --into) with TimescaleDB's "
        "pre/post-restore procedure, then check it against FILE.manifest.json",
    )
    restore.add_argument("file", type=Path, metavar="FILE", help="a dump written by `ioc db backup`")
    restore.add_argument(
        "--into",
        metavar="NAME",
        default=None,
        help="create database NAME on the same server and restore into it (default: the configured database, "
        "which must be empty)",
    )
    restore.set_defaults(func=cmd_restore)


@contextlib.contextmanager
def _database_url(settings: Settings) -> Iterator[str]:
    """The configured database, or the embedded one (attached to when a center runs it, else started for the
    call): only the database, a backup needs no broker."""
    if settings.database_url is not None:
        yield settings.database_url.get_secret_value()
        return
    from embedded.runtime import EmbeddedPostgres

    with EmbeddedPostgres(settings.runtime_dir / "postgres") as pg:
        yield pg.url


def cmd_backup(args: argparse.Namespace) -> int:
    from store.backup import backup_database, manifest_path

    with _database_url(Settings()) as url:
        manifest = backup_database(url, args.file, fingerprint=not args.no_fingerprint)
    printed = manifest.fingerprint
    counted = (
        f"{len(printed.tables)} tables, {sum(t.rows for t in printed.tables.values())} rows, "
        f"{sum(c.rows for c in printed.chunks.values())} chunks"
        if printed is not None
        else "not fingerprinted"
    )
    print(
        f"wrote {args.file} ({manifest.dump_bytes} bytes; PostgreSQL {manifest.versions.postgres_major}, "
        f"TimescaleDB {manifest.versions.timescaledb}) and {manifest_path(args.file)} ({counted})"
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from store.backup import read_manifest, restore_database

    manifest = read_manifest(args.file)
    with _database_url(Settings()) as url:
        report = restore_database(url, args.file, manifest=manifest, into=args.into)
    where = f"database {args.into}" if args.into else "the configured database"
    verified = (
        f"{report.tables_verified} tables, {report.rows_verified} rows and {report.chunks} chunks equal to the backup"
        if manifest.fingerprint is not None
        else f"{report.chunks} chunks; the backup has no fingerprint, so rows were not compared"
    )
    print(f"restored {args.file} into {where}: {verified}")
    return 0
