"""Recorded series for replay: a CSV with a time column and a value column (NAB's `timestamp,value` layout)."""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime
from pathlib import Path

from core.errors import IocError


class ReplayError(IocError):
    """A CSV that cannot be replayed."""


def _epoch_s(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ReplayError(f"not a time: {text!r}") from exc
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()


def load_series(
    path: Path, *, value_column: str = "value", time_column: str = "timestamp"
) -> list[tuple[float, float]]:
    """(epoch seconds, value) pairs in file order; rows with an empty or non-finite value are skipped."""
    try:
        fh = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc}") from exc
    points: list[tuple[float, float]] = []
    with fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        for column in (value_column, time_column):
            if column not in columns:
                raise ReplayError(f"{path} has no column {column!r} (columns: {', '.join(columns)})")
        for row in reader:
            raw = (row.get(value_column) or "").strip()
            if not raw:
                continue
            try:
                value = float(raw)
            except ValueError as exc:
                raise ReplayError(f"{path}: {value_column} is not a number: {raw!r}") from exc
            if math.isfinite(value):
                points.append((_epoch_s(row[time_column]), value))
    if not points:
        raise ReplayError(f"{path} has no values in {value_column!r}")
    return points
