"""SenML (RFC 8428) telemetry in JSON and CBOR: the RFC's examples, base fields, times, and round trips."""

from __future__ import annotations

import json
import math
import random
import string
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import cbor2
import pytest

from core.errors import DecodeError
from protocol.telemetry import (
    CONTENT_TYPE_SENML_CBOR,
    CONTENT_TYPE_SENML_JSON,
    SENML_CBOR_LABELS,
    Reading,
    Telemetry,
    TextReading,
    decode_telemetry,
    encode_senml_cbor,
    encode_senml_json,
)

NOW = datetime(2026, 11, 22, 9, 0, 0, 500000, tzinfo=UTC)
TS = datetime(2026, 11, 22, 8, 0, 0, 250000, tzinfo=UTC)


def to_cbor(pack: object) -> bytes:
    """The CBOR form of a JSON-shaped pack: known labels become RFC 8428 section 6 integers."""
    assert isinstance(pack, list)
    return cbor2.dumps(
        [
            {SENML_CBOR_LABELS.get(key, key): value for key, value in record.items()}
            if isinstance(record, dict)
            else record
            for record in pack
        ]
    )


def decode_both(pack: list[dict[str, object]], *, now: datetime | None = NOW) -> Telemetry:
    """Decode the pack as SenML JSON and as SenML CBOR; both must give the same result."""
    from_json = decode_telemetry(json.dumps(pack).encode(), content_type=CONTENT_TYPE_SENML_JSON, now=now)
    from_cbor = decode_telemetry(to_cbor(pack), content_type=CONTENT_TYPE_SENML_CBOR, now=now)
    assert from_json == from_cbor
    return from_json


def reasons(pack: object) -> set[str]:
    """Reasons for the JSON and the CBOR form of the pack (one element when they agree)."""
    found = set()
    for payload, content_type in (
        (json.dumps(pack).encode(), CONTENT_TYPE_SENML_JSON),
        (to_cbor(pack) if isinstance(pack, list) else cbor2.dumps(pack), CONTENT_TYPE_SENML_CBOR),
    ):
        with pytest.raises(DecodeError) as caught:
            decode_telemetry(payload, content_type=content_type, now=NOW)
        found.add(caught.value.reason)
    return found


def test_rfc8428_5_1_1_single_datapoint_has_no_metric_name() -> None:
    # The name is just the device URN; its last segment "10e2073a01080063" is not a metric name.
    assert reasons([{"n": "urn:dev:ow:10e2073a01080063", "u": "Cel", "v": 23.1}]) == {"bad_metric_name"}


def test_rfc8428_5_1_2_multiple_datapoints() -> None:
    pack: list[dict[str, object]] = [
        {"bn": "urn:dev:ow:10e2073a01080063:", "n": "voltage", "u": "V", "v": 120.1},
        {"n": "current", "u": "A", "v": 1.2},
    ]
    assert decode_both(pack) == Telemetry(
        (Reading(NOW, "voltage", 120.1, "V"), Reading(NOW, "current", 1.2, "A")),
    )


def test_rfc8428_5_1_3_multiple_datapoints_and_times() -> None:
    pack: list[dict[str, object]] = [
        {
            "bn": "urn:dev:ow:10e2073a0108006:",
            "bt": 1.276020076001e09,
            "bu": "A",
            "bver": 5,
            "n": "voltage",
            "u": "V",
            "v": 120.1,
        },
        {"n": "current", "t": -5, "v": 1.2},
        {"n": "current", "t": -4, "v": 1.3},
        {"n": "current", "t": -3, "v": 1.4},
        {"n": "current", "t": -2, "v": 1.5},
        {"n": "current", "t": -1, "v": 1.6},
        {"n": "current", "v": 1.7},
    ]
    base = datetime(2010, 6, 8, 18, 1, 16, 1000, tzinfo=UTC)  # Tue Jun 8 18:01:16.001 UTC 2010
    assert decode_both(pack).readings == (
        Reading(base, "voltage", 120.1, "V"),
        Reading(base - timedelta(seconds=5), "current", 1.2, "A"),
        Reading(base - timedelta(seconds=4), "current", 1.3, "A"),
        Reading(base - timedelta(seconds=3), "current", 1.4, "A"),
        Reading(base - timedelta(seconds=2), "current", 1.5, "A"),
        Reading(base - timedelta(seconds=1), "current", 1.6, "A"),
        Reading(base, "current", 1.7, "A"),
    )


