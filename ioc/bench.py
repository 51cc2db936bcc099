"""`ioc bench ingest`: the end-to-end ingest benchmark (publish → broker → ingest workers → committed rows).

It provisions K devices in a fresh database, runs N ingest worker processes and P publisher processes that
publish QoS 1 messages of 5 readings as fast as they can (or at a set rate) for S seconds, waits until every
acknowledged message is committed, and writes one JSON result.
"""

from __future__ import annotations

import argparse


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
