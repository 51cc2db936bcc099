"""api.json_rows writes what the routes' pydantic models would: the same bytes, so answering from rows changed
nothing a client sees."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

from pydantic import TypeAdapter

from api.json_rows import json_rows
from api.routers.kpis import LatestPublic
from api.routers.readings import BucketPublic
from store.kpi import LATEST_FIELDS
from store.readings import BUCKET_FIELDS

HANOI = timezone(timedelta(hours=7))

BUCKETS = [
    (datetime(2026, 11, 28, 0, 0, tzinfo=UTC), "active_power", 1, 5.0, 5.0, 5.0),
    (datetime(2026, 11, 28, 0, 1, tzinfo=UTC), "active_power", 3, 1.9061550435800505, -0.0, 1e20),
    (datetime(2026, 11, 28, 0, 2, tzinfo=UTC), "voltage", 60, 1e-7, 2.5e-300, 1.7976931348623157e308),
    (datetime(2026, 11, 28, 7, 3, tzinfo=HANOI), 'tên đo "lạ" \\ \u2028', 2, 230.1, 229.9, 230.3),
]
LATEST = [
    ("meter-1", "can-tho", "energy", "smart_meter", "active_power", datetime(2026, 1, 1, tzinfo=UTC), 1.0, 0),
    ("meter-1", "can-tho", "energy", "smart_meter", "voltage", datetime(2026, 1, 1, 0, 0, 0, 400000, UTC), 231.5, 1),
    ("gauge-ä", "huế", "water", "water_level_gauge", "level", datetime(2026, 1, 1, 0, 0, 1, 1, HANOI), 0.1, 2),
]


def _pydantic_bytes(model: type, fields: tuple[str, ...], rows: Sequence[tuple[object, ...]]) -> bytes:
    adapter = TypeAdapter(list[model])  # type: ignore[valid-type]
    return adapter.dump_json(adapter.validate_python([dict(zip(fields, r, strict=True)) for r in rows]))


def test_buckets_are_written_as_their_model_writes_them() -> None:
    response = json_rows(BUCKET_FIELDS, BUCKETS)
    assert response.body == _pydantic_bytes(BucketPublic, BUCKET_FIELDS, BUCKETS)
    assert response.media_type == "application/json"
    assert json.loads(response.body)[1] == {
        "start": "2026-11-28T00:01:00Z",
        "metric": "active_power",
        "count": 3,
        "mean": 1.9061550435800505,
        "minimum": -0.0,
        "maximum": 1e20,
    }


def test_latest_values_are_written_as_their_model_writes_them() -> None:
    response = json_rows(LATEST_FIELDS, LATEST, headers={"X-Test": "1"})
    assert response.body == _pydantic_bytes(LatestPublic, LATEST_FIELDS, LATEST)
    assert response.headers["X-Test"] == "1"
    assert [v["ts"] for v in json.loads(response.body)] == [
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.400000Z",
        "2026-01-01T00:00:01.000001+07:00",
    ]


def test_no_rows_is_an_empty_array() -> None:
    assert json_rows(BUCKET_FIELDS, []).body == b"[]"