def test_rfc8428_5_1_5_measurements_with_offsets() -> None:
    # The RFC's humidity example, with a metric name added to its base name.
    pack: list[dict[str, object]] = [
        {"bn": "urn:dev:ow:10e2073a01080063:humidity", "bt": 1.320067464e09, "bu": "%RH", "v": 20},
        {"t": 60, "v": 20.3},
        {"t": 120, "v": 20.7},
        {"u": "%EL", "t": 150, "v": 98},
        {"t": 180, "v": 21.2},
    ]
    start = datetime(2011, 10, 31, 13, 24, 24, tzinfo=UTC)  # Mon Oct 31 13:24:24 UTC 2011
    assert decode_both(pack).readings == (
        Reading(start, "humidity", 20.0, "%RH"),
        Reading(start + timedelta(seconds=60), "humidity", 20.3, "%RH"),
        Reading(start + timedelta(seconds=120), "humidity", 20.7, "%RH"),
        Reading(start + timedelta(seconds=150), "humidity", 98.0, "%EL"),
        Reading(start + timedelta(seconds=180), "humidity", 21.2, "%RH"),
    )


def test_rfc8428_5_1_6_multiple_data_types() -> None:
    pack: list[dict[str, object]] = [
        {"bn": "urn:dev:ow:10e2073a01080063:", "n": "temp", "u": "Cel", "v": 23.1},
        {"n": "label", "vs": "Machine Room"},
        {"n": "open", "vb": False},
        {"n": "nfc-reader", "vd": "aGkgCg"},
    ]
    assert decode_both(pack) == Telemetry(
        readings=(Reading(NOW, "temp", 23.1, "Cel"), Reading(NOW, "open", 0.0, None)),
        texts=(TextReading(NOW, "label", "Machine Room"),),
        skipped_records=1,  # the data value
    )


def test_rfc8428_5_1_7_collection_of_resources() -> None:
    pack: list[dict[str, object]] = [
        {"bn": "2001:db8::2/", "bt": 1.320078429e09, "n": "temperature", "u": "Cel", "v": 25.2},
        {"n": "humidity", "u": "%RH", "v": 30},
        {"bn": "2001:db8::1/", "n": "temperature", "u": "Cel", "v": 12.3},
        {"n": "humidity", "u": "%RH", "v": 67},
    ]
    at = datetime(2011, 10, 31, 16, 27, 9, tzinfo=UTC)
    # The last record keeps the base time of the first one.
    assert decode_both(pack).readings == (
        Reading(at, "temperature", 25.2, "Cel"),
        Reading(at, "humidity", 30.0, "%RH"),
        Reading(at, "temperature", 12.3, "Cel"),
        Reading(at, "humidity", 67.0, "%RH"),
    )


def test_rfc8428_5_1_9_base_only_record_then_values() -> None:
    pack: list[dict[str, object]] = [
        {"bn": "urn:dev:ow:10e2073a01080063:"},
        {"n": "temp", "u": "Cel", "v": 23.1},
        {"n": "heat", "u": "/", "v": 1},
        {"n": "fan", "u": "/", "v": 0},
    ]
    assert decode_both(pack).readings == (
        Reading(NOW, "temp", 23.1, "Cel"),
        Reading(NOW, "heat", 1.0, "/"),
        Reading(NOW, "fan", 0.0, "/"),
    )


