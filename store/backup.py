"""Logical backup and restore of the center's database: `pg_dump`/`pg_restore` in custom format around TimescaleDB's
`timescaledb_pre_restore()`/`timescaledb_post_restore()`, with a manifest that lets a restore prove itself equal
to its backup (per-table row counts and checksums, chunk metadata, PostgreSQL and TimescaleDB versions).

The manifest's numbers are taken in the very snapshot `pg_dump` dumps (an exported snapshot), so a backup of a
running center (ingest writing all along) is checked against exactly what the file holds."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from core.errors import StorageError
from store.analytics import snapshot_xmin
from store.pool import Conn

_LOGGER = logging.getLogger(__name__)

MANIFEST_FORMAT: Final = 1
MANIFEST_SUFFIX: Final = ".manifest.json"
HASH_CHUNK_BYTES: Final = 1 << 20
# The password goes to the tools by PGPASSWORD, never on their command line (which `ps` shows to every user).
_PASSWORD_KEY: Final = "password"  # noqa: S105 -- the libpq parameter's name, not a password
# Schemas whose tables are TimescaleDB's own (the catalog and the chunks) or PostgreSQL's: the hypertables are
# fingerprinted through their parents, the catalog through `timescaledb_information.chunks`.
_SYSTEM_SCHEMAS: Final = ("pg_catalog", "information_schema")
_SYSTEM_SCHEMA_PREFIXES: Final = ("pg_toast", "pg_temp", "_timescaledb", "timescaledb_")
# Fixed text output, so a row's text (and so its checksum) does not depend on the session's settings.
_STABLE_TEXT_SETTINGS: Final = {
    "TimeZone": "UTC",
    "DateStyle": "ISO, YMD",
    "IntervalStyle": "postgres",
    "extra_float_digits": "1",
    "bytea_output": "hex",
}


@dataclass(frozen=True, slots=True)
class TableFingerprint:
    """A table's row count and an order-independent checksum of its rows' text: the sum of the first 64 bits of
    each row's md5. A sum needs no memory and no sort, so it scales to the readings hypertable, where
    `md5(string_agg(…))` would build one string of every row."""

    rows: int
    checksum: str


@dataclass(frozen=True, slots=True)
class DatabaseFingerprint:
    tables: Mapping[str, TableFingerprint]
    # Per hypertable: how many chunks and an md5 of their time ranges, from `timescaledb_information.chunks`.
    chunks: Mapping[str, TableFingerprint]

    def differences(self, other: DatabaseFingerprint) -> list[str]:
        """What differs from `other`, one line per table or hypertable; empty when they are equal."""
        found = []
        for kind, mine, theirs in (("table", self.tables, other.tables), ("chunks of", self.chunks, other.chunks)):
            for name in sorted(set(mine) | set(theirs)):
                a, b = mine.get(name), theirs.get(name)
                if a != b:
                    found.append(f"{kind} {name}: {_describe(a)} in the backup, {_describe(b)} restored")
        return found


def _describe(print_: TableFingerprint | None) -> str:
    return "absent" if print_ is None else f"{print_.rows} rows (checksum {print_.checksum})"


@dataclass(frozen=True, slots=True)
class Versions:
    """A custom-format dump restores only into the same TimescaleDB version, and `pg_restore` of a newer major
    PostgreSQL is not supported: both are recorded and checked before a restore."""

    postgres_major: int
    timescaledb: str


@dataclass(frozen=True, slots=True)
class BackupManifest:
    created_at: str
    versions: Versions
    dump_sha256: str
    dump_bytes: int
    # Every transaction id stored in the dump (readings.ingest_xid, alarm_events.xid, job watermarks) is below
    # this: the restoring cluster must be past it, or the analytics job would skip new readings.
    xid_horizon: int
    fingerprint: DatabaseFingerprint | None = None
    format: int = field(default=MANIFEST_FORMAT)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> BackupManifest:
        try:
            raw = json.loads(text)
            if raw.get("format") != MANIFEST_FORMAT:
                raise StorageError(f"unknown backup manifest format {raw.get('format')!r} (expected {MANIFEST_FORMAT})")
            printed = raw.get("fingerprint")
            fingerprint = (
                None
                if printed is None
                else DatabaseFingerprint(
                    tables={k: TableFingerprint(**v) for k, v in printed["tables"].items()},
                    chunks={k: TableFingerprint(**v) for k, v in printed["chunks"].items()},
                )
            )
            return cls(
                created_at=str(raw["created_at"]),
                versions=Versions(**raw["versions"]),
                dump_sha256=str(raw["dump_sha256"]),
                dump_bytes=int(raw["dump_bytes"]),
                xid_horizon=int(raw["xid_horizon"]),
                fingerprint=fingerprint,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StorageError(f"the backup manifest is not readable: {exc}") from exc


def manifest_path(dump: Path) -> Path:
    return dump.with_name(dump.name + MANIFEST_SUFFIX)


@dataclass(frozen=True, slots=True)
class RestoreReport:
    versions: Versions
    tables_verified: int
    rows_verified: int
    chunks: int


# --------------------------------------------------------------------------------------------- reading a database


def read_versions(conn: Conn) -> Versions:
    """The server's major version and the TimescaleDB version installed in (or else offered to) the database."""
    row = conn.execute(
        "SELECT current_setting('server_version_num')::int / 10000, "
        "coalesce(installed_version, default_version) FROM pg_available_extensions WHERE name = 'timescaledb'"
    ).fetchone()
    if row is None:
        raise StorageError("TimescaleDB is not available on this PostgreSQL server")
    return Versions(postgres_major=int(row[0]), timescaledb=str(row[1]))


