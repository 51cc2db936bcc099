"""`ioc detect`, `ioc eval nab` and `ioc analytics run|evaluate`: the detector on files, and the live job."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from core.settings import Settings

if TYPE_CHECKING:
    from analytics.nab import NabResult

_LOGGER = logging.getLogger(__name__)


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `detect` and `eval` on the `ioc` command line."""
    detect = subparsers.add_parser(
        "detect",
        help="run the production streaming detector over a CSV",
        description="Score every row of a CSV causally: a detector per numeric column and, with several numeric "
        "columns, a joint detector of all of them (--mode joint, the default). anomaly_score is the row's largest "
        "score; is_anomaly is 1 while any detector holds the row anomalous.",
    )
    detect.add_argument("input", type=Path, metavar="INPUT.csv", help="the CSV to score")
    detect.add_argument("--time-column", required=True, help="name of the timestamp column")
    detect.add_argument("--out", required=True, type=Path, help="output CSV: timestamp,anomaly_score,is_anomaly")
    detect.add_argument("--sep", default=",", help="field separator of the input (default ,)")
    detect.add_argument(
        "--mode",
        choices=("joint", "per-column"),
        default="joint",
        help="joint: per-column detectors and one joint detector of all numeric columns; per-column: only the former",
    )
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

    group = subparsers.add_parser("analytics", help="the streaming anomaly and alarm job")
    group_sub = group.add_subparsers(dest="analytics_command", required=True)
    run = group_sub.add_parser("run", help="run the streaming job: readings → anomalies → alarms → notifications")
    run.add_argument("--name", default="analytics", help="job name (its watermark and saved state)")
    run.set_defaults(func=cmd_run)
    evaluate = group_sub.add_parser(
        "evaluate", help="precision, recall and detection delay per fault kind against a labels JSONL file"
    )
    evaluate.add_argument("--labels", type=Path, required=True, help="JSONL: device, metric, kind, start, end")
    evaluate.add_argument("--json", type=Path, default=None, help="write the report here")
    evaluate.add_argument("--tolerance-s", type=float, default=None, help="detections this late still count")
    evaluate.set_defaults(func=cmd_evaluate)


def run_detect(args: argparse.Namespace) -> int:
    """`ioc detect INPUT.csv --time-column COL --out OUT.csv [--sep ,]`."""
    from analytics.csv_detect import InputError, detect_csv

    try:
        written = detect_csv(
            source=args.input, target=args.out, time_column=args.time_column, sep=args.sep, mode=args.mode
        )
    except (OSError, InputError) as exc:
        print(f"detect: {exc}", file=sys.stderr)
        return 2
    print(f"scored {written} rows into {args.out}")
    return 0


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
    from analytics.nab_eval import detect_corpus, nab_result_json
    from analytics.nab_io import NabDataError, load_corpus, load_result_scores

    started = time.perf_counter()
    try:
        corpus = load_corpus(args.data)
        if args.scores is not None:
            scores = load_result_scores(args.scores, corpus)
            detector, detect_seconds = args.scores.name, None
        else:
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


def cmd_run(args: argparse.Namespace) -> int:
    """`ioc analytics run`: the streaming job in the foreground until Ctrl-C."""
    from analytics.runner import run_job
    from devices.schema import migrate_database
    from embedded.services import center_services

    settings = Settings()
    with center_services(settings) as urls:
        migrate_database(urls.database_url)
        print(f"analytics job {args.name} running against {urls.mqtt_url} (Ctrl-C stops it)", flush=True)
        stop = threading.Event()
        try:
            run_job(settings, stop, database_url=urls.database_url, mqtt_url=urls.mqtt_url, name=args.name)
        except KeyboardInterrupt:
            stop.set()
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """`ioc analytics evaluate --labels FILE`: the stored alarms scored against fault labels."""
    from analytics.e2e import DEFAULT_TOLERANCE_S, evaluate_labels, format_report
    from embedded.services import center_services
    from store.pool import connect

    with center_services(Settings()) as urls, connect(urls.database_url) as conn:
        report = evaluate_labels(
            conn, args.labels, tolerance_s=args.tolerance_s if args.tolerance_s is not None else DEFAULT_TOLERANCE_S
        )
    print(format_report(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"report written to {args.json}")
    return 0
