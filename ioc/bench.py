"""`ioc bench ingest`: the end-to-end ingest benchmark (publish → broker → ingest workers → committed rows).

It provisions K devices in a fresh database, runs N ingest worker processes and P publisher processes that
publish QoS 1 messages of 5 readings as fast as they can (or at a set rate) for S seconds, waits until every
acknowledged message is committed, and writes one JSON result.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser("bench", help="benchmarks with JSON results")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    ingest = bench_sub.add_parser("ingest", help="end-to-end ingest benchmark")
    ingest.add_argument("--seconds", type=float, default=60.0, help="how long to publish")
    ingest.add_argument("--json", dest="json_path", default=None, help="write the result here")
    ingest.add_argument("--workers", type=int, default=2, help="ingest worker processes")
    ingest.add_argument("--publishers", type=int, default=2, help="load-generator processes")
    ingest.add_argument("--devices", type=int, default=1000, help="devices to provision and publish as")
    ingest.add_argument("--rate", type=float, default=0.0, help="messages/s in total; 0 = as fast as possible")
    ingest.add_argument("--drain-timeout", type=float, default=120.0, help="give up waiting for commits after this")
    ingest.set_defaults(func=_run_ingest_bench)

    detection = bench_sub.add_parser(
        "detection",
        help="a simulated fleet with injected faults through a private center, scored per fault kind",
        description="Starts embedded PostgreSQL and Mosquitto in a fresh runtime folder, ingest, the analytics job "
        "and a simulated fleet on a sped-up clock; then scores the alarms against the fleet's fault labels: "
        "precision, recall and median detection delay per fault kind, and alarm latency (arrival → alarm).",
    )
    detection.add_argument("--devices", type=int, default=60)
    detection.add_argument("--hours", type=float, default=4.0, help="simulated hours")
    detection.add_argument("--speed", type=float, default=240.0, help="simulated seconds per real second")
    detection.add_argument("--interval", type=float, default=10.0, help="report interval of every device, seconds")
    detection.add_argument("--faults", default=None, help="fault spec as for `ioc simulate --faults` (default: a mix)")
    detection.add_argument("--seed", type=int, default=1)
    detection.add_argument("--json", type=Path, default=None, help="write the report here")
    detection.add_argument("--labels-out", type=Path, default=None, help="keep the fault labels (JSONL) here")
    detection.add_argument("--tolerance-s", type=float, default=None, help="detections this late still count")
    detection.add_argument(
        "--runtime-dir", type=Path, default=None, help="default: a fresh folder under the runtime dir"
    )
    detection.add_argument("--keep", action="store_true", help="keep the runtime folder (database, broker log, labels)")
    policy = detection.add_argument_group("detector alarm policy (default: the IOC_DETECTOR_ALARM_* settings)")
    policy.add_argument("--every-anomaly", action="store_true", help="every detector anomaly raises (no policy)")
    policy.add_argument("--learn-points", type=int, default=None)
    policy.add_argument("--high-score", type=float, default=None)
    policy.add_argument("--persist", default=None, metavar="K/M", help="K anomalous points within the last M")
    policy.add_argument("--device-gap-s", type=float, default=None)
    detection.add_argument(
        "--job-clock",
        choices=("simulation", "wall"),
        default="simulation",
        help="wall: the job ignores the simulation's clock (to compare with the behaviour before)",
    )
    detection.set_defaults(func=_run_detection_bench)


def _run_detection_bench(args: argparse.Namespace) -> int:
    from ioc.detection_bench import cmd_detection_bench

    return cmd_detection_bench(args)


def _run_ingest_bench(args: argparse.Namespace) -> int:
    from ioc.bench_ingest import IngestBenchConfig, run_ingest_bench

    config = IngestBenchConfig(
        seconds=args.seconds,
        workers=args.workers,
        publishers=args.publishers,
        devices=args.devices,
        rate=args.rate,
        drain_timeout_s=args.drain_timeout,
    )
    result = run_ingest_bench(config, json_path=args.json_path)
    return 0 if result["lost"] == 0 and result["duplicates"] == 0 else 1
