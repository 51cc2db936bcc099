"""Fault labels as the simulator writes them live: one per fault as it starts, with its planned end, matching the
exact label that the fault's end produces (the same fault, the same record fields)."""

from __future__ import annotations

import io

from devices.roster_csv import ROSTER_COLUMNS, RosterRow, missing_columns_message, write_roster
from firmware_sim.faults import FaultLabel, FaultSpec
from firmware_sim.firmware import FirmwareDevice, SimDevice

START_MS = 1_793_466_000_000
INTERVAL_MS = 10_000


def _run(spec: FaultSpec, steps: int) -> tuple[list[tuple[int, FaultLabel]], list[FaultLabel]]:
    """(sample index, label) of every opened label, and the exact labels."""
    fw = FirmwareDevice(
        device=SimDevice("pump-1", "pump_station", "can-tho", "energy"),
        seed=2,
        start_ms=START_MS,
        interval_ms=INTERVAL_MS,
        faults=spec,
    )
    opened: list[tuple[int, FaultLabel]] = []
    exact: list[FaultLabel] = []
    for step in range(steps):
        sample = fw.step()
        opened += [(step, label) for label in sample.opened]
        exact += sample.labels
    final = fw.finish()
    return opened + [(steps, label) for label in final.opened], exact + list(final.labels)


def test_every_fault_is_labelled_once_as_it_starts_and_its_planned_end_is_kept_when_nothing_interrupts_it() -> None:
    spec = FaultSpec(probabilities={"stuck": 0.02, "level_shift": 0.02, "spike": 0.02}, samples={"stuck": (5, 9)})
    opened, exact = _run(spec, steps=2000)

    def key(label: FaultLabel) -> tuple[str, str, str, int]:
        return (label.device_id, label.metric, label.kind, label.start_ms)

    assert len(opened) == len(exact) > 20
    assert sorted(key(label) for _, label in opened) == sorted(key(label) for label in exact)
    by_key = {key(label): label for label in exact}
    for step, label in opened:
        assert label.start_ms == START_MS + step * INTERVAL_MS + (label.start_ms - START_MS) % INTERVAL_MS
        final = by_key[key(label)]
        assert set(label.params) == set(final.params)
        if final.end_ms < START_MS + 1999 * INTERVAL_MS:  # not cut short by the end of the run: as planned
            assert (label.end_ms, label.params) == (final.end_ms, final.params)
            assert label.params["samples"] == (label.end_ms - label.start_ms) // INTERVAL_MS + 1


def test_the_roster_written_names_its_columns_and_an_old_header_is_told_what_to_rename() -> None:
    out = io.StringIO()
    rows = [RosterRow("d-1", "soil_probe", "can-tho", "agriculture", "field 1", 900.0), RosterRow("d-2", "x", "p", "s")]
    assert list(write_roster(out, rows)) == rows
    assert out.getvalue().splitlines() == [
        ",".join(ROSTER_COLUMNS),
        "d-1,soil_probe,can-tho,agriculture,field 1,900",
        "d-2,x,p,s,,",
    ]
    assert missing_columns_message(ROSTER_COLUMNS) is None
    assert missing_columns_message(["device_id", "province", "type"]) == (
        "CSV header lacks type_code (has device_id, province, type); `type` is now `type_code` "
        "(a roster is device_id,type_code,province,sector,name,report_interval_s)"
    )
