"""Validation of decoded telemetry against the device and its type (`ingest.validate.ReadingSplitter`): which rows
are stored, with which quality flag, which readings are refused one by one with which stable reason, which messages
are refused whole, and how a quarantine entry sums up the refused readings (`summarize_refusals`)."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import DecodeError, IocError, ValidationError
from devices.catalog import Catalog, DeviceType, load_catalog
from devices.registry import DeviceRecord
from ingest.validate import HISTORY_SLACK, ReadingSplitter, summarize_refusals
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
from store.quarantine import READING_DETAIL_KEEP_CHARS, QuarantinedReading
from store.readings import QUALITY_GOOD, QUALITY_OUT_OF_RANGE, ReadingRow

CATALOG: Catalog = load_catalog()
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
CREATED = datetime(2026, 11, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(seconds=300)
TS = datetime(2026, 11, 22, 8, 0, 0, 250000, tzinfo=UTC)
# Every reason validation gives: ingest stores them in the quarantine table, operators filter by them.
MESSAGE_REASONS = {"device_decommissioned", "credential_revoked", "topic_mismatch"}  # the message refused whole
READING_REASONS = {  # one reading refused, the others judged on their own
    "unknown_metric",
    "text_value",
    "unit_mismatch",
    "timestamp_in_future",
    "timestamp_before_device",
}
VALIDATION_REASONS = MESSAGE_REASONS | READING_REASONS
SOIL_METRICS = "its metrics: soil_moisture, soil_temperature, soil_ec, battery_v"


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


def split(
    telemetry: Telemetry,
    record: DeviceRecord | None = None,
    *,
    address: TopicAddress | None = None,
    now: datetime = NOW,
    max_future: timedelta = MAX_FUTURE,
) -> tuple[list[ReadingRow], list[QuarantinedReading]]:
    """The rows stored and the readings refused for one message (into fresh lists, as a batch's first message)."""
    record = record or device()
    dtype = CATALOG.get(record.type_code)
    assert dtype is not None
    splitter = ReadingSplitter(now=now, max_future=max_future, rows=[], refused=[])
    appended = splitter.split(
        address=address or parse_topic(telemetry_topic(record.province, record.sector, record.device_id)),
        telemetry=telemetry,
        device=record,
        device_type=dtype,
    )
    assert appended == len(splitter.rows)
    return splitter.rows, splitter.refused


def rows_of(
    telemetry: Telemetry,
    record: DeviceRecord | None = None,
    *,
    address: TopicAddress | None = None,
    now: datetime = NOW,
    max_future: timedelta = MAX_FUTURE,
) -> list[ReadingRow]:
    """The rows of a message with nothing refused."""
    rows, refused = split(telemetry, record, address=address, now=now, max_future=max_future)
    assert refused == []
    return rows


def refusal(
    telemetry: Telemetry, record: DeviceRecord | None = None, *, max_future: timedelta = MAX_FUTURE
) -> QuarantinedReading:
    """The one refused reading of a message of which nothing was stored."""
    rows, refused = split(telemetry, record, max_future=max_future)
    assert rows == []
    assert len(refused) == 1, refused
    return refused[0]


def rejection(
    telemetry: Telemetry,
    record: DeviceRecord | None = None,
    *,
    address: TopicAddress | None = None,
    max_future: timedelta = MAX_FUTURE,
) -> ValidationError:
    """Why the message was refused whole."""
    with pytest.raises(ValidationError) as caught:
        split(telemetry, record, address=address, max_future=max_future)
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


def test_metric_of_another_device_type_is_an_unknown_metric_naming_the_metrics_of_the_type() -> None:
    refused = refusal(one("heart_rate", 70.0))
    assert refused == QuarantinedReading(
        "heart_rate", TS, 70.0, "unknown_metric", f"metric 'heart_rate' is not a metric of soil_probe ({SOIL_METRICS})"
    )
    # A real metric, but of the weather station, not of this soil probe.
    assert refusal(one("leaf_wetness", 25.0)).reason == "unknown_metric"


def test_a_misspelt_metric_is_refused_with_the_name_it_was_likely_meant_to_be() -> None:
    monitor = device("air_quality_monitor", device_id="air-hn-001")
    assert refusal(one("humidty", 55.0), monitor).detail == (
        "metric 'humidty' is not a metric of air_quality_monitor (did you mean 'humidity'?)"
    )
    assert refusal(one("soil_moistre", 31.0)).detail == (
        "metric 'soil_moistre' is not a metric of soil_probe (did you mean 'soil_moisture'?)"
    )


def test_one_unknown_metric_is_refused_alone_and_the_other_readings_are_stored() -> None:
    telemetry = decoded(encode_json({"soil_moisture": 30.0, "leaf_wetness": 0.4, "battery_v": 3.7}, seq=1, ts=TS))
    rows, refused = split(telemetry)
    assert rows == [
        (TS, "probe-hn-001", "soil_moisture", 30.0, QUALITY_GOOD),
        (TS, "probe-hn-001", "battery_v", 3.7, QUALITY_GOOD),
    ]
    assert [(r.metric, r.ts, r.value, r.reason) for r in refused] == [("leaf_wetness", TS, 0.4, "unknown_metric")]


def test_a_splitter_appends_message_after_message_to_the_lists_it_is_given() -> None:
    # The worker fills one list per batch: a message's rows follow those already there, nothing is replaced.
    earlier: ReadingRow = (TS, "other-001", "soil_moisture", 1.0, QUALITY_GOOD)
    rows, refused = [earlier], [QuarantinedReading("x", TS, 1.0, "unknown_metric", "earlier")]
    splitter = ReadingSplitter(now=NOW, max_future=MAX_FUTURE, rows=rows, refused=refused)
    dtype = CATALOG.get("soil_probe")
    assert dtype is not None
    address = parse_topic(telemetry_topic("ha-noi", "agriculture", "probe-hn-001"))
    for seq, readings, appended in [(1, {"soil_moisture": 30.0, "soil_ph": 6.5}, 1), (2, {"battery_v": 3.7}, 1)]:
        telemetry = decoded(encode_json(readings, seq=seq, ts=TS))
        assert splitter.split(address=address, telemetry=telemetry, device=device(), device_type=dtype) == appended
    assert rows == [
        earlier,
        (TS, "probe-hn-001", "soil_moisture", 30.0, QUALITY_GOOD),
        (TS, "probe-hn-001", "battery_v", 3.7, QUALITY_GOOD),
    ]
    assert [r.metric for r in refused] == ["x", "soil_ph"]


def test_a_text_value_is_refused_alone_even_under_a_known_name() -> None:
    # The catalog has only numeric metrics: a SenML string value ("vs") cannot be stored; the number next to it can.
    pack = [
        {"bn": "probe-hn-001/", "bt": TS.timestamp(), "n": "soil_moisture", "vs": "wet"},
        {"n": "battery_v", "v": 3.7},
        {"n": "note", "vs": "moved"},
    ]
    telemetry = decoded(json.dumps(pack), senml=True)
    assert telemetry.texts == (TextReading(TS, "soil_moisture", "wet"), TextReading(TS, "note", "moved"))
    rows, refused = split(telemetry)
    assert rows == [(TS, "probe-hn-001", "battery_v", 3.7, QUALITY_GOOD)]
    assert refused == [
        QuarantinedReading(
            "soil_moisture",
            TS,
            None,
            "text_value",
            "metric 'soil_moisture' has a text value; soil_probe reports it as a number in '%'",
        ),
        QuarantinedReading(
            "note", TS, None, "unknown_metric", f"metric 'note' is not a metric of soil_probe ({SOIL_METRICS})"
        ),
    ]


def test_senml_unit_equal_to_the_catalog_unit_is_accepted() -> None:
    payload = encode_senml_json("probe-hn-001", TS, {"soil_moisture": 31.5, "battery_v": 3.7}, {"soil_moisture": "%"})
    assert rows_of(decoded(payload, senml=True)) == [
        (TS, "probe-hn-001", "soil_moisture", 31.5, QUALITY_GOOD),
        (TS, "probe-hn-001", "battery_v", 3.7, QUALITY_GOOD),
    ]


def test_senml_unit_other_than_the_catalog_unit_is_a_unit_mismatch() -> None:
    # Units are compared as codes, not converted: a millivolt reading is not silently stored as volts.
    payload = encode_senml_json("probe-hn-001", TS, {"battery_v": 3700.0}, {"battery_v": "mV"})
    refused = refusal(decoded(payload, senml=True))
    assert (refused.reason, refused.detail) == (
        "unit_mismatch",
        "metric 'battery_v' in 'mV', soil_probe reports it in 'V'",
    )


def test_senml_base_unit_applies_to_records_without_their_own_unit() -> None:
    pack = [
        {"bn": "probe-hn-001/", "bt": TS.timestamp(), "bu": "Cel", "n": "soil_temperature", "v": 21.5},
        {"n": "soil_moisture", "v": 30.0},  # inherits "Cel": wrong for a percentage
    ]
    rows, refused = split(decoded(json.dumps(pack), senml=True))
    assert rows == [(TS, "probe-hn-001", "soil_temperature", 21.5, QUALITY_GOOD)]
    assert [(r.metric, r.reason, r.detail) for r in refused] == [
        ("soil_moisture", "unit_mismatch", "metric 'soil_moisture' in 'Cel', soil_probe reports it in '%'")
    ]


def test_readings_without_a_unit_take_the_catalog_unit() -> None:
    # The JSON contract carries no units: the device type defines them.
    assert rows_of(one("soil_temperature", 21.5, unit=None)) == [
        (TS, "probe-hn-001", "soil_temperature", 21.5, QUALITY_GOOD)
    ]


def test_units_are_case_sensitive_ucum_codes() -> None:
    assert refusal(one("soil_temperature", 21.5, unit="cel")).reason == "unit_mismatch"


# --------------------------------------------------------------------------------------------- timestamps


def test_a_reading_exactly_max_future_ahead_of_now_is_accepted() -> None:
    edge = NOW + MAX_FUTURE
    assert rows_of(one("soil_moisture", 30.0, ts=edge)) == [(edge, "probe-hn-001", "soil_moisture", 30.0, 0)]


def test_a_reading_beyond_max_future_is_quarantined_as_in_the_future() -> None:
    too_late = NOW + MAX_FUTURE + timedelta(microseconds=1)
    refused = refusal(one("soil_moisture", 30.0, ts=too_late))
    assert (refused.reason, refused.detail) == (
        "timestamp_in_future",
        "timestamp 2026-11-22T09:05:00.000001+00:00 is 300 s ahead of the center's clock (at most 300 s allowed)",
    )


def test_max_future_is_the_allowed_clock_skew_and_comes_from_the_caller() -> None:
    ahead = one("soil_moisture", 30.0, ts=NOW + timedelta(minutes=10))
    assert refusal(ahead, max_future=timedelta(minutes=5)).reason == "timestamp_in_future"
    assert len(rows_of(ahead, max_future=timedelta(minutes=15))) == 1
    assert refusal(one("soil_moisture", 30.0, ts=NOW + timedelta(seconds=1)), max_future=timedelta(0)).reason == (
        "timestamp_in_future"
    )


def test_readings_up_to_a_day_before_the_device_was_created_are_accepted() -> None:
    edge = CREATED - HISTORY_SLACK
    assert timedelta(days=1) == HISTORY_SLACK
    assert rows_of(one("soil_moisture", 30.0, ts=edge)) == [(edge, "probe-hn-001", "soil_moisture", 30.0, 0)]


def test_readings_older_than_the_device_history_slack_are_quarantined() -> None:
    too_early = CREATED - HISTORY_SLACK - timedelta(microseconds=1)
    refused = refusal(one("soil_moisture", 30.0, ts=too_early))
    assert (refused.reason, refused.detail) == (
        "timestamp_before_device",
        "timestamp 2026-10-30T23:59:59.999999+00:00 is before the device was registered (2026-11-01T00:00:00+00:00; "
        "readings from 2026-10-31T00:00:00+00:00 on are accepted)",
    )


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
    refused = refusal(decoded(json_at(ahead_ms)))
    assert (refused.reason, refused.ts) == ("timestamp_in_future", datetime(2026, 11, 22, 10, 0, tzinfo=UTC))
    assert refused.detail.startswith("timestamp 2026-11-22T10:00:00+00:00 is 3600 s ahead")


def test_senml_relative_times_resolve_against_the_decoder_now_then_validate() -> None:
    pack = [
        {"bn": "probe-hn-001/", "n": "soil_moisture", "t": -60, "v": 30.0},
        {"n": "soil_moisture", "t": 0, "v": 31.0},
    ]
    assert rows_of(decoded(json.dumps(pack), senml=True)) == [
        (NOW - timedelta(minutes=1), "probe-hn-001", "soil_moisture", 30.0, 0),
        (NOW, "probe-hn-001", "soil_moisture", 31.0, 0),
    ]


def test_every_senml_record_time_is_checked_and_only_the_record_out_of_bounds_is_refused() -> None:
    pack = [
        {"bn": "probe-hn-001/", "bt": NOW.timestamp(), "n": "soil_moisture", "v": 30.0},
        {"n": "soil_moisture", "t": 3600, "v": 31.0},  # an hour ahead
        {"n": "battery_v", "t": -60, "v": 3.7},
    ]
    rows, refused = split(decoded(json.dumps(pack), senml=True))
    assert rows == [
        (NOW, "probe-hn-001", "soil_moisture", 30.0, QUALITY_GOOD),
        (NOW - timedelta(minutes=1), "probe-hn-001", "battery_v", 3.7, QUALITY_GOOD),
    ]
    assert [(r.metric, r.ts, r.value, r.reason) for r in refused] == [
        ("soil_moisture", NOW + timedelta(hours=1), 31.0, "timestamp_in_future")
    ]


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


def test_a_backfill_batch_keeps_its_good_messages_when_one_is_in_the_future() -> None:
    payload = encode_json_batch(
        [
            (1, NOW - timedelta(hours=1), {"soil_moisture": 30.0}),
            (2, NOW + timedelta(hours=1), {"soil_moisture": 31.0, "battery_v": 3.7}),
        ]
    )
    rows, refused = split(decoded(payload))
    assert rows == [(NOW - timedelta(hours=1), "probe-hn-001", "soil_moisture", 30.0, QUALITY_GOOD)]
    assert [(r.metric, r.reason) for r in refused] == [
        ("soil_moisture", "timestamp_in_future"),
        ("battery_v", "timestamp_in_future"),
    ]


def test_a_backfill_batch_keeps_its_good_messages_when_one_is_from_before_the_device() -> None:
    payload = encode_json_batch(
        [
            (1, CREATED - timedelta(days=2), {"soil_moisture": 30.0}),
            (2, NOW, {"soil_moisture": 31.0}),
        ]
    )
    rows, refused = split(decoded(payload))
    assert rows == [(NOW, "probe-hn-001", "soil_moisture", 31.0, QUALITY_GOOD)]
    assert [(r.ts, r.reason) for r in refused] == [(CREATED - timedelta(days=2), "timestamp_before_device")]


def test_a_backfill_batch_with_an_unknown_metric_in_a_later_message_refuses_only_that_reading() -> None:
    payload = encode_json_batch([(1, TS, {"soil_moisture": 30.0}), (2, TS, {"soil_ph": 6.5})])
    rows, refused = split(decoded(payload))
    assert rows == [(TS, "probe-hn-001", "soil_moisture", 30.0, QUALITY_GOOD)]
    assert [(r.metric, r.value, r.reason) for r in refused] == [("soil_ph", 6.5, "unknown_metric")]


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


def test_checks_run_device_then_topic_then_per_reading_metric_unit_and_time() -> None:
    # A message or reading with everything wrong reports the first check it fails, so the reason is predictable.
    bad = Telemetry(
        (Reading(NOW + timedelta(days=1), "heart_rate", 1.0, "mV"),),
        texts=(TextReading(TS, "note", "x"),),
    )
    elsewhere = parse_topic(telemetry_topic("hue", "agriculture", "probe-hn-001"))
    assert rejection(bad, device(status="decommissioned"), address=elsewhere).reason == "device_decommissioned"
    assert rejection(bad, address=elsewhere).reason == "topic_mismatch"
    rows, refused = split(bad)
    assert rows == []
    assert [(r.metric, r.reason) for r in refused] == [("heart_rate", "unknown_metric"), ("note", "unknown_metric")]
    wrong_unit_future = Telemetry((Reading(NOW + timedelta(days=1), "soil_moisture", 1.0, "mV"),))
    assert refusal(wrong_unit_future).reason == "unit_mismatch"  # unit before time


def test_a_message_whose_every_reading_is_bad_stores_nothing_and_lists_each() -> None:
    telemetry = decoded(encode_json({"soil_ph": 6.5, "leaf_wetness": 0.2}, seq=1, ts=TS))
    rows, refused = split(telemetry)
    assert rows == []
    assert [r.metric for r in refused] == ["soil_ph", "leaf_wetness"]


# --------------------------------------------------------------------------------------------- reason codes


def test_validation_errors_carry_a_stable_reason_and_a_detail() -> None:
    error = rejection(one("soil_moisture", 70.0), device(status="decommissioned"))
    assert isinstance(error, IocError)
    assert not isinstance(error, DecodeError)  # the quarantine tells decoding from validation by reason only
    assert str(error) == "device_decommissioned: probe-hn-001"
    assert ValidationError("unknown_metric").detail == ""
    assert str(ValidationError("unknown_metric")) == "unknown_metric"


def test_the_reason_codes_are_the_documented_set() -> None:
    later = NOW + timedelta(days=1)
    whole = {
        "device_decommissioned": rejection(one("soil_moisture", 1.0), device(status="decommissioned")),
        "credential_revoked": rejection(
            one("soil_moisture", 1.0), dataclasses.replace(device(), credential_status="revoked")
        ),
        "topic_mismatch": rejection(
            one("soil_moisture", 1.0), address=parse_topic(telemetry_topic("hue", "agriculture", "probe-hn-001"))
        ),
    }
    text = Telemetry((), texts=(TextReading(TS, "soil_moisture", "wet"),))
    each = {
        "unknown_metric": refusal(one("heart_rate", 1.0)),
        "text_value": refusal(text),
        "unit_mismatch": refusal(one("soil_moisture", 1.0, unit="Cel")),
        "timestamp_in_future": refusal(one("soil_moisture", 1.0, ts=later)),
        "timestamp_before_device": refusal(one("soil_moisture", 1.0, ts=datetime(2020, 1, 1, tzinfo=UTC))),
    }
    assert {name: error.reason for name, error in whole.items()} == {name: name for name in MESSAGE_REASONS}
    assert {name: r.reason for name, r in each.items()} == {name: name for name in READING_REASONS}
    # Validation reasons never collide with the decoder's: a quarantined row's reason says which step refused it.
    assert VALIDATION_REASONS.isdisjoint(DECODE_REASONS)


# --------------------------------------------------------------------------------------------- quarantine summary


def _refused(metric: str, reason: str, detail: str) -> QuarantinedReading:
    return QuarantinedReading(metric, TS, 1.0, reason, detail)


def test_a_partial_message_is_summed_up_with_the_first_reason_and_each_problem_once_with_its_count() -> None:
    refused = [
        _refused("humidty", "unknown_metric", "metric 'humidty' is not a metric of x (did you mean 'humidity'?)"),
        _refused("pm10", "timestamp_in_future", "timestamp T is 3600 s ahead"),
        _refused("co2", "timestamp_in_future", "timestamp T is 3600 s ahead"),
    ]
    assert summarize_refusals(refused, stored=2) == (
        "unknown_metric",
        "3 of 5 readings refused, 2 stored: timestamp T is 3600 s ahead (x2); "
        "metric 'humidty' is not a metric of x (did you mean 'humidity'?)",
    )


def test_a_message_with_one_refused_reading_and_nothing_stored_reads_as_that_reading() -> None:
    refused = [_refused("heart_rate", "unknown_metric", "metric 'heart_rate' is not a metric of x")]
    assert summarize_refusals(refused, stored=0) == ("unknown_metric", "metric 'heart_rate' is not a metric of x")
    both = [*refused, _refused("pulse", "unknown_metric", "metric 'pulse' is not a metric of x")]
    assert summarize_refusals(both, stored=0)[1] == (
        "all 2 readings refused: metric 'heart_rate' is not a metric of x; metric 'pulse' is not a metric of x"
    )


def test_a_summary_names_five_problems_then_counts_the_rest() -> None:
    refused = [_refused(f"m{i}", "unknown_metric", f"metric 'm{i}' unknown") for i in range(8)]
    detail = summarize_refusals(refused, stored=1)[1]
    assert detail == (
        "8 of 9 readings refused, 1 stored: metric 'm0' unknown; metric 'm1' unknown; metric 'm2' unknown; "
        "metric 'm3' unknown; metric 'm4' unknown; and 3 more problems"
    )
    with pytest.raises(ValueError, match="no refused readings"):
        summarize_refusals([], stored=3)


def test_a_refused_reading_is_kept_as_json_and_read_back_the_same() -> None:
    # The quarantine entry keeps refused readings in a jsonb column: what goes in comes back, a text value as null.
    number = QuarantinedReading("humidty", TS, 55.0, "unknown_metric", "metric 'humidty' is not a metric of x")
    text = QuarantinedReading("humidity", TS, None, "text_value", "metric 'humidity' has a text value")
    for refused in (number, text):
        doc = json.loads(json.dumps(refused.as_json()))
        assert QuarantinedReading.from_json(doc) == refused
    assert number.as_json()["ts"] == "2026-11-22T08:00:00.250000+00:00"
    long = dataclasses.replace(number, detail="x" * 5000)
    assert len(str(long.as_json()["detail"])) == READING_DETAIL_KEEP_CHARS
