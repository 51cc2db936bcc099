"""The catalog's metric groups: the sets the joint detector watches together must be real metrics of their type,
and must hold every pair of metrics that the device physics ties together (the pairs joint faults break)."""

from __future__ import annotations

import pytest

from analytics.detectors.joint import joint_metrics
from devices.catalog import Catalog, DeviceType, load_catalog
from firmware_sim.models import MODELS


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _groups(dtype: DeviceType) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for metric in dtype.metrics:
        if metric.group is not None:
            found.setdefault(metric.group, set()).add(metric.name)
    return found


def test_every_group_names_two_or_more_metrics_of_its_own_type(catalog: Catalog) -> None:
    for dtype in catalog:
        groups = _groups(dtype)
        # Without a group a type is watched on all its metrics at once (counters, batteries and all): every type
        # says which of its metrics move together instead.
        assert groups, f"{dtype.code} names no metric group"
        for name, members in groups.items():
            assert members <= set(dtype.metric_names), (dtype.code, name, members)
            assert len(members) >= 2, (dtype.code, name, members)


def test_the_joint_detector_watches_exactly_the_catalog_groups(catalog: Catalog) -> None:
    for dtype in catalog:
        watched = joint_metrics(dtype.metric_names, {m.name: m.group for m in dtype.metrics})
        assert sorted(map(set, watched), key=sorted) == sorted(_groups(dtype).values(), key=sorted), dtype.code


@pytest.mark.parametrize("code", sorted(MODELS))
def test_every_pair_the_physics_ties_together_shares_one_group(catalog: Catalog, code: str) -> None:
    dtype = catalog.get(code)
    assert dtype is not None
    group_of = {m.name: m.group for m in dtype.metrics}
    for follower, partner in MODELS[code].related:
        assert group_of[follower] is not None, f"{code}: {follower} (follows {partner}) is in no group"
        assert group_of[follower] == group_of[partner], f"{code}: {follower} follows {partner} across groups"


def test_the_physical_pairs_named_in_the_field_are_grouped(catalog: Catalog) -> None:
    """Relations an operator knows from the field: a transformer's phase currents follow its load and heat its
    oil; a pump's current, pressure and flow rise together; an oxygen line's pressure falls as the wards draw."""

    def together(code: str, *metrics: str) -> bool:
        dtype = catalog.get(code)
        assert dtype is not None
        group_of = {m.name: m.group for m in dtype.metrics}
        groups = {group_of[m] for m in metrics}
        return len(groups) == 1 and None not in groups

    assert together("transformer_monitor", "load_pct", "current_l1", "current_l2", "current_l3", "oil_temperature")
    assert together("pump_station", "flow_rate", "discharge_pressure", "motor_current")
    assert together("oxygen_tank", "pressure", "flow_rate")
    assert together("soil_probe", "soil_moisture", "soil_ec")
    assert together("vaccine_fridge", "temperature", "compressor_on", "door_open")
    assert not together("oxygen_tank", "pressure", "level")