def _set_stable_text(conn: Conn) -> None:
    for name, value in _STABLE_TEXT_SETTINGS.items():
        conn.execute("SELECT set_config(%s, %s, true)", (name, value))


def _user_tables(conn: Conn) -> list[tuple[str, str]]:
    """(schema, table) of every table of ours: not the system's, not TimescaleDB's, not an extension's."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname <> ALL(%s) "
        "AND NOT n.nspname LIKE ANY(%s) "
        "AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass "
        "                AND d.objid = c.oid AND d.deptype = 'e') "
        "ORDER BY 1, 2",
        (list(_SYSTEM_SCHEMAS), [f"{prefix}%" for prefix in _SYSTEM_SCHEMA_PREFIXES]),
    ).fetchall()
    return [(str(schema), str(table)) for schema, table in rows]


def fingerprint_database(conn: Conn) -> DatabaseFingerprint:
    """Row counts and checksums of every table of ours (a hypertable's rows through its parent) and the chunks of
    every hypertable, in the caller's transaction (its snapshot is what is fingerprinted)."""
    _set_stable_text(conn)
    tables = {}
    for schema, table in _user_tables(conn):
        query = sql.SQL(
            "SELECT count(*), coalesce(sum(('x' || left(md5(t::text), 16))::bit(64)::bigint), 0)::text FROM {} t"
        ).format(sql.Identifier(schema, table))
        row = conn.execute(query).fetchone()
        assert row is not None
        tables[f"{schema}.{table}"] = TableFingerprint(rows=int(row[0]), checksum=str(row[1]))
    chunk_rows = conn.execute(
        "SELECT hypertable_schema || '.' || hypertable_name, count(*), "
        "md5(string_agg(concat_ws('|', range_start, range_end, range_start_integer, range_end_integer, "
        "is_compressed), ',' ORDER BY range_start, range_start_integer)) "
        "FROM timescaledb_information.chunks GROUP BY 1"
    ).fetchall()
    chunks = {str(name): TableFingerprint(rows=int(count), checksum=str(digest)) for name, count, digest in chunk_rows}
    hypertables = conn.execute(
        "SELECT hypertable_schema || '.' || hypertable_name FROM timescaledb_information.hypertables"
    ).fetchall()
    for (name,) in hypertables:  # a hypertable without chunks is part of the picture too
        chunks.setdefault(str(name), TableFingerprint(rows=0, checksum=""))
    return DatabaseFingerprint(tables=tables, chunks=chunks)


def holds_tables(conn: Conn) -> list[str]:
    """The tables of ours the database already holds (a restore needs an empty database)."""
    return [f"{schema}.{table}" for schema, table in _user_tables(conn)]


# --------------------------------------------------------------------------------------------- the client tools


def find_tool(name: str) -> Path:
    """`pg_dump`/`pg_restore` of the local PostgreSQL (`pg_config --bindir`), else the first on PATH."""
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        candidate = Path(bindir) / name
        if bindir and candidate.exists():
            return candidate
    found = shutil.which(name)
    if found is None:
        raise StorageError(
            f"{name} not found: install the PostgreSQL client (postgresql-client) of the server's version"
        )
    return Path(found)


def _tool_env(database_url: str) -> tuple[str, dict[str, str]]:
    """A connection string without the password, and an environment that carries the password."""
    try:
        params = conninfo_to_dict(database_url)
    except psycopg.ProgrammingError as exc:
        raise StorageError(f"the database URL is not valid: {exc}") from None
    env = dict(os.environ)
    password = params.pop(_PASSWORD_KEY, None)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **{k: v for k, v in params.items() if v is not None}), env


