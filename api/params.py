"""Integer query and path parameters shared by the routes, bounded so that a value the database cannot hold (a
bigint is below 2^63) is a 422 at the edge, never a 500 from the query."""

from __future__ import annotations

from typing import Annotated, Final

from fastapi import Path, Query

ROW_OFFSET_MAX: Final = 2**31 - 1
BIGINT_MAX: Final = 2**63 - 1

Offset = Annotated[int, Query(ge=0, le=ROW_OFFSET_MAX, description="rows to skip (paging)")]
AlarmId = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="the alarm's id")]
