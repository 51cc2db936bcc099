"""Reading the NAB corpus and published detector results from disk into `analytics.nab` types."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from analytics.nab import Corpus, CostMatrix, FloatArray, NabFile


class NabDataError(ValueError):
    """The NAB folder is missing a file or holds data that does not fit together."""


def _to_epoch_s(stamps: list[str]) -> FloatArray:
    try:
        micros = np.array(stamps, dtype="datetime64[us]").astype(np.int64)
    except ValueError as exc:
        raise NabDataError(f"unparseable timestamp: {exc}") from exc
    return micros.astype(np.float64) / 1e6


def _read_columns(path: Path, columns: tuple[str, ...]) -> dict[str, list[str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise NabDataError(f"{path}: empty file")
        try:
            positions = [header.index(name) for name in columns]
        except ValueError as exc:
            raise NabDataError(f"{path}: expected columns {columns}, found {header}") from exc
        out: dict[str, list[str]] = {name: [] for name in columns}
        for row in reader:
            if not row:
                continue
            for name, position in zip(columns, positions, strict=True):
                out[name].append(row[position])
    return out


def _window_rows(name: str, times_s: FloatArray, limits: list[list[str]]) -> tuple[tuple[int, int], ...]:
    rows = []
    for start, end in limits:
        t_start, t_end = _to_epoch_s([start, end])
        left = int(np.searchsorted(times_s, t_start, side="left"))
        right = int(np.searchsorted(times_s, t_end, side="right")) - 1
        if left > right:
            raise NabDataError(f"{name}: window {start}..{end} holds no rows")
        rows.append((left, right))
    return tuple(sorted(rows))


def load_corpus(data_dir: Path) -> Corpus:
    """Load `data/`, `labels/combined_windows.json` and `config/profiles.json` from a NAB checkout."""
    try:
        windows = json.loads((data_dir / "labels" / "combined_windows.json").read_text(encoding="utf-8"))
        profiles = json.loads((data_dir / "config" / "profiles.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise NabDataError(f"not a NAB folder: {data_dir}: {exc}") from exc
    files = []
    for name in sorted(windows):
        path = data_dir / "data" / name
        try:
            columns = _read_columns(path, ("timestamp", "value"))
        except OSError as exc:
            raise NabDataError(f"cannot read {path}: {exc}") from exc
        times_s = _to_epoch_s(columns["timestamp"])
        values = np.array(columns["value"], dtype=np.float64)
        files.append(NabFile(name, times_s, values, _window_rows(name, times_s, windows[name])))
    costs = {
        name: CostMatrix(
            tp_weight=float(p["CostMatrix"]["tpWeight"]),
            fp_weight=float(p["CostMatrix"]["fpWeight"]),
            fn_weight=float(p["CostMatrix"]["fnWeight"]),
        )
        for name, p in profiles.items()
    }
    return Corpus(files=tuple(files), profiles=costs)


def load_result_scores(results_dir: Path, corpus: Corpus) -> dict[str, FloatArray]:
    """Per-point `anomaly_score`s laid out as NAB's `results/<detector>/<category>/<detector>_<file>`."""
    detector = results_dir.name
    scores: dict[str, FloatArray] = {}
    for nab_file in corpus.files:
        category, file_name = nab_file.name.split("/", 1)
        path = results_dir / category / f"{detector}_{file_name}"
        try:
            column = _read_columns(path, ("anomaly_score",))["anomaly_score"]
        except OSError as exc:
            raise NabDataError(f"cannot read {path}: {exc}") from exc
        scores[nab_file.name] = np.array(column, dtype=np.float64)
    return scores
