"""The production streaming detectors over a CSV file: one time column, numeric columns; scores written causally,
one row per input row (`ioc detect`).

`anomaly_score` is the largest score of the row (how surprising it is); `is_anomaly` is the state: 1 while any
column's detector, or (mode `joint`, with two numeric columns or more) the joint detector of all columns, holds
the row anomalous. numpy is imported only when scoring starts, so the command starts fast."""

from __future__ import annotations

import csv
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

DetectMode = Literal["joint", "per-column"]

_EPOCH_MS_MIN = 1e11  # numeric timestamps above this are milliseconds (1e11 s is the year 5138)


class InputError(ValueError):
    """The input file cannot be used as asked."""


def _parse_time(text: str) -> float:
    """Epoch seconds of an ISO-8601 timestamp or of epoch seconds / milliseconds."""
    stripped = text.strip()
    try:
        number = float(stripped)
    except ValueError:
        pass
    else:
        return number / 1000.0 if abs(number) >= _EPOCH_MS_MIN else number
    try:
        moment = datetime.fromisoformat(stripped)
    except ValueError as exc:
        raise InputError(f"unparseable timestamp {text!r}") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _parse_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return math.nan
    return value if math.isfinite(value) else math.nan


def detect_csv(*, source: Path, target: Path, time_column: str, sep: str = ",", mode: DetectMode = "joint") -> int:
    """Score `source` into `target`; returns the number of rows written."""
    from analytics.detectors.joint import JointDetector
    from analytics.detectors.univariate import UnivariateDetector

    with source.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=sep)
        header = next(reader, None)
        if header is None:
            raise InputError(f"{source}: empty file")
        if time_column not in header:
            raise InputError(f"{source}: no column {time_column!r} (columns: {', '.join(header)})")
        time_at = header.index(time_column)
        rows = [row for row in reader if row]
    value_columns = [i for i in range(len(header)) if i != time_at]
    # Columns with no numeric cell at all (labels, ids) are not metrics.
    numeric = [i for i in value_columns if any(i < len(r) and not math.isnan(_parse_value(r[i])) for r in rows)]
    detectors = [UnivariateDetector() for _ in numeric]
    joint = JointDetector([header[i] for i in numeric]) if mode == "joint" and len(numeric) >= 2 else None
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "anomaly_score", "is_anomaly"])
        for row in rows:
            stamp = row[time_at] if time_at < len(row) else ""
            t = _parse_time(stamp)
            score = 0.0
            anomalous = False
            values = []
            for detector, column in zip(detectors, numeric, strict=True):
                value = _parse_value(row[column]) if column < len(row) else math.nan
                values.append(value)
                score = max(score, detector.update(t, value))
                anomalous = anomalous or (not math.isnan(value) and detector.anomalous)
            if joint is not None:
                anomalous = joint.update(values, t) or anomalous
                score = max(score, joint.score)
            writer.writerow([stamp, repr(score), int(anomalous)])
    return len(rows)