def test_relative_times_use_now() -> None:
    pack: list[dict[str, object]] = [
        {"bn": "dev-1/", "n": "a", "t": -5, "v": 1},
        {"n": "a", "t": 0.25, "v": 2},
        {"n": "a", "v": 3},
    ]
    assert [r.ts for r in decode_both(pack).readings] == [
        NOW - timedelta(seconds=5),
        NOW + timedelta(milliseconds=250),
        NOW,
    ]
    # A relative base time shifts the relative record times.
    shifted = decode_both([{"bt": -60, "n": "a", "t": -1.5, "v": 1}]).readings
    assert shifted[0].ts == NOW - timedelta(seconds=61.5)
    # Just below 2**28 is still relative (8.5 years ahead), 2**28 and above is absolute.
    assert decode_both([{"n": "a", "t": 2**28 - 1, "v": 1}]).readings[0].ts == NOW + timedelta(seconds=2**28 - 1)
    assert reasons([{"n": "a", "t": 2**28, "v": 1}]) == {"bad_timestamp"}  # 1978


def test_relative_time_without_now_reads_the_clock() -> None:
    before = datetime.now(UTC)
    payload = b'[{"n": "a", "t": -10, "v": 1}]'
    (reading,) = decode_telemetry(payload, content_type=CONTENT_TYPE_SENML_JSON).readings
    after = datetime.now(UTC)
    assert before - timedelta(seconds=10) <= reading.ts <= after - timedelta(seconds=10)


def test_now_must_be_aware_and_is_converted_to_utc() -> None:
    with pytest.raises(ValueError, match="aware"):
        decode_telemetry(b'[{"n":"a","v":1}]', content_type=CONTENT_TYPE_SENML_JSON, now=datetime(2026, 1, 1))
    plus7 = NOW.astimezone(timezone(timedelta(hours=7)))
    (reading,) = decode_telemetry(b'[{"n":"a","v":1}]', content_type=CONTENT_TYPE_SENML_JSON, now=plus7).readings
    assert reading.ts == NOW
    assert reading.ts.tzinfo is UTC


def test_base_value_and_units() -> None:
    pack: list[dict[str, object]] = [
        {"bn": "urn:dev:mac:0024befffe804ff1:", "bt": 1795334400.25, "bu": "Cel", "bv": 20, "n": "t1", "v": 1.5},
        {"n": "t2", "v": -0.5, "u": "K"},
        {"n": "door", "vb": True},  # base value is for numeric values only
        {"bv": 0, "n": "t3", "v": 7},
    ]
    assert decode_both(pack).readings == (
        Reading(TS, "t1", 21.5, "Cel"),
        Reading(TS, "t2", 19.5, "K"),
        Reading(TS, "door", 1.0, "Cel"),
        Reading(TS, "t3", 7.0, "Cel"),
    )


def test_names_after_last_colon_or_slash() -> None:
    pack: list[dict[str, object]] = [
        {"bn": "urn:dev:ow:abc:", "n": "x", "v": 1},
        {"bn": "meter-7/", "n": "y", "v": 2},
        {"bn": "site/meter-7/", "n": "z", "v": 3},
        {"bn": "", "n": "plain", "v": 4},
        {"bn": "urn:dev:ow:abc", "n": ":w", "v": 5},
        {"bn": "urn:a/b:", "n": "v_2", "v": 6},
    ]
    assert [r.metric for r in decode_both(pack).readings] == ["x", "y", "z", "plain", "w", "v_2"]


def test_sum_records_are_skipped_and_counted() -> None:
    pack: list[dict[str, object]] = [
        {"bn": "d/", "n": "energy", "s": 1234.5},
        {"n": "power", "v": 2.5, "s": 10},  # a value beside a sum is kept
    ]
    telemetry = decode_both(pack)
    assert telemetry.readings == (Reading(NOW, "power", 2.5, None),)
    assert telemetry.skipped_records == 1


