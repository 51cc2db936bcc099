"""The PostgreSQL/TimescaleDB datasource every dashboard reads, as Grafana's API and its provisioning files
describe it. Grafana logs in as a read-only role (deploy/timescaledb/initdb-grafana-reader.sh: `pg_read_all_data`,
read-only transactions, 60 s statement timeout), never as the center's writer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from core.settings import Settings
from dashboards.sql import DATASOURCE_NAME, DATASOURCE_UID, POSTGRES_TYPE

# The provisioning file names the password by this variable; Grafana expands it when it reads the file.
PASSWORD_ENV: Final = "IOC_GRAFANA_DB_PASSWORD"  # noqa: S105 -- the variable's name, not a password
# PostgreSQL 15 (compose's timescale/timescaledb:…-pg15, as the backup tools need), as Grafana encodes versions.
POSTGRES_VERSION: Final = 1500
MAX_OPEN_CONNS: Final = 10
MAX_IDLE_CONNS: Final = 2
CONN_MAX_LIFETIME_S: Final = 14400


@dataclass(frozen=True, slots=True)
class DatasourceTarget:
    """Where Grafana finds the database: `host` is host:port as seen from Grafana's network."""

    host: str
    database: str
    user: str
    sslmode: str = "disable"

    @classmethod
    def from_settings(cls, settings: Settings) -> DatasourceTarget:
        return cls(
            host=settings.grafana_db_host,
            database=settings.grafana_db_name,
            user=settings.grafana_db_user,
            sslmode=settings.grafana_db_sslmode,
        )

    def json_data(self) -> dict[str, object]:
        """`jsonData` of the datasource: TimescaleDB on, so that `$__timeGroup` becomes `time_bucket`."""
        return {
            "database": self.database,
            "sslmode": self.sslmode,
            "postgresVersion": POSTGRES_VERSION,
            "timescaledb": True,
            "maxOpenConns": MAX_OPEN_CONNS,
            "maxIdleConns": MAX_IDLE_CONNS,
            "connMaxLifetime": CONN_MAX_LIFETIME_S,
        }

    def api_fields(self) -> dict[str, object]:
        """The fields provisioning sets through `/api/datasources` (and compares before it writes)."""
        return {
            "uid": DATASOURCE_UID,
            "name": DATASOURCE_NAME,
            "type": POSTGRES_TYPE,
            "access": "proxy",
            "url": self.host,
            "user": self.user,
            "isDefault": True,
            "jsonData": self.json_data(),
        }

    def provisioning_document(self) -> dict[str, object]:
        """deploy/grafana/provisioning/datasources/ioc.yaml: the same datasource, not editable in the UI."""
        entry = {
            "name": DATASOURCE_NAME,
            "uid": DATASOURCE_UID,
            "type": POSTGRES_TYPE,
            "access": "proxy",
            "url": self.host,
            "user": self.user,
            "isDefault": True,
            "editable": False,
            "jsonData": self.json_data(),
            "secureJsonData": {"password": "${" + PASSWORD_ENV + "}"},
        }
        return {"apiVersion": 1, "datasources": [entry]}
