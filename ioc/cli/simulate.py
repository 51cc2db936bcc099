"""`ioc simulate`: run a simulated device fleet against a broker, with fault injection and ground-truth labels."""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from firmware_sim.clock import Clock, ScaledClock, WallClock
from firmware_sim.faults import parse_fault_spec
from firmware_sim.firmware import SimDevice
from firmware_sim.fleet import FleetConfig, FleetResult, FleetStats, Replay, run_fleet
from firmware_sim.models import TYPE_CODES, model_for
from firmware_sim.replay import load_series
from firmware_sim.roster import (
    DEFAULT_INTERVAL_S,
    DEFAULT_PROVINCES,
    SimulateError,
    apply_credentials,
    build_devices,
    read_credentials,
    write_devices_csv,
)
from protocol.broker_url import parse_broker_url


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = subparsers.add_parser(
        "simulate",
        help="run a simulated device fleet against a broker",
        description="Simulated devices with plausible physics publish telemetry over MQTT, each on its own "
        "connection; faults are injected at random and labelled in a JSONL file.",
    )
    sim.add_argument("--broker", default=None, help="mqtt://host:port or mqtts://host:8883 (default: IOC_MQTT_URL)")
    sim.add_argument("--ca", type=Path, default=None, help="CA certificate the mqtts broker's certificate is signed by")
    sim.add_argument("--cert", type=Path, default=None, help="client certificate, for brokers that require one")
    sim.add_argument("--key", type=Path, default=None, help="the client certificate's private key")
    sim.add_argument("--devices", type=int, default=100, help="number of devices (default 100)")
    sim.add_argument("--types", default="", help="comma-separated device type codes (default: all 15)")
    sim.add_argument("--province", default="", help="comma-separated province codes (default: a spread)")
    sim.add_argument("--prefix", default="sim", help="device id prefix (default: sim)")
    timing = sim.add_mutually_exclusive_group()
    timing.add_argument("--interval", type=float, default=None, help="seconds between reports of a device (10)")
    timing.add_argument("--rate", type=float, default=None, help="messages per second of the whole fleet")
    timing.add_argument("--type-intervals", action="store_true", help="each type's catalogue report interval")
    sim.add_argument("--duration", type=float, default=60.0, help="seconds to run (default 60; 0 = until Ctrl-C)")
    sim.add_argument("--faults", default="", help='e.g. "spike:0.01,stuck:0.005,offline:0.001" or a JSON file')
    sim.add_argument("--labels", default=None, help="write fault labels here (JSONL)")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--start", default=None, help="simulated start time (ISO 8601) instead of now")
    sim.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)")
    sim.add_argument("--credentials", default=None, help="CSV device_id,password[,province,sector,type]")
    sim.add_argument("--replay", default=None, help="CSV to stream as one device's metric (e.g. a NAB series)")
    sim.add_argument("--replay-column", default="value", help="value column of the replayed CSV")
    sim.add_argument("--replay-time-column", default="timestamp", help="time column of the replayed CSV")
    sim.add_argument("--replay-type", default="traffic_counter", help="device type of the replaying device")
    sim.add_argument("--replay-metric", default=None, help="metric to replay as (default: the type's first)")
    sim.add_argument("--replay-device", default=None, help="device id of the replaying device")
    sim.add_argument("--replay-speed", type=float, default=60.0, help="recorded seconds per second (default 60)")
    sim.add_argument("--buffer-dir", default=None, help="folder of the store-and-forward buffer (default: temp)")
    sim.add_argument("--buffer-max", type=int, default=10_000, help="buffered messages per device at most")
    sim.add_argument("--connect-rate", type=float, default=500.0, help="new connections per second")
    sim.add_argument("--export-devices", default=None, help="write the fleet as CSV (for registration) and exit")
    sim.add_argument("--json", default=None, help="write the final stats here")
    sim.add_argument("--quiet", action="store_true", help="no live progress display")
    sim.set_defaults(func=simulate)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _clock(args: argparse.Namespace) -> Clock:
    if args.start is None and args.speed == 1.0:
        return WallClock()
    start = datetime.now(UTC).timestamp()
    if args.start is not None:
        try:
            parsed = datetime.fromisoformat(args.start.replace("Z", "+00:00"))
        except ValueError as exc:
            raise SimulateError(f"--start is not ISO 8601: {args.start!r}") from exc
        start = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return ScaledClock(start, speed=args.speed)


