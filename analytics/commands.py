"""The analytics subcommands of the `ioc` CLI: `detect` (CSV in, scores out) and `eval nab`.

Start-up matters for `detect`: it needs only the standard library, so numpy, rich and scikit-learn are
imported inside the commands that use them.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from analytics.nab import NabResult

_LOGGER = logging.getLogger(__name__)

_EPOCH_MS_MIN = 1e11  # numeric timestamps above this are milliseconds (1e11 s is the year 5138)


class InputError(ValueError):
    """The input file cannot be used as asked."""


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `detect` and `eval` on the `ioc` command line."""
    detect = subparsers.add_parser(
        "detect",
        help="run the production streaming detector over a CSV",
        description="Score every row of a CSV causally; one detector per numeric column, row score = max over columns.",
    )
    detect.add_argument("input", type=Path, metavar="INPUT.csv")
    detect.add_argument("--time-column", required=True, help="name of the timestamp column")
    detect.add_argument("--out", required=True, type=Path, help="output CSV: timestamp,anomaly_score,is_anomaly")
    detect.add_argument("--sep", default=",", help="field separator of the input (default ,)")
    detect.set_defaults(func=run_detect)

    evaluate = subparsers.add_parser("eval", help="evaluate detectors on benchmarks")
    benchmarks = evaluate.add_subparsers(dest="benchmark", required=True)
    nab = benchmarks.add_parser(
        "nab",
        help="NAB scores of the production detector (or of precomputed scores)",
        description="Score on the Numenta Anomaly Benchmark with its three profiles.",
    )
    nab.add_argument("--data", required=True, type=Path, help="NAB folder (data/, labels/, config/)")
    nab.add_argument("--json", required=True, type=Path, help="where to write the JSON result")
    nab.add_argument(
        "--scores",
        type=Path,
        help="precomputed scores laid out as NAB's results/<detector>/ instead of running the detector",
    )
    nab.set_defaults(func=run_eval_nab)


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


def detect_csv(*, source: Path, target: Path, time_column: str, sep: str = ",") -> int:
    """Score `source` into `target`; returns the number of rows written."""
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
    threshold = detectors[0].threshold if detectors else 1.0
    with target.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["timestamp", "anomaly_score", "is_anomaly"])
        for row in rows:
            stamp = row[time_at] if time_at < len(row) else ""
            t = _parse_time(stamp)
            score = 0.0
            for detector, column in zip(detectors, numeric, strict=True):
                value = _parse_value(row[column]) if column < len(row) else math.nan
                score = max(score, detector.update(t, value))
            writer.writerow([stamp, repr(score), int(score >= threshold)])
    return len(rows)


def run_detect(args: argparse.Namespace) -> int:
    """`ioc detect INPUT.csv --time-column COL --out OUT.csv [--sep ,]`."""
    try:
        written = detect_csv(source=args.input, target=args.out, time_column=args.time_column, sep=args.sep)
    except (OSError, InputError) as exc:
        print(f"detect: {exc}", file=sys.stderr)
        return 2
    print(f"scored {written} rows into {args.out}")
    return 0


def nab_result_json(result: NabResult, *, detector: str, seconds: float, detect_seconds: float | None) -> Any:
    """The JSON document of `ioc eval nab`."""
    document: dict[str, Any] = {"detector": detector}
    for name, profile in result.profiles.items():
        document[name] = profile.normalized_score
    document["thresholds"] = {name: p.threshold for name, p in result.profiles.items()}
    document["profiles"] = {
        name: {
            "score": p.normalized_score,
            "raw_score": p.raw_score,
            "null_score": p.null_score,
            "perfect_score": p.perfect_score,
            "threshold": p.threshold,
            "detected_windows": p.detected_windows,
            "windows": p.windows,
            "false_positives": p.false_positives,
        }
        for name, p in result.profiles.items()
    }
    document["categories"] = {
        name: {
            c.category: {
                "score": c.normalized_score,
                "raw_score": c.raw_score,
                "files": c.files,
                "windows": c.windows,
                "detected_windows": c.detected_windows,
                "false_positives": c.false_positives,
            }
            for c in p.categories
        }
        for name, p in result.profiles.items()
    }
    document["points"] = result.points
    document["seconds"] = seconds
    if detect_seconds is not None:
        document["detect_seconds"] = detect_seconds
        document["points_per_second"] = result.points / detect_seconds if detect_seconds > 0 else None
    return document


_SHORT_PROFILE = {"standard": "std", "reward_low_FP_rate": "lowFP", "reward_low_FN_rate": "lowFN"}


def _print_table(result: NabResult, *, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption="det = detected windows, FP = false positives, at the standard threshold")
    table.add_column("category", no_wrap=True)
    table.add_column("files", justify="right")
    table.add_column("win", justify="right")
    names = list(result.profiles)
    for name in names:
        table.add_column(_SHORT_PROFILE.get(name, name), justify="right")
    table.add_column("det", justify="right")
    table.add_column("FP", justify="right")
    by_profile = {name: {c.category: c for c in result.profiles[name].categories} for name in names}
    first = names[0]
    for category, cat in by_profile[first].items():
        cells = [
            "-"
            if by_profile[n][category].normalized_score is None
            else f"{by_profile[n][category].normalized_score:.1f}"
            for n in names
        ]
        table.add_row(
            category, str(cat.files), str(cat.windows), *cells, str(cat.detected_windows), str(cat.false_positives)
        )
    totals = [f"{result.profiles[n].normalized_score:.1f}" for n in names]
    std = result.profiles[first]
    files = sum(c.files for c in std.categories)
    table.add_row(
        "[b]all[/b]", str(files), str(std.windows), *totals, str(std.detected_windows), str(std.false_positives)
    )
    Console().print(table)


def run_eval_nab(args: argparse.Namespace) -> int:
    """`ioc eval nab --data DIR --json FILE [--scores RESULTS_DIR]`."""
    from analytics.nab import score_detector
    from analytics.nab_io import NabDataError, load_corpus, load_result_scores

    started = time.perf_counter()
    try:
        corpus = load_corpus(args.data)
        if args.scores is not None:
            scores = load_result_scores(args.scores, corpus)
            detector, detect_seconds = args.scores.name, None
        else:
            from analytics.nab_eval import detect_corpus

            run = detect_corpus(corpus)
            scores, detector, detect_seconds = run.scores_by_file, "ioc", run.detect_seconds
        result = score_detector(corpus, scores)
    except NabDataError as exc:
        print(f"eval nab: {exc}", file=sys.stderr)
        return 2
    seconds = time.perf_counter() - started
    document = nab_result_json(result, detector=detector, seconds=seconds, detect_seconds=detect_seconds)
    try:
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"eval nab: cannot write {args.json}: {exc}", file=sys.stderr)
        return 2
    _print_table(result, title=f"NAB scores of {detector} ({result.points} points, {seconds:.1f} s)")
    _LOGGER.info("NAB result written to %s", args.json)
    return 0
