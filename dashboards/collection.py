"""Every dashboard of the center, in the order the folders list them."""

from __future__ import annotations

from collections.abc import Mapping

from dashboards import agriculture, device, energy, health, ingest_health, overview, transport
from dashboards.definitions import DashboardDefinition


def build_dashboards(*, province_centers: Mapping[str, tuple[float, float]]) -> tuple[DashboardDefinition, ...]:
    """`province_centers`: code → (latitude, longitude) of each province's seat (devices/data/provinces.json),
    where the overview map puts the province's fixed devices."""
    built = (
        overview.build(province_centers=province_centers),
        device.build(),
        ingest_health.build(),
        agriculture.build(),
        energy.build(),
        transport.build(),
        health.build(),
    )
    uids = [d.uid for d in built]
    if len(set(uids)) != len(uids):
        raise ValueError(f"dashboard uids repeat: {uids}")
    return built