def build_config(args: argparse.Namespace) -> FleetConfig:
    url = args.broker or os.environ.get("IOC_MQTT_URL")
    if not url:
        raise SimulateError("no broker: pass --broker mqtt://host:port or set IOC_MQTT_URL (see `ioc services`)")
    broker = parse_broker_url(url)
    if (args.ca or args.cert) and not broker.tls:
        raise SimulateError("--ca/--cert are for TLS: give the broker as mqtts://host:port")
    if (args.cert is None) != (args.key is None):
        raise SimulateError("--cert and --key go together")
    types = _split(args.types) or list(TYPE_CODES)
    provinces = _split(args.province) or list(DEFAULT_PROVINCES)
    devices = build_devices(args.devices, types=types, provinces=provinces, prefix=args.prefix)
    if args.credentials:
        devices = apply_credentials(devices, read_credentials(Path(args.credentials)))
    replays: list[Replay] = []
    if args.replay:
        model = model_for(args.replay_type)
        metric = args.replay_metric or model.metrics[0].name
        if metric not in {m.name for m in model.metrics}:
            raise SimulateError(f"{args.replay_type} has no metric {metric!r}")
        points = load_series(Path(args.replay), value_column=args.replay_column, time_column=args.replay_time_column)
        device_id = args.replay_device or f"{args.prefix}-replay-{args.replay_type.replace('_', '-')}"
        device = SimDevice(device_id, args.replay_type, provinces[0], model.sector)
        replays.append(Replay(device=device, metric=metric, points=points, speed=args.replay_speed))
    interval_s: float | None = DEFAULT_INTERVAL_S
    if args.type_intervals:
        interval_s = None
    elif args.rate is not None:
        if args.rate <= 0 or not devices:
            raise SimulateError("--rate needs a positive rate and at least one device")
        interval_s = len(devices) / args.rate
    elif args.interval is not None:
        interval_s = args.interval
    return FleetConfig(
        broker=broker,
        ca_file=args.ca,
        client_cert=args.cert,
        client_key=args.key,
        devices=devices,
        seed=args.seed,
        interval_s=interval_s,
        faults=parse_fault_spec(args.faults),
        replays=replays,
        buffer_dir=Path(args.buffer_dir) if args.buffer_dir else None,
        buffer_max_messages=args.buffer_max,
        connect_rate_per_s=args.connect_rate,
    )


def render_stats(stats: FleetStats) -> object:
    """A rich table of the fleet's state."""
    from rich.table import Table

    rate = stats.published / stats.elapsed_s if stats.elapsed_s else 0.0
    table = Table(title="ioc simulate", show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold cyan")
    table.add_column(justify="right")
    faults = ", ".join(f"{k} {v}" for k, v in sorted(stats.faults.items())) or "none"
    for name, value in (
        ("elapsed", f"{stats.elapsed_s:,.0f} s"),
        ("connected", f"{stats.connected:,} / {stats.devices:,}"),
        ("published", f"{stats.published:,}  ({rate:,.0f}/s)"),
        ("acknowledged", f"{stats.acked:,}  (waiting {stats.unacked:,})"),
        ("buffered", f"{stats.buffered:,} now, {stats.buffered_total:,} in all, {stats.backfilled:,} backfilled"),
        ("dropped", f"{stats.dropped:,}"),
        ("faults injected", faults),
        ("reconnects", f"{stats.disconnects:,} lost, {stats.connect_failures:,} failed attempts"),
        ("simulator", f"CPU {stats.cpu_pct:,.0f} %, RSS {stats.rss_mb:,.0f} MB"),
    ):
        table.add_row(name, value)
    return table


@contextmanager
def _stop_on_interrupt(stop: threading.Event) -> Iterator[None]:
    """First Ctrl-C stops the fleet gracefully (flushing buffers); a second one aborts."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def simulate(args: argparse.Namespace) -> int:
    config = build_config(args)
    if args.export_devices:
        write_devices_csv(Path(args.export_devices), [*config.devices, *(r.device for r in config.replays)])
        print(f"wrote {len(config.devices) + len(config.replays)} devices to {args.export_devices}")
        return 0
    stop = threading.Event()
    duration = args.duration if args.duration > 0 else float("inf")
    labels = Path(args.labels) if args.labels else None
    with _stop_on_interrupt(stop):
        if args.quiet:
            result = run_fleet(config, duration_s=duration, clock=_clock(args), labels_path=labels, stop=stop)
        else:
            from rich.live import Live

            with Live(refresh_per_second=4, transient=False) as live:
                result = run_fleet(
                    config,
                    duration_s=duration,
                    clock=_clock(args),
                    labels_path=labels,
                    stop=stop,
                    on_progress=lambda stats: live.update(render_stats(stats)),  # type: ignore[arg-type]
                )
                live.update(render_stats(result.stats))  # type: ignore[arg-type]
    report = summary(result, config=config, duration_s=args.duration)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.quiet:
        print(json.dumps(report, indent=2))
    return 0


def summary(result: FleetResult, *, config: FleetConfig, duration_s: float) -> dict[str, object]:
    """The final stats as JSON-ready values, with the run's settings."""
    stats = result.stats
    doc = stats.snapshot()
    doc.update(
        {
            "interval_s": config.interval_s,
            "seed": config.seed,
            "duration_s": duration_s,
            "messages_per_s": round(stats.published / stats.elapsed_s, 1) if stats.elapsed_s else 0.0,
        }
    )
    return doc
