"""`ioc simulate`: run a simulated device fleet against a broker, with fault injection and ground-truth labels.

The broker is the one given, IOC_MQTT_URL's, or the local center's (the runtime folder `ioc up`/`ioc demo` write).
The fleet's roster is written in the registry's own CSV format (`devices.roster_csv`), and `--register` registers
the fleet through the registry's database as `ioc devices` does. A run that cannot do its job (credentials
refused, broker unreachable, telemetry undelivered) ends with one message and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Final

from core.settings import Settings
from firmware_sim.clock import Clock, ScaledClock, WallClock
from firmware_sim.faults import parse_fault_spec
from firmware_sim.firmware import SimDevice
from firmware_sim.fleet import FleetConfig, FleetFailure, FleetResult, FleetStats, Replay, run_fleet
from firmware_sim.models import TYPE_CODES, model_for
from firmware_sim.replay import load_series
from firmware_sim.roster import (
    DEFAULT_INTERVAL_S,
    DEFAULT_PROVINCES,
    SimulateError,
    apply_credentials,
    build_devices,
    read_credentials,
)
from protocol.broker_url import BrokerAddress, parse_broker_url

# After `--register`, how long refusals are taken for a broker that has not synced the registry yet (a running
# center's device monitor pushes a change to the broker within about a second).
REGISTER_GRACE_S: Final = 10.0
ACTOR: Final = "ioc simulate"


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = subparsers.add_parser(
        "simulate",
        help="run a simulated device fleet against a broker",
        description="Simulated devices with plausible physics publish telemetry over MQTT, each on its own "
        "connection; faults are injected at random and labelled in a JSONL file. Devices need credentials the "
        "broker accepts: `--register` registers the fleet (or gives registered devices fresh secrets) in the "
        "center's registry, through its database as `ioc devices` does (the local center's, or IOC_DATABASE_URL: "
        "whoever may run `ioc devices` may do this); or register once with `ioc simulate --export-devices F`, "
        "`ioc devices import F --secrets-out S` and run with `--credentials S`. Exit status 2 with one message "
        "when the broker refuses the devices, cannot be reached, or telemetry is left undelivered.",
    )
    sim.add_argument(
        "--broker",
        default=None,
        help="mqtt://host:port or mqtts://host:8883 (default: IOC_MQTT_URL, else the local center's broker)",
    )
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
    sim.add_argument(
        "--duration",
        type=float,
        default=60.0,
        help="seconds of simulated time to run (real seconds at --speed 1; default 60; 0 = until Ctrl-C)",
    )
    sim.add_argument("--faults", default="", help='e.g. "spike:0.01,stuck:0.005,offline:0.001" or a JSON file')
    sim.add_argument(
        "--labels",
        default=None,
        help="fault labels (JSONL): a line as each fault starts (flushed, with its planned end), replaced by the "
        "exact labels when the run ends",
    )
    sim.add_argument("--seed", type=int, default=0, help="seed of the fleet's signals and faults (default 0)")
    sim.add_argument("--start", default=None, help="simulated start time (ISO 8601) instead of now")
    sim.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second (default 1)")
    sim.add_argument(
        "--credentials",
        default=None,
        help="CSV device_id,secret (what `ioc devices import --secrets-out` writes), or "
        "device_id,password,province,sector,type rows that define the devices themselves",
    )
    sim.add_argument(
        "--register",
        action="store_true",
        help="register the fleet in the center's registry first (new devices created, existing ones given fresh "
        "secrets), through its database as `ioc devices` does; a running center passes them to its broker",
    )
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
    sim.add_argument(
        "--export-devices",
        default=None,
        help="write the fleet as a roster CSV (what `ioc devices import` reads) and exit; needs no broker",
    )
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


@dataclass(frozen=True, slots=True)
class BrokerChoice:
    """The broker the devices connect to, where it was found (for messages), and the CA of its TLS listener."""

    address: BrokerAddress
    source: str
    ca_file: Path | None = None


def find_broker(args: argparse.Namespace, settings: Settings) -> BrokerChoice:
    """--broker, else IOC_MQTT_URL, else the broker of the local center (a running `ioc up` or `ioc demo`)."""
    if args.broker:
        return BrokerChoice(_address(args.broker), "--broker", args.ca)
    if settings.mqtt_url is not None:
        return BrokerChoice(_address(settings.mqtt_url.get_secret_value()), "IOC_MQTT_URL", args.ca)
    local = local_center_broker(settings)
    if local is None:
        raise SimulateError(
            f"no broker: no center is running in {settings.runtime_dir} (start one with `ioc up` or `make demo`), "
            "and neither --broker mqtt://host:port nor IOC_MQTT_URL is given"
        )
    return dataclasses.replace(local, ca_file=args.ca or local.ca_file)


def _address(url: str) -> BrokerAddress:
    """The broker's address without the URL's account: each device logs in as itself."""
    return parse_broker_url(url).with_credentials(None, None)


def local_center_broker(settings: Settings) -> BrokerChoice | None:
    """The broker a live center runs from the runtime folder (its ports file, and a port that answers)."""
    from core.errors import RuntimeServiceError
    from embedded.services import embedded_broker

    root = settings.runtime_dir / "mosquitto"
    if not (root / "ports.json").exists():
        return None
    broker = embedded_broker(settings, root, port=None, tls_port=None)
    try:
        broker.attach()  # reads the ports the owner recorded; RuntimeServiceError when nothing answers there
    except (RuntimeServiceError, OSError, ValueError, KeyError):
        return None
    where = f"the local center ({root})"
    if broker.plain:
        return BrokerChoice(_address(broker.device_url), where)
    return BrokerChoice(_address(broker.device_tls_url), where, broker.root / "tls" / "ca.crt")


@dataclass(frozen=True, slots=True)
class FleetPlan:
    """The fleet as the arguments describe it, before any broker is known."""

    devices: list[SimDevice]
    replays: list[Replay]
    interval_s: float | None


def build_plan(args: argparse.Namespace) -> FleetPlan:
    if args.devices < 0 or args.duration < 0:
        raise SimulateError("--devices and --duration cannot be negative")
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
    if interval_s is not None and not interval_s > 0:
        raise SimulateError("--interval must be positive")
    if not devices and not replays:
        raise SimulateError("nothing to simulate: --devices 0 and no --replay")
    return FleetPlan(devices=devices, replays=replays, interval_s=interval_s)


def build_config(
    args: argparse.Namespace, plan: FleetPlan, broker: BrokerChoice, *, auth_grace_s: float = 0.0
) -> FleetConfig:
    if (args.ca or args.cert) and not broker.address.tls:
        raise SimulateError("--ca/--cert are for TLS: give the broker as mqtts://host:port")
    if (args.cert is None) != (args.key is None):
        raise SimulateError("--cert and --key go together")
    return FleetConfig(
        broker=broker.address,
        ca_file=broker.ca_file,
        client_cert=args.cert,
        client_key=args.key,
        devices=plan.devices,
        seed=args.seed,
        interval_s=plan.interval_s,
        faults=parse_fault_spec(args.faults),
        replays=plan.replays,
        buffer_dir=Path(args.buffer_dir) if args.buffer_dir else None,
        buffer_max_messages=args.buffer_max,
        connect_rate_per_s=args.connect_rate,
        auth_grace_s=auth_grace_s,
    )


def export_roster(path: Path, devices: Sequence[SimDevice]) -> None:
    """The fleet in the registry's roster format: `ioc devices import` reads it as it is."""
    from devices.roster_csv import RosterRow, write_roster
    from ioc.cli.progress import progress_bar

    rows = (RosterRow(d.device_id, d.type_code, d.province, d.sector, name=f"simulated {d.type_code}") for d in devices)
    try:
        with path.open("w", encoding="utf-8", newline="") as out, progress_bar("writing", total=len(devices)) as bar:
            for _ in write_roster(out, rows):
                bar(1)
    except OSError as exc:
        raise SimulateError(f"cannot write {path}: {exc.strerror}") from exc


