"""The work behind `ioc simulate`: build the fleet from the arguments, run it with a live display, report."""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Final

from core.errors import IocError
from firmware_sim.clock import Clock, ScaledClock, WallClock
from firmware_sim.faults import parse_fault_spec
from firmware_sim.firmware import SimDevice
from firmware_sim.fleet import FleetConfig, FleetResult, FleetStats, Replay, run_fleet
from firmware_sim.models import MODELS, TYPE_CODES, model_for
from firmware_sim.replay import load_series
from protocol.broker_url import parse_broker_url

DEFAULT_PROVINCES: Final = (
    "can-tho",
    "ho-chi-minh",
    "ha-noi",
    "an-giang",
    "dong-thap",
    "ca-mau",
    "vinh-long",
    "da-nang",
    "hai-phong",
    "khanh-hoa",
)
DEFAULT_INTERVAL_S: Final = 10.0


class SimulateError(IocError):
    """Arguments of `ioc simulate` that cannot be used."""


def build_devices(
    count: int,
    *,
    types: Sequence[str] = TYPE_CODES,
    provinces: Sequence[str] = DEFAULT_PROVINCES,
    prefix: str = "sim",
) -> list[SimDevice]:
    """`count` devices cycling through `types` and spread over `provinces`; ids like `sim-soil-probe-00042`."""
    if not types or not provinces:
        raise SimulateError("need at least one device type and one province")
    for code in types:
        if code not in MODELS:
            raise SimulateError(f"unknown device type {code!r}; known: {', '.join(TYPE_CODES)}")
    devices = []
    for i in range(count):
        code = types[i % len(types)]
        province = provinces[(i // len(types)) % len(provinces)]
        devices.append(
            SimDevice(
                device_id=f"{prefix}-{code.replace('_', '-')}-{i:05d}",
                type_code=code,
                province=province,
                sector=model_for(code).sector,
            )
        )
    return devices


def read_credentials(path: Path) -> list[tuple[str, str, str | None, str | None, str | None]]:
    """Rows of device_id,password[,province,sector,type]; a header row starting with device_id is skipped."""
    rows = []
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.reader(fh):
            if not row or row[0].strip().lower() in ("device_id", "") or row[0].startswith("#"):
                continue
            if len(row) < 2:
                raise SimulateError(f"{path}: each row needs device_id,password")
            extra = [c.strip() or None for c in row[2:5]] + [None] * (3 - len(row[2:5]))
            rows.append((row[0].strip(), row[1].strip(), extra[0], extra[1], extra[2]))
    return rows


def apply_credentials(
    devices: list[SimDevice], rows: Sequence[tuple[str, str, str | None, str | None, str | None]]
) -> list[SimDevice]:
    """Passwords onto generated devices by id; rows with province, sector and type define devices themselves."""
    full = [r for r in rows if r[2] and r[3] and r[4]]
    if full:
        out = []
        for device_id, password, province, sector, type_code in full:
            assert province is not None and sector is not None and type_code is not None
            if type_code not in MODELS:
                raise SimulateError(f"credentials: unknown device type {type_code!r} for {device_id}")
            out.append(SimDevice(device_id, type_code, province, sector, password))
        return out
    passwords = {r[0]: r[1] for r in rows}
    return [
        SimDevice(d.device_id, d.type_code, d.province, d.sector, passwords.get(d.device_id, d.password))
        for d in devices
    ]


def write_devices_csv(path: Path, devices: Sequence[SimDevice]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["device_id", "password", "province", "sector", "type"])
        for d in devices:
            writer.writerow([d.device_id, d.password or "", d.province, d.sector, d.type_code])


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
