"""Simulated device fleets: firmware models with plausible physics, fault injection with ground-truth labels,
store-and-forward, and a one-thread fleet of MQTT connections. Talks to the center only over MQTT (`protocol`).

Programmatic use (demo, benchmarks, analytics end-to-end):

    from firmware_sim.roster import build_devices
    from firmware_sim.faults import parse_fault_spec
    from firmware_sim.fleet import FleetConfig, run_fleet

    config = FleetConfig(broker=parse_broker_url(url), devices=build_devices(100), seed=1, interval_s=10,
                         faults=parse_fault_spec("spike:0.01,stuck:0.005"))
    result = run_fleet(config, duration_s=60, labels_path=Path("labels.jsonl"))
    result.stats.expected_rows, result.labels, result.start_ms

`FirmwareDevice(device=…, seed=…, start_ms=result.start_ms, interval_ms=…)` without faults rebuilds the clean
values every device measured (faults draw from their own random stream).
"""
