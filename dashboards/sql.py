"""The PostgreSQL datasource's query as a typed SDK variant: grafana-foundation-sdk 11.5 ships builders for many
datasources but none for PostgreSQL, so this module adds one the way the SDK's own variants are made (a
`Dataquery` with `to_json`/`from_json`, a `Builder`, and a registered `DataqueryConfig` for unmarshalling)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal, Self, cast

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import runtime as cogruntime
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.dashboard import DataSourceRef

# Grafana 11's id of its built-in PostgreSQL datasource plugin (formerly "postgres").
POSTGRES_TYPE: Final = "grafana-postgresql-datasource"
DATASOURCE_UID: Final = "ioc-timescaledb"
DATASOURCE_NAME: Final = "IOC TimescaleDB"

SqlFormat = Literal["time_series", "table"]
SQL_FORMATS: Final[tuple[SqlFormat, ...]] = ("time_series", "table")


def datasource_ref() -> DataSourceRef:
    """The reference every panel, target and variable carries (a fresh object: SDK models are mutable)."""
    return DataSourceRef(type_val=POSTGRES_TYPE, uid=DATASOURCE_UID)


@dataclass(frozen=True, slots=True)
class SqlQuery(cogvariants.Dataquery):
    """One raw-SQL target of the PostgreSQL datasource, as Grafana's query editor saves it in code mode."""

    ref_id: str
    raw_sql: str
    format: SqlFormat = "table"
    hide: bool | None = None

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "datasource": datasource_ref(),
            "editorMode": "code",
            "format": self.format,
            "rawQuery": True,
            "rawSql": self.raw_sql,
        }
        if self.hide is not None:
            payload["hide"] = self.hide
        return payload

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        fmt = data.get("format", "table")
        if fmt not in SQL_FORMATS:
            raise ValueError(f"SQL target {data.get('refId')!r}: format {fmt!r} is not one of {SQL_FORMATS}")
        datasource = data.get("datasource") or {}
        if datasource.get("type") != POSTGRES_TYPE or datasource.get("uid") != DATASOURCE_UID:
            raise ValueError(f"SQL target {data.get('refId')!r}: datasource {datasource!r} is not {DATASOURCE_UID}")
        if data.get("editorMode") != "code" or data.get("rawQuery") is not True:
            raise ValueError(f"SQL target {data.get('refId')!r}: only raw SQL in code mode is supported")
        return cls(
            ref_id=str(data["refId"]),
            raw_sql=str(data["rawSql"]),
            format=cast(SqlFormat, fmt),
            hide=data.get("hide"),
        )


class Sql(cogbuilder.Builder[cogvariants.Dataquery]):
    """Builder of an `SqlQuery`: `Sql("SELECT …").time_series()`; the ref id defaults to A."""

    def __init__(self, raw_sql: str, *, ref_id: str = "A") -> None:
        self._raw_sql = raw_sql.strip()
        self._ref_id = ref_id
        self._format: SqlFormat = "table"

    def time_series(self) -> Self:
        self._format = "time_series"
        return self

    def table(self) -> Self:
        self._format = "table"
        return self

    def build(self) -> SqlQuery:
        return SqlQuery(ref_id=self._ref_id, raw_sql=self._raw_sql, format=self._format)


def register_sql_variant() -> None:
    """Teach the SDK's unmarshaller our targets (the default plugins it registers know no PostgreSQL)."""
    cogruntime.register_dataquery_variant(
        cogruntime.DataqueryConfig(identifier=POSTGRES_TYPE, from_json_hook=SqlQuery.from_json)
    )
