"""Validation of decoded telemetry against the device and its type (`ingest.validate.to_rows`): which rows are
stored, with which quality flag, and which messages are quarantined with which stable reason."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import DecodeError, IocError, ValidationError
from devices.catalog import Catalog, DeviceType, load_catalog
from devices.registry import DeviceRecord
from ingest.validate import HISTORY_SLACK, to_rows
from protocol.telemetry import (
    CONTENT_TYPE_SENML_JSON,
    DECODE_REASONS,
    Reading,
    Telemetry,
    TextReading,
    decode_telemetry,
    encode_json,
    encode_json_batch,
    encode_senml_json,
)
from protocol.topics import TopicAddress, parse_topic, telemetry_topic
from store.readings import QUALITY_GOOD, QUALITY_OUT_OF_RANGE, ReadingRow

CATALOG: Catalog = load_catalog()
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
CREATED = datetime(2026, 11, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(seconds=300)
TS = datetime(2026, 11, 22, 8, 0, 0, 250000, tzinfo=UTC)
# Every reason to_rows may raise: ingest stores them in the quarantine table, operators filter by them.
VALIDATION_REASONS = {
    "device_decommissioned",
    "topic_mismatch",
    "unknown_metric",
    "unit_mismatch",
    "timestamp_in_future",
    "timestamp_before_device",
}


def device(
    type_code: str = "soil_probe",
    *,
    device_id: str = "probe-hn-001",
    province: str = "ha-noi",
    status: str = "active",
    created_at: datetime = CREATED,
) -> DeviceRecord:
    dtype = CATALOG.get(type_code)
    assert dtype is not None, type_code
    return DeviceRecord(
        device_id=device_id,
        type_code=type_code,
        province=province,
        sector=dtype.sector,
        name="",
        status=status,
        created_at=created_at,
    )


def rows_of(
    telemetry: Telemetry,
    record: DeviceRecord | None = None,
    *,
    address: TopicAddress | None = None,
    now: datetime = NOW,
    max_future: timedelta = MAX_FUTURE,
) -> list[ReadingRow]:
    record = record or device()
    dtype = CATALOG.get(record.type_code)
    assert dtype is not None
    return to_rows(
        address=address or parse_topic(telemetry_topic(record.province, record.sector, record.device_id)),
        telemetry=telemetry,
        device=record,
        device_type=dtype,
        now=now,
        max_future=max_future,
    )


def rejection(
    telemetry: Telemetry,
    record: DeviceRecord | None = None,
    *,
    address: TopicAddress | None = None,
    max_future: timedelta = MAX_FUTURE,
) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        rows_of(telemetry, record, address=address, max_future=max_future)
    return caught.value


def decoded(payload: bytes | str, *, senml: bool = False) -> Telemetry:
    raw = payload.encode() if isinstance(payload, str) else payload
    return decode_telemetry(raw, content_type=CONTENT_TYPE_SENML_JSON if senml else None, now=NOW)


def json_at(ts: object) -> str:
    """A plain JSON contract message of one soil moisture reading at `ts` (ISO text or epoch number)."""
    return json.dumps({"ts": ts, "readings": {"soil_moisture": 30}})


def one(metric: str, value: float, *, ts: datetime = TS, unit: str | None = None) -> Telemetry:
    return Telemetry((Reading(ts, metric, value, unit),))


# --------------------------------------------------------------------------------------------- values


def test_contract_example_becomes_one_good_row_per_reading_in_payload_order() -> None:
    payload = '{"seq": 17, "ts": "2026-11-22T08:00:00.250Z", "readings": {"soil_moisture": 31.2, "battery_v": 3.71}}'
    assert rows_of(decoded(payload)) == [
        (TS, "probe-hn-001", "soil_moisture", 31.2, QUALITY_GOOD),
        (TS, "probe-hn-001", "battery_v", 3.71, QUALITY_GOOD),
    ]


def test_quality_codes_are_the_stored_small_integers() -> None:
    # The readings table keeps quality as int2; dashboards and the API filter on these values.
    assert (QUALITY_GOOD, QUALITY_OUT_OF_RANGE) == (0, 1)


def test_out_of_range_value_is_stored_as_sent_with_the_out_of_range_flag() -> None:
    telemetry = decoded(encode_json({"soil_moisture": 140.0, "battery_v": 3.6}, seq=1, ts=TS))
    assert rows_of(telemetry) == [
        (TS, "probe-hn-001", "soil_moisture", 140.0, QUALITY_OUT_OF_RANGE),
        (TS, "probe-hn-001", "battery_v", 3.6, QUALITY_GOOD),
    ]


@pytest.mark.parametrize("dtype", list(CATALOG), ids=lambda t: t.code)
def test_range_of_every_catalog_metric_is_inclusive_at_both_ends(dtype: DeviceType) -> None:
    record = device(dtype.code)
    for spec in dtype.metrics:
        cases = [
            (spec.min, QUALITY_GOOD),
            (spec.max, QUALITY_GOOD),
            ((spec.min + spec.max) / 2, QUALITY_GOOD),
            (math.nextafter(spec.min, -math.inf), QUALITY_OUT_OF_RANGE),
            (math.nextafter(spec.max, math.inf), QUALITY_OUT_OF_RANGE),
        ]
        for value, quality in cases:
            assert rows_of(one(spec.name, value), record) == [(TS, record.device_id, spec.name, value, quality)], (
                f"{dtype.code}.{spec.name} = {value!r}"
            )


def test_the_same_metric_name_is_judged_by_the_range_of_the_device_type() -> None:
    # battery_v: a soil probe runs on a Li cell (2.0..4.5 V), a water level gauge on a 12 V battery (0..16 V).
    gauge = device("water_level_gauge", device_id="gauge-hn-001")
    assert rows_of(one("battery_v", 12.6), device())[0][4] == QUALITY_OUT_OF_RANGE
    assert rows_of(one("battery_v", 12.6), gauge)[0][4] == QUALITY_GOOD
    assert rows_of(one("battery_v", 1.0), gauge)[0][4] == QUALITY_GOOD
    assert rows_of(one("battery_v", 1.0), device())[0][4] == QUALITY_OUT_OF_RANGE


def test_negative_values_are_good_where_the_catalog_allows_them() -> None:
    meter = device("smart_meter", device_id="meter-hn-001")  # active_power -200..1000 kW: a rooftop exports
    assert rows_of(one("active_power", -150.0), meter) == [(TS, "meter-hn-001", "active_power", -150.0, QUALITY_GOOD)]
    assert rows_of(one("active_power", -250.0), meter)[0][4] == QUALITY_OUT_OF_RANGE


def test_integer_json_values_are_stored_as_floats() -> None:
    counter = device("traffic_counter", device_id="count-hn-001")
    rows = rows_of(decoded(encode_json({"vehicle_count": 42}, seq=1, ts=TS)), counter)
    assert rows == [(TS, "count-hn-001", "vehicle_count", 42.0, QUALITY_GOOD)]
    assert type(rows[0][3]) is float


def test_seq_is_not_part_of_the_row() -> None:
    with_seq = Telemetry((Reading(TS, "soil_moisture", 30.0, None, 99),))
    without = Telemetry((Reading(TS, "soil_moisture", 30.0),))
    assert rows_of(with_seq) == rows_of(without) == [(TS, "probe-hn-001", "soil_moisture", 30.0, QUALITY_GOOD)]


def test_a_repeated_reading_gives_repeated_rows_for_the_store_to_absorb() -> None:
    # The unique key (device_id, metric, ts) absorbs duplicates; validation does not deduplicate.
    telemetry = Telemetry((Reading(TS, "soil_moisture", 30.0), Reading(TS, "soil_moisture", 30.0)))
    assert rows_of(telemetry) == [(TS, "probe-hn-001", "soil_moisture", 30.0, QUALITY_GOOD)] * 2


# --------------------------------------------------------------------------------------------- metrics and units


def test_metric_of_another_device_type_is_an_unknown_metric() -> None:
    error = rejection(one("heart_rate", 70.0))
    assert error.reason == "unknown_metric"
    assert error.detail == "'heart_rate' is not a metric of soil_probe"
    # A real metric, but of the weather station, not of this soil probe.
    assert rejection(one("air_temperature", 25.0)).reason == "unknown_metric"


def test_one_unknown_metric_quarantines_the_whole_message_not_just_that_reading() -> None:
    telemetry = decoded(encode_json({"soil_moisture": 30.0, "leaf_wetness": 0.4, "battery_v": 3.7}, seq=1, ts=TS))
    error = rejection(telemetry)
    assert (error.reason, error.detail) == ("unknown_metric", "'leaf_wetness' is not a metric of soil_probe")


def test_a_text_value_is_an_unknown_metric_even_under_a_known_name() -> None:
    # The catalog has only numeric metrics: a SenML string value ("vs") cannot be stored.
    telemetry = decoded(
        json.dumps([{"bn": "probe-hn-001/", "bt": TS.timestamp(), "n": "soil_moisture", "vs": "wet"}]), senml=True
    )
    assert telemetry.texts == (TextReading(TS, "soil_moisture", "wet"),)
    error = rejection(telemetry)
    assert (error.reason, error.detail) == ("unknown_metric", "text value for 'soil_moisture'")


def test_senml_unit_equal_to_the_catalog_unit_is_accepted() -> None:
    payload = encode_senml_json("probe-hn-001", TS, {"soil_moisture": 31.5, "battery_v": 3.7}, {"soil_moisture": "%"})
    assert rows_of(decoded(payload, senml=True)) == [
        (TS, "probe-hn-001", "soil_moisture", 31.5, QUALITY_GOOD),
        (TS, "probe-hn-001", "battery_v", 3.7, QUALITY_GOOD),
    ]


def test_senml_unit_other_than_the_catalog_unit_is_a_unit_mismatch() -> None:
    # Units are compared as codes, not converted: a millivolt reading is not silently stored as volts.
    payload = encode_senml_json("probe-hn-001", TS, {"battery_v": 3700.0}, {"battery_v": "mV"})
    error = rejection(decoded(payload, senml=True))
    assert (error.reason, error.detail) == ("unit_mismatch", "battery_v in 'mV', expected 'V'")


def test_senml_base_unit_applies_to_records_without_their_own_unit() -> None:
    pack = [
        {"bn": "probe-hn-001/", "bt": TS.timestamp(), "bu": "Cel", "n": "soil_temperature", "v": 21.5},
        {"n": "soil_moisture", "v": 30.0},  # inherits "Cel": wrong for a percentage
    ]
    error = rejection(decoded(json.dumps(pack), senml=True))
    assert (error.reason, error.detail) == ("unit_mismatch", "soil_moisture in 'Cel', expected '%'")


def test_readings_without_a_unit_take_the_catalog_unit() -> None:
    # The JSON contract carries no units: the device type defines them.
    assert rows_of(one("soil_temperature", 21.5, unit=None)) == [
        (TS, "probe-hn-001", "soil_temperature", 21.5, QUALITY_GOOD)
    ]


def test_units_are_case_sensitive_ucum_codes() -> None:
    assert rejection(one("soil_temperature", 21.5, unit="cel")).reason == "unit_mismatch"


# --------------------------------------------------------------------------------------------- timestamps


def test_a_reading_exactly_max_future_ahead_of_now_is_accepted() -> None:
    edge = NOW + MAX_FUTURE
    assert rows_of(one("soil_moisture", 30.0, ts=edge)) == [(edge, "probe-hn-001", "soil_moisture", 30.0, 0)]


def test_a_reading_beyond_max_future_is_quarantined_as_in_the_future() -> None:
    too_late = NOW + MAX_FUTURE + timedelta(microseconds=1)
    error = rejection(one("soil_moisture", 30.0, ts=too_late))
    assert (error.reason, error.detail) == ("timestamp_in_future", "2026-11-22T09:05:00.000001+00:00")


def test_max_future_is_the_allowed_clock_skew_and_comes_from_the_caller() -> None:
    ahead = one("soil_moisture", 30.0, ts=NOW + timedelta(minutes=10))
    assert rejection(ahead, max_future=timedelta(minutes=5)).reason == "timestamp_in_future"
    assert len(rows_of(ahead, max_future=timedelta(minutes=15))) == 1
    assert rejection(one("soil_moisture", 30.0, ts=NOW + timedelta(seconds=1)), max_future=timedelta(0)).reason == (
        "timestamp_in_future"
    )


def test_readings_up_to_a_day_before_the_device_was_created_are_accepted() -> None:
    edge = CREATED - HISTORY_SLACK
    assert timedelta(days=1) == HISTORY_SLACK
    assert rows_of(one("soil_moisture", 30.0, ts=edge)) == [(edge, "probe-hn-001", "soil_moisture", 30.0, 0)]


def test_readings_older_than_the_device_history_slack_are_quarantined() -> None:
    too_early = CREATED - HISTORY_SLACK - timedelta(microseconds=1)
    error = rejection(one("soil_moisture", 30.0, ts=too_early))
    assert (error.reason, error.detail) == ("timestamp_before_device", "2026-10-30T23:59:59.999999+00:00")


def test_epoch_seconds_and_milliseconds_give_the_same_row_as_iso() -> None:
    epoch_s = int(TS.replace(microsecond=0).timestamp())
    iso = rows_of(decoded(json_at("2026-11-22T08:00:00Z")))
    seconds = rows_of(decoded(json_at(epoch_s)))
    millis = rows_of(decoded(json_at(epoch_s * 1000)))
    expected = [(datetime(2026, 11, 22, 8, 0, tzinfo=UTC), "probe-hn-001", "soil_moisture", 30.0, 0)]
    assert iso == seconds == millis == expected


def test_epoch_milliseconds_keep_their_fraction_of_a_second() -> None:
    epoch_ms = int(TS.timestamp() * 1000)  # ...250 ms
    rows = rows_of(decoded(json_at(epoch_ms)))
    assert rows[0][0] == TS
    assert rows[0][0].tzinfo is UTC


def test_an_epoch_in_milliseconds_too_far_ahead_is_judged_like_any_timestamp() -> None:
    ahead_ms = int((NOW + timedelta(hours=1)).timestamp() * 1000)
    error = rejection(decoded(json_at(ahead_ms)))
    assert (error.reason, error.detail) == ("timestamp_in_future", "2026-11-22T10:00:00+00:00")


def test_senml_relative_times_resolve_against_the_decoder_now_then_validate() -> None:
    pack = [
        {"bn": "probe-hn-001/", "n": "soil_moisture", "t": -60, "v": 30.0},
        {"n": "soil_moisture", "t": 0, "v": 31.0},
    ]
    assert rows_of(decoded(json.dumps(pack), senml=True)) == [
        (NOW - timedelta(minutes=1), "probe-hn-001", "soil_moisture", 30.0, 0),
        (NOW, "probe-hn-001", "soil_moisture", 31.0, 0),
    ]


def test_every_senml_record_time_is_checked_not_only_the_first() -> None:
    pack = [
        {"bn": "probe-hn-001/", "bt": NOW.timestamp(), "n": "soil_moisture", "v": 30.0},
        {"n": "soil_moisture", "t": 3600, "v": 31.0},  # an hour ahead
    ]
    error = rejection(decoded(json.dumps(pack), senml=True))
    assert (error.reason, error.detail) == ("timestamp_in_future", "2026-11-22T10:00:00+00:00")


def test_equal_timestamps_in_distinct_readings_are_all_accepted() -> None:
    # to_rows checks a timestamp once per distinct object; equal values from separate messages pass alike.
    first, second = datetime(2026, 11, 22, 8, 0, tzinfo=UTC), datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    assert first is not second
    telemetry = Telemetry((Reading(first, "soil_moisture", 30.0), Reading(second, "battery_v", 3.7)))
    assert [row[0] for row in rows_of(telemetry)] == [first, second]


# --------------------------------------------------------------------------------------------- batches (backfill)


def test_a_backfill_batch_gives_each_reading_its_own_message_timestamp_in_order() -> None:
    t0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    payload = encode_json_batch(
        [
            (1, t0, {"soil_moisture": 30.0, "battery_v": 3.8}),
            (2, t0 + timedelta(minutes=15), {"soil_moisture": 29.5}),
            (3, t0 + timedelta(minutes=30), {"soil_moisture": 101.0}),
        ]
    )
    assert rows_of(decoded(payload)) == [
        (t0, "probe-hn-001", "soil_moisture", 30.0, QUALITY_GOOD),
        (t0, "probe-hn-001", "battery_v", 3.8, QUALITY_GOOD),
        (t0 + timedelta(minutes=15), "probe-hn-001", "soil_moisture", 29.5, QUALITY_GOOD),
        (t0 + timedelta(minutes=30), "probe-hn-001", "soil_moisture", 101.0, QUALITY_OUT_OF_RANGE),
    ]


def test_a_backfill_batch_with_one_message_in_the_future_is_quarantined_whole() -> None:
    payload = encode_json_batch(
        [
            (1, NOW - timedelta(hours=1), {"soil_moisture": 30.0}),
            (2, NOW + timedelta(hours=1), {"soil_moisture": 31.0}),
        ]
    )
    assert rejection(decoded(payload)).reason == "timestamp_in_future"


def test_a_backfill_batch_with_one_message_from_before_the_device_is_quarantined_whole() -> None:
    payload = encode_json_batch(
        [
            (1, CREATED - timedelta(days=2), {"soil_moisture": 30.0}),
            (2, NOW, {"soil_moisture": 31.0}),
        ]
    )
    assert rejection(decoded(payload)).reason == "timestamp_before_device"


def test_a_backfill_batch_with_an_unknown_metric_in_a_later_message_is_quarantined_whole() -> None:
    payload = encode_json_batch([(1, TS, {"soil_moisture": 30.0}), (2, TS, {"soil_ph": 6.5})])
    assert rejection(decoded(payload)).reason == "unknown_metric"


def test_a_backfill_over_days_is_accepted_when_the_device_existed() -> None:
    days = [CREATED + timedelta(days=d) for d in range(20)]
    payload = encode_json_batch([(d, ts, {"soil_moisture": float(d)}) for d, ts in enumerate(days)])
    rows = rows_of(decoded(payload))
    assert [(row[0], row[3]) for row in rows] == [(ts, float(d)) for d, ts in enumerate(days)]


# --------------------------------------------------------------------------------------------- device and topic


def test_a_decommissioned_device_is_refused_even_with_good_readings() -> None:
    error = rejection(one("soil_moisture", 30.0), device(status="decommissioned"))
    assert (error.reason, error.detail) == ("device_decommissioned", "probe-hn-001")


def test_a_device_publishing_under_another_province_is_a_topic_mismatch() -> None:
    address = parse_topic(telemetry_topic("hue", "agriculture", "probe-hn-001"))
    error = rejection(one("soil_moisture", 30.0), address=address)
    assert error.reason == "topic_mismatch"
    assert error.detail == "device is registered in ha-noi/agriculture, published under hue/agriculture"


def test_a_device_publishing_under_another_sector_is_a_topic_mismatch() -> None:
    address = parse_topic(telemetry_topic("ha-noi", "energy", "probe-hn-001"))
    error = rejection(one("soil_moisture", 30.0), address=address)
    assert error.reason == "topic_mismatch"
    assert error.detail.endswith("published under ha-noi/energy")


def test_the_senml_topic_suffix_does_not_matter_to_validation() -> None:
    address = parse_topic(telemetry_topic("ha-noi", "agriculture", "probe-hn-001", senml=True))
    assert address.senml
    assert rows_of(one("soil_moisture", 30.0), address=address) == [(TS, "probe-hn-001", "soil_moisture", 30.0, 0)]


def test_checks_run_device_then_topic_then_text_then_each_reading() -> None:
    # A message with everything wrong reports the first check it fails, so the reason is predictable.
    bad = Telemetry(
        (Reading(NOW + timedelta(days=1), "heart_rate", 1.0, "mV"),),
        texts=(TextReading(TS, "note", "x"),),
    )
    elsewhere = parse_topic(telemetry_topic("hue", "agriculture", "probe-hn-001"))
    assert rejection(bad, device(status="decommissioned"), address=elsewhere).reason == "device_decommissioned"
    assert rejection(bad, address=elsewhere).reason == "topic_mismatch"
    assert rejection(bad).reason == "unknown_metric"
    assert rejection(Telemetry(bad.readings)).reason == "unknown_metric"  # metric before unit and time
    wrong_unit_future = Telemetry((Reading(NOW + timedelta(days=1), "soil_moisture", 1.0, "mV"),))
    assert rejection(wrong_unit_future).reason == "unit_mismatch"  # unit before time


# --------------------------------------------------------------------------------------------- reason codes


def test_validation_errors_carry_a_stable_reason_and_a_detail() -> None:
    error = rejection(one("heart_rate", 70.0))
    assert isinstance(error, IocError)
    assert not isinstance(error, DecodeError)  # the quarantine tells decoding from validation by reason only
    assert str(error) == "unknown_metric: 'heart_rate' is not a metric of soil_probe"
    assert ValidationError("unknown_metric").detail == ""
    assert str(ValidationError("unknown_metric")) == "unknown_metric"


def test_the_reason_codes_are_the_documented_set() -> None:
    later = NOW + timedelta(days=1)
    cases = {
        "device_decommissioned": rejection(one("soil_moisture", 1.0), device(status="decommissioned")),
        "topic_mismatch": rejection(
            one("soil_moisture", 1.0), address=parse_topic(telemetry_topic("hue", "agriculture", "probe-hn-001"))
        ),
        "unknown_metric": rejection(one("heart_rate", 1.0)),
        "unit_mismatch": rejection(one("soil_moisture", 1.0, unit="Cel")),
        "timestamp_in_future": rejection(one("soil_moisture", 1.0, ts=later)),
        "timestamp_before_device": rejection(one("soil_moisture", 1.0, ts=datetime(2020, 1, 1, tzinfo=UTC))),
    }
    assert {name: error.reason for name, error in cases.items()} == {name: name for name in VALIDATION_REASONS}
    # Validation reasons never collide with the decoder's: a quarantined row's reason says which step refused it.
    assert VALIDATION_REASONS.isdisjoint(DECODE_REASONS)