def _run_tool(argv: list[str], *, env: Mapping[str, str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, env=dict(env), check=False)
    _log_tool_output(what, result.stderr)
    if result.returncode != 0:
        raise StorageError(f"{what} failed (exit {result.returncode}): {result.stderr.strip()[-2000:]}")


def _log_tool_output(what: str, stderr: str) -> None:
    # pg_dump warns about the circular foreign keys of TimescaleDB's catalog (hypertable/chunk): expected, harmless.
    for line in stderr.splitlines():
        _LOGGER.debug("%s: %s", what, line)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(HASH_CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


# --------------------------------------------------------------------------------------------- backup


@contextlib.contextmanager
def _exported_snapshot(database_url: str) -> Iterator[tuple[Conn, str, int]]:
    """A read-only repeatable-read transaction whose snapshot `pg_dump --snapshot` can share, held open until the
    block ends (the snapshot lives only while its transaction does)."""
    try:
        conn = psycopg.connect(database_url, autocommit=False)
    except psycopg.OperationalError as exc:
        raise StorageError(f"cannot connect to the database: {exc}") from None
    with conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        row = conn.execute(
            "SELECT pg_export_snapshot(), pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
        ).fetchone()
        assert row is not None
        yield conn, str(row[0]), int(row[1])
        conn.rollback()


def backup_database(database_url: str, dump: Path, *, fingerprint: bool = True) -> BackupManifest:
    """Dump the database to `dump` (pg_dump custom format) and write its manifest beside it
    (`<dump>.manifest.json`). With `fingerprint`, every table is counted and checksummed in the dump's snapshot
    while pg_dump runs (a full read of the data: minutes for a large readings table)."""
    if dump.exists():
        raise StorageError(f"{dump} exists: a backup never overwrites a file")
    if not dump.parent.is_dir():
        raise StorageError(f"{dump.parent} is not a directory")
    conninfo, env = _tool_env(database_url)
    partial = dump.with_name(dump.name + ".partial")
    with _exported_snapshot(database_url) as (conn, snapshot, xid_horizon):
        versions = read_versions(conn)
        argv = [
            str(find_tool("pg_dump")),
            "--format=custom",
            f"--snapshot={snapshot}",
            f"--file={partial}",
            "--no-password",
            f"--dbname={conninfo}",
        ]
        # stderr to a file: pg_dump must never block on a full pipe while this process is busy fingerprinting.
        with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as errors:
            with subprocess.Popen(argv, stderr=errors, env=env) as dumping:
                try:
                    printed = fingerprint_database(conn) if fingerprint else None
                finally:
                    dumping.wait()
            errors.seek(0)
            stderr = errors.read()
        _log_tool_output("pg_dump", stderr)
        if dumping.returncode != 0:
            partial.unlink(missing_ok=True)
            raise StorageError(f"pg_dump failed (exit {dumping.returncode}): {stderr.strip()[-2000:]}")
    manifest = BackupManifest(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        versions=versions,
        dump_sha256=sha256_of(partial),
        dump_bytes=partial.stat().st_size,
        xid_horizon=xid_horizon,
        fingerprint=printed,
    )
    partial.replace(dump)
    _write_atomically(manifest_path(dump), manifest.to_json())
    _LOGGER.info("backup %s: %s bytes, %s tables", dump, manifest.dump_bytes, len(printed.tables) if printed else "?")
    return manifest


# --------------------------------------------------------------------------------------------- restore


def read_manifest(dump: Path) -> BackupManifest:
    path = manifest_path(dump)
    if not path.exists():
        raise StorageError(f"{path} not found: a backup is restored with its manifest (written by `ioc db backup`)")
    return BackupManifest.from_json(path.read_text(encoding="utf-8"))


# A fresh cluster is moved past the backup's transaction ids to the start of a pg_xact segment (1,048,576
# transactions each): pg_resetwal's documented safe value, whose status page PostgreSQL creates instead of reading.
XACT_SEGMENT_XIDS: Final = 0x100000


def resetwal_arguments(xid_horizon: int) -> tuple[int, int]:
    """(epoch, next xid) for `pg_resetwal -e EPOCH -x XID`: the first pg_xact segment boundary past the horizon."""
    epoch, low = xid_horizon >> 32, xid_horizon & 0xFFFFFFFF
    boundary = -(-(low + 1) // XACT_SEGMENT_XIDS) * XACT_SEGMENT_XIDS
    return (epoch + 1, XACT_SEGMENT_XIDS) if boundary > 0xFFFFFFFF else (epoch, boundary)


def check_restorable(manifest: BackupManifest, *, target: Versions, target_xid: int) -> None:
    """Refuse a restore the target cannot take faithfully, saying why and what to do."""
    if target.timescaledb != manifest.versions.timescaledb:
        raise StorageError(
            f"the backup was taken with TimescaleDB {manifest.versions.timescaledb}, the target offers "
            f"{target.timescaledb}: restore into the same version, then upgrade (ALTER EXTENSION timescaledb UPDATE)"
        )
    if target.postgres_major < manifest.versions.postgres_major:
        raise StorageError(
            f"the backup was taken from PostgreSQL {manifest.versions.postgres_major}, the target runs "
            f"{target.postgres_major}: restore into the same or a newer major version"
        )
    if target_xid < manifest.xid_horizon:
        epoch, xid = resetwal_arguments(manifest.xid_horizon)
        raise StorageError(
            f"the target cluster's transaction ids ({target_xid}) are behind the backup's ({manifest.xid_horizon}): "
            "the analytics job and the alarm stream keep their place by transaction id and would skip new data. "
            "Restore into a cluster that is further on, or move this fresh cluster on: stop it, run "
            f"`pg_resetwal -e {epoch} -x {xid} DATADIR` as its owner, start it (docs/backup.md)"
        )


def check_dump(dump: Path, manifest: BackupManifest) -> None:
    """The file is the one the manifest describes (not damaged, not another backup's)."""
    if not dump.is_file():
        raise StorageError(f"{dump} not found")
    if dump.stat().st_size != manifest.dump_bytes or sha256_of(dump) != manifest.dump_sha256:
        raise StorageError(f"{dump} does not match its manifest (size or sha256 differs): damaged, or another file")


def create_database(database_url: str, name: str) -> str:
    """Create the empty database `name` on the server of `database_url` and return its connection string."""
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.errors.DuplicateDatabase:
        raise StorageError(f"database {name!r} exists: restore into a new name, or drop it first") from None
    except psycopg.Error as exc:
        raise StorageError(f"cannot create database {name!r}: {exc}") from None
    return make_conninfo(database_url, dbname=name)


def drop_database(database_url: str, name: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def restore_database(
    database_url: str, dump: Path, *, manifest: BackupManifest, into: str | None = None
) -> RestoreReport:
    """Restore `dump` into the empty database at `database_url` (or into a new database `into` on its server) with
    TimescaleDB's procedure, then prove it equal to the backup by its manifest: StorageError lists every
    difference. Nothing is created until the file, the versions and the server's transaction ids have passed."""
    check_dump(dump, manifest)
    try:
        with psycopg.connect(database_url, autocommit=True) as server:
            check_restorable(manifest, target=read_versions(server), target_xid=snapshot_xmin(server))
    except psycopg.OperationalError as exc:
        raise StorageError(f"cannot connect to the target database: {exc}") from None
    target_url = database_url if into is None else create_database(database_url, into)
    try:
        return _restore_into(target_url, dump, manifest=manifest)
    except BaseException:
        if into is not None:  # ours, made for this restore: a half-restored copy must not be mistaken for one
            drop_database(database_url, into)
        raise


def _restore_into(target_url: str, dump: Path, *, manifest: BackupManifest) -> RestoreReport:
    conninfo, env = _tool_env(target_url)
    with psycopg.connect(target_url, autocommit=True) as admin:
        present = holds_tables(admin)
        if present:
            raise StorageError(
                f"the target database is not empty ({len(present)} tables, e.g. {present[0]}): "
                "restore into a fresh database (--into NAME, createdb, or an empty volume)"
            )
        admin.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        target = read_versions(admin)
        check_restorable(manifest, target=target, target_xid=snapshot_xmin(admin))
        admin.execute("SELECT timescaledb_pre_restore()")
        try:
            # No --jobs: TimescaleDB's catalog must be restored in dump order. --no-owner: the restoring role owns
            # what it restores (roles belong to the cluster, not to the dump).
            _run_tool(
                [
                    str(find_tool("pg_restore")),
                    "--exit-on-error",
                    "--no-owner",
                    "--no-password",
                    f"--dbname={conninfo}",
                    str(dump),
                ],
                env=env,
                what="pg_restore",
            )
        finally:
            admin.execute("SELECT timescaledb_post_restore()")
        admin.execute("ANALYZE")
        with admin.transaction():
            restored = fingerprint_database(admin)
    if manifest.fingerprint is not None:
        differences = manifest.fingerprint.differences(restored)
        if differences:
            raise StorageError("the restored database differs from the backup:\n  " + "\n  ".join(differences))
    return RestoreReport(
        versions=target,
        tables_verified=len(restored.tables) if manifest.fingerprint is not None else 0,
        rows_verified=sum(t.rows for t in restored.tables.values()) if manifest.fingerprint is not None else 0,
        chunks=sum(c.rows for c in restored.chunks.values()),
    )