def register_fleet(devices: Sequence[SimDevice]) -> list[SimDevice]:
    """Register the fleet (new devices created, registered ones given fresh secrets) and return it with them."""
    from devices.catalog import load_catalog
    from devices.provisioning import FleetDevice, provision_fleet
    from ioc.cli.database import command_database
    from ioc.cli.progress import progress_bar

    fleet = [FleetDevice(d.device_id, d.type_code, d.province, name=f"simulated {d.type_code}") for d in devices]
    with command_database() as conn, progress_bar(f"registering {len(fleet)} devices", total=None):
        secrets = provision_fleet(conn, fleet, catalog=load_catalog(), actor=ACTOR)
    return [dataclasses.replace(d, password=secrets[d.device_id]) for d in devices]


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
        ("lost messages", f"{stats.lost_messages:,}  (buffer overflow {stats.dropped:,}, refused {stats.rejected:,})"),
        ("faults injected", faults),
        (
            "connections",
            f"{stats.disconnects:,} lost, {stats.fault_disconnects:,} cut by faults, "
            f"{stats.connect_failures:,} failed attempts, {stats.refused_devices:,} devices refused",
        ),
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
    plan = build_plan(args)
    every = [*plan.devices, *(r.device for r in plan.replays)]
    if args.export_devices:
        export_roster(Path(args.export_devices), every)
        print(f"wrote {len(every)} devices to {args.export_devices}")
        return 0
    broker = find_broker(args, Settings())
    grace = 0.0
    if args.register:
        registered = {d.device_id: d.password for d in register_fleet(every)}
        plan = dataclasses.replace(
            plan,
            devices=[dataclasses.replace(d, password=registered[d.device_id]) for d in plan.devices],
            replays=[
                dataclasses.replace(r, device=dataclasses.replace(r.device, password=registered[r.device.device_id]))
                for r in plan.replays
            ],
        )
        grace = REGISTER_GRACE_S
    config = build_config(args, plan, broker, auth_grace_s=grace)
    result = _run(args, config)
    report = summary(result, config=config, duration_s=args.duration)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.quiet:
        print(json.dumps(report, indent=2))
    if result.failure is not None:
        raise SimulateError(failure_message(result.failure, broker=broker, registered=args.register))
    return 0


