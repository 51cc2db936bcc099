"""`ioc simulate`: run a simulated device fleet against a broker, with fault injection and ground-truth labels."""

from __future__ import annotations

import argparse


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = subparsers.add_parser(
        "simulate",
        help="run a simulated device fleet against a broker",
        description="Simulated devices with plausible physics publish telemetry over MQTT, each on its own "
        "connection; faults are injected at random and labelled in a JSONL file.",
    )
    sim.add_argument("--broker", default=None, help="mqtt://host:port (default: IOC_MQTT_URL)")
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
    sim.set_defaults(func=cmd_simulate)


def cmd_simulate(args: argparse.Namespace) -> int:
    from firmware_sim.cli import simulate

    return simulate(args)