def test_pack_of_only_skipped_records_is_empty() -> None:
    assert reasons([{"n": "a", "s": 1}, {"n": "b", "vd": "aGk"}]) == {"empty_readings"}


def test_text_values_are_kept_apart() -> None:
    telemetry = decode_both([{"bn": "d/", "bt": 1795334400.25, "n": "status", "vs": "ok"}, {"n": "v", "v": 1}])
    assert telemetry.texts == (TextReading(TS, "status", "ok"),)
    assert telemetry.readings == (Reading(TS, "v", 1.0, None),)


@pytest.mark.parametrize(
    ("pack", "reason"),
    [
        ({"n": "a", "v": 1}, "invalid_senml"),  # not an array
        ([], "empty_readings"),
        ([1], "invalid_senml"),
        ([[{"n": "a", "v": 1}]], "invalid_senml"),
        ([{"n": "a"}], "invalid_senml"),  # no value
        ([{"n": "a", "u": "V", "t": 1}], "invalid_senml"),
        ([{"n": "a", "v": 1, "vs": "x"}], "invalid_senml"),  # two values
        ([{"n": "a", "vb": True, "vd": "aGk"}], "invalid_senml"),
        ([{"v": 1}], "invalid_senml"),  # empty name
        ([{"bn": "", "n": "", "v": 1}], "invalid_senml"),
        ([{"n": "a", "v": 1, "bver": 11}], "invalid_senml"),
        ([{"n": "a", "v": 1, "bver": "10"}], "invalid_senml"),
        ([{"n": "a", "v": 1, "bver": 0}], "invalid_senml"),
        ([{"n": "Temp", "v": 1}], "bad_metric_name"),
        ([{"bn": "dev/", "v": 1}], "bad_metric_name"),  # nothing after the slash
        ([{"n": "urn:dev:x:nfc-reader", "v": 1}], "bad_metric_name"),
        ([{"n": "a", "v": "1"}], "wrong_type"),
        ([{"n": "a", "v": True}], "wrong_type"),
        ([{"n": "a", "v": None}], "wrong_type"),
        ([{"n": "a", "vb": 1}], "wrong_type"),
        ([{"n": "a", "vs": 1}], "wrong_type"),
        ([{"n": 7, "v": 1}], "wrong_type"),
        ([{"bn": 7, "n": "a", "v": 1}], "wrong_type"),
        ([{"n": "a", "u": 7, "v": 1}], "wrong_type"),
        ([{"bu": ["V"], "n": "a", "v": 1}], "wrong_type"),
        ([{"n": "a", "t": "1795334400", "v": 1}], "wrong_type"),
        ([{"n": "a", "t": True, "v": 1}], "wrong_type"),
        ([{"bv": "1", "n": "a", "v": 1}], "wrong_type"),
        ([{"n": "a", "v": 10**400}], "non_finite_value"),
        ([{"bv": 1.7e308, "n": "a", "v": 1.7e308}], "non_finite_value"),
        ([{"bt": "now", "n": "a", "v": 1}], "bad_senml_base_time"),
        ([{"bt": None, "n": "a", "v": 1}], "bad_senml_base_time"),
        ([{"bt": True, "n": "a", "v": 1}], "bad_senml_base_time"),
        ([{"bt": 10**400, "n": "a", "v": 1}], "bad_senml_base_time"),
        ([{"bt": 7.3e9, "n": "a", "v": 1}], "bad_senml_base_time"),  # year 2201
        ([{"bt": 9.0e8, "n": "a", "v": 1}], "bad_senml_base_time"),  # 1998
        ([{"bt": 1795334400, "n": "a", "t": -1e9, "v": 1}], "bad_senml_base_time"),  # resolves to 1995
        ([{"bt": -1e12, "n": "a", "v": 1}], "bad_senml_base_time"),  # relative, 31,700 years ago
        ([{"n": "a", "t": 9.9e9, "v": 1}], "bad_timestamp"),
        ([{"n": "a", "t": 3e8, "v": 1}], "bad_timestamp"),  # absolute 1979
        ([{"n": "a", "t": -1e20, "v": 1}], "bad_timestamp"),  # relative, before year 1
        ([{"n": "a", "t": 10**400, "v": 1}], "bad_timestamp"),
        ([{"n": "a", "v": 1, "bad_": 1}], "invalid_senml"),  # must-understand label
        ([{}], "invalid_senml"),
        ([{"n": "a", "v": 1}, {"note": "x"}], "invalid_senml"),  # no SenML field at all
        ([{"n": "a", "v": 1}] * 10_001, "too_many_readings"),
    ],
)
def test_senml_errors(pack: object, reason: str) -> None:
    assert reasons(pack) == {reason}


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_senml_json_non_finite_literals(literal: str) -> None:
    for pack in (f'[{{"n":"a","v":{literal}}}]', f'[{{"bt":{literal},"n":"a","v":1}}]'):
        with pytest.raises(DecodeError) as caught:
            decode_telemetry(pack.encode(), content_type=CONTENT_TYPE_SENML_JSON, now=NOW)
        assert caught.value.reason == "non_finite_value"


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ({0: "a", 2: math.nan}, "non_finite_value"),
        ({0: "a", 2: -math.inf}, "non_finite_value"),
        ({0: "a", 2: Decimal("1.5")}, "wrong_type"),  # tag 4, decimal fraction
        ({0: "a", 2: 2**1100}, "non_finite_value"),  # bignum beyond a double
        ({0: "a", 2: b"\x01"}, "wrong_type"),
        ({-3: math.nan, 0: "a", 2: 1}, "bad_senml_base_time"),
        ({-3: datetime(2026, 1, 1, tzinfo=UTC), 0: "a", 2: 1}, "bad_senml_base_time"),  # tag 1 is not a number
        ({0: "a", 2: 1, 6: math.inf}, "bad_timestamp"),
        ({"n": "a", "v": 1}, "invalid_senml"),  # CBOR uses integer labels; string ones are extensions
        ({0: "a", 2: 1, "x_": 1}, "invalid_senml"),  # must-understand extension
        ({True: "a", 2: 1}, "invalid_senml"),  # a boolean key is not label 1 (unit) or a name
    ],
)
def test_senml_cbor_specific_errors(record: dict[object, object], reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_telemetry(cbor2.dumps([record]), content_type=CONTENT_TYPE_SENML_CBOR, now=NOW)
    assert caught.value.reason == reason


def test_senml_cbor_ignores_unknown_labels() -> None:
    payload = cbor2.dumps([{0: "a", 2: 1.5, 99: "x", -99: 1, "extra": 2}])
    assert decode_telemetry(payload, content_type=CONTENT_TYPE_SENML_CBOR, now=NOW).readings == (
        Reading(NOW, "a", 1.5, None),
    )


@pytest.mark.parametrize(
    "payload",
    [
        b"\x81",  # array of one, truncated
        b"\x81\xa1\x00",  # map truncated
        b"\x1c",  # reserved additional information
        b"\x81\xa2\x00\x61a\x02\x01\x00",  # one trailing byte
        b"\x81" * 500 + b"\x80",  # nesting deeper than cbor2 allows
        b"\x81\xa2\x00\x62\xff\xfe\x02\x01",  # invalid UTF-8 in a text string
        bytes.fromhex("c48250812032fa226241c18171bf7ff5f500c0616261f5c0"),  # decimal fraction cbor2 chokes on
        bytes.fromhex("d81e820100"),  # rational with a zero denominator
        bytes.fromhex("c5ab8410d9d86442c3210222fac0d819d81e"),  # found by fuzzing
    ],
)
def test_invalid_cbor(payload: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_telemetry(payload, content_type=CONTENT_TYPE_SENML_CBOR, now=NOW)
    assert caught.value.reason == "invalid_cbor"


def test_topic_suffix_sniffs_json_or_cbor() -> None:
    pack: list[dict[str, object]] = [{"bn": "d/", "n": "a", "v": 1.5}]
    expected = (Reading(NOW, "a", 1.5, None),)
    as_json = json.dumps(pack).encode()
    for payload in (as_json, b" \n" + as_json, to_cbor(pack)):
        assert decode_telemetry(payload, content_type=None, senml_topic=True, now=NOW).readings == expected
    # The content type wins over the topic suffix.
    with pytest.raises(DecodeError) as caught:
        decode_telemetry(as_json, content_type=CONTENT_TYPE_SENML_CBOR, senml_topic=True, now=NOW)
    assert caught.value.reason == "invalid_cbor"
    # SenML content type on a plain telemetry topic.
    assert decode_telemetry(as_json, content_type=CONTENT_TYPE_SENML_JSON, now=NOW).readings == expected
    assert decode_telemetry(to_cbor(pack), content_type="application/senml+cbor; x=1", now=NOW).readings == expected


def test_encode_senml_json_shape() -> None:
    payload = encode_senml_json("meter-7", TS, {"voltage": 230.5, "current": 1}, {"voltage": "V"})
    assert json.loads(payload) == [
        {"bn": "meter-7/", "bt": 1795334400.25, "n": "voltage", "u": "V", "v": 230.5},
        {"n": "current", "v": 1},
    ]


def test_encode_senml_cbor_uses_integer_labels() -> None:
    payload = encode_senml_cbor("meter-7", TS, {"voltage": 230.5}, {"voltage": "V"})
    assert cbor2.loads(payload) == [{-2: "meter-7/", -3: 1795334400.25, 0: "voltage", 1: "V", 2: 230.5}]


@pytest.mark.parametrize("encoder", [encode_senml_json, encode_senml_cbor])
def test_senml_encoders_reject_bad_input(encoder: object) -> None:
    assert callable(encoder)
    for device_id, ts, readings in [
        ("bad/id", TS, {"a": 1.0}),
        ("d", TS, {}),
        ("d", TS, {"A": 1.0}),
        ("d", TS, {"a": math.nan}),
        ("d", datetime(2026, 1, 1), {"a": 1.0}),
    ]:
        with pytest.raises(ValueError):
            encoder(device_id, ts, readings)


def test_senml_round_trip_random() -> None:
    rng = random.Random(8428)
    start = datetime(2000, 1, 1, tzinfo=UTC)
    span_us = int((datetime(2100, 12, 31, tzinfo=UTC) - start).total_seconds()) * 1_000_000
    for _ in range(1000):
        device_id = "".join(rng.choices(string.ascii_letters + string.digits + "_.-", k=rng.randint(1, 64)))
        ts = start + timedelta(microseconds=rng.randrange(span_us))
        readings: dict[str, float] = {}
        for _ in range(rng.randint(1, 10)):
            name = rng.choice(string.ascii_lowercase) + "".join(
                rng.choices(string.ascii_lowercase + string.digits + "_", k=rng.randint(0, 20))
            )
            readings[name] = rng.randint(-1000, 1000) if rng.random() < 0.2 else rng.uniform(-1e9, 1e9)
        units = {name: rng.choice(["V", "A", "Cel", "%RH", "/"]) for name in readings if rng.random() < 0.5}
        expected = tuple(Reading(ts, name, float(value), units.get(name)) for name, value in readings.items())
        for payload, content_type in (
            (encode_senml_json(device_id, ts, readings, units), CONTENT_TYPE_SENML_JSON),
            (encode_senml_cbor(device_id, ts, readings, units), CONTENT_TYPE_SENML_CBOR),
        ):
            telemetry = decode_telemetry(payload, content_type=content_type, now=NOW)
            assert telemetry == Telemetry(expected)
            # Also through the topic-suffix sniffing, as a device without MQTT 5 properties would send it.
            assert decode_telemetry(payload, content_type=None, senml_topic=True, now=NOW) == telemetry