def _run(args: argparse.Namespace, config: FleetConfig) -> FleetResult:
    stop = threading.Event()
    duration = args.duration if args.duration > 0 else float("inf")
    labels = Path(args.labels) if args.labels else None
    with _stop_on_interrupt(stop):
        if args.quiet:
            return run_fleet(config, duration_s=duration, clock=_clock(args), labels_path=labels, stop=stop)
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
        return result


def failure_message(failure: FleetFailure, *, broker: BrokerChoice, registered: bool) -> str:
    """One message that says what went wrong and what to do about it."""
    where = f"{broker.address.host}:{broker.address.port} ({broker.source})"
    if failure.kind == "refused":
        examples = ", ".join(failure.devices[:3]) + (", …" if failure.count > 3 else "")
        if registered:
            return (
                f"the broker at {where} refused {failure.count} devices' credentials ({examples}) although they "
                f"were just registered: is a center (`ioc up`) running for this registry? It passes new secrets "
                f"to its broker"
            )
        return (
            f"the broker at {where} refused {failure.count} devices' credentials ({examples}): register them with "
            "`ioc simulate --register` (same fleet options), or `ioc simulate --export-devices FILE`, "
            "`ioc devices import FILE --secrets-out SECRETS` and run with `--credentials SECRETS`"
        )
    if failure.kind == "unreachable":
        return (
            f"cannot reach the broker at {where}: {failure.detail or 'no answer'} ({failure.count} attempts); "
            "start the center (`ioc up` or `make demo`) or pass --broker mqtt://host:port"
        )
    return f"{failure.count} messages were not delivered: the broker at {where} stopped answering" + (
        f" ({failure.detail})" if failure.detail else ""
    )


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
            "failure": None if result.failure is None else dataclasses.asdict(result.failure),
        }
    )
    return doc
