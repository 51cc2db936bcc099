"""What part of the country a caller may see: a set of provinces and a set of sectors (None = all), applied inside
every query as a SQL condition, never by filtering results afterwards."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from psycopg import sql


@dataclass(frozen=True, slots=True)
class Scope:
    """Provinces and sectors a principal may see; None means every one."""

    provinces: frozenset[str] | None = None
    sectors: frozenset[str] | None = None

    @classmethod
    def of(cls, *, provinces: Iterable[str] | None = None, sectors: Iterable[str] | None = None) -> Scope:
        return cls(
            provinces=None if provinces is None else frozenset(provinces),
            sectors=None if sectors is None else frozenset(sectors),
        )

    @property
    def is_everything(self) -> bool:
        return self.provinces is None and self.sectors is None

    def allows(self, *, province: str, sector: str) -> bool:
        """True when a thing in `province` and `sector` is inside this scope."""
        return (self.provinces is None or province in self.provinces) and (
            self.sectors is None or sector in self.sectors
        )

    def allows_sector(self, sector: str) -> bool:
        return self.sectors is None or sector in self.sectors

    def where(
        self, *, province: str = "province", sector: str = "sector", table: str | None = None
    ) -> tuple[sql.Composed, list[list[str]]]:
        """A condition over the named columns and its parameters, to splice into a query where its `%s` stand:

            clause, params = scope.where(table="d")
            conn.execute(sql.SQL("SELECT … FROM devices d WHERE d.status = %s AND {}").format(clause), [s, *params])

        TRUE (and no parameters) for everything."""
        parts: list[sql.Composable] = []
        params: list[list[str]] = []
        for column, allowed in ((province, self.provinces), (sector, self.sectors)):
            if allowed is None:
                continue
            name = sql.Identifier(table, column) if table else sql.Identifier(column)
            parts.append(sql.SQL("{} = ANY(%s::text[])").format(name))
            params.append(sorted(allowed))
        if not parts:
            return sql.Composed([sql.SQL("TRUE")]), []
        return sql.Composed([sql.SQL("("), sql.SQL(" AND ").join(parts), sql.SQL(")")]), params

    def as_arrays(self) -> tuple[list[str] | None, list[str] | None]:
        """(provinces, sectors) as sorted lists or None, for `%s::text[] IS NULL OR col = ANY(%s)` parameters."""
        return (
            None if self.provinces is None else sorted(self.provinces),
            None if self.sectors is None else sorted(self.sectors),
        )


EVERYTHING = Scope()
