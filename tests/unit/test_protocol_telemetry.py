"""The JSON telemetry contract: decoding, every reason code, timestamps, and encoder round trips."""

from __future__ import annotations

import json
import math
import random
import string
from datetime import UTC, datetime, timedelta, timezone

import cbor2
import pytest

from core.errors import DecodeError
from protocol.telemetry import (
    CONTENT_TYPE_JSON,
    CONTENT_TYPE_SENML_CBOR,
    CONTENT_TYPE_SENML_JSON,
    DECODE_REASONS,
    MAX_READINGS_PER_MESSAGE,
    Reading,
    Telemetry,
    decode_telemetry,
    encode_json,
    encode_json_batch,
    format_timestamp,
    is_metric_name,
    parse_iso_timestamp,
)

TS = datetime(2026, 11, 22, 8, 0, 0, 250000, tzinfo=UTC)
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


def decode(payload: bytes | str, **kwargs: object) -> Telemetry:
    raw = payload.encode() if isinstance(payload, str) else payload
    options: dict[str, object] = {"content_type": None, "now": NOW, **kwargs}
    return decode_telemetry(raw, **options)  # type: ignore[arg-type]


def reason_of(payload: bytes | str, **kwargs: object) -> str:
    with pytest.raises(DecodeError) as caught:
        decode(payload, **kwargs)
    return caught.value.reason


def message(readings: object = None, *, ts: object = "2026-11-22T08:00:00.250Z", **extra: object) -> str:
    doc: dict[str, object] = {"ts": ts, "readings": {"soil_moisture": 31.2} if readings is None else readings}
    doc.update(extra)
    return json.dumps(doc)


def test_contract_example() -> None:
    payload = '{"seq": 17, "ts": "2026-11-22T08:00:00.250Z", "readings": {"soil_moisture": 31.2, "battery_v": 3.71}}'
    telemetry = decode(payload)
    assert telemetry == Telemetry(
        (
            Reading(TS, "soil_moisture", 31.2, None, 17),
            Reading(TS, "battery_v", 3.71, None, 17),
        )
    )
    assert telemetry.readings[0].ts.tzinfo is UTC
    assert telemetry.texts == ()


def test_batch_keeps_order_and_per_message_seq_and_ts() -> None:
    payload = json.dumps(
        {
            "batch": [
                {"seq": 1, "ts": "2026-11-22T08:00:00Z", "readings": {"a": 1, "b": 2.5}},
                {"seq": 2, "ts": 1795334460, "readings": {"a": -3}},
                {"ts": 1795334520250, "readings": {"a": 0}},
            ]
        }
    )
    readings = decode(payload).readings
    base = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    assert [(r.metric, r.value, r.seq, r.ts) for r in readings] == [
        ("a", 1.0, 1, base),
        ("b", 2.5, 1, base),
        ("a", -3.0, 2, base + timedelta(minutes=1)),
        ("a", 0.0, None, base + timedelta(minutes=2, milliseconds=250)),
    ]
    assert all(isinstance(r.value, float) for r in readings)


@pytest.mark.parametrize(
    ("raw_ts", "expected"),
    [
        ("2026-11-22T08:00:00.250Z", TS),
        ("2026-11-22T08:00:00.250z", TS),
        ("2026-11-22T15:00:00.250+07:00", TS),
        ("2026-11-22T03:30:00.250-04:30", TS),
        ("2026-11-22T08:00:00.250+00:00", TS),
        ("2026-11-22T08:00:00.250123Z", TS + timedelta(microseconds=123)),
        ("2026-11-22 08:00:00.250Z", TS),
        (1795334400, TS - timedelta(milliseconds=250)),
        (1795334400.25, TS),
        (1795334400250, TS),
        (1795334400250.0, TS),
        (1795334400123.5, TS - timedelta(microseconds=126500)),
        (946684800, datetime(2000, 1, 1, tzinfo=UTC)),
        (4133980799, datetime(2100, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("2100-12-31T23:59:59.999Z", datetime(2100, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)),
    ],
)
def test_timestamp_forms(raw_ts: object, expected: datetime) -> None:
    (reading,) = decode(message(ts=raw_ts)).readings
    assert reading.ts == expected
    assert reading.ts.utcoffset() == timedelta(0)
    assert reading.ts.tzinfo is UTC


@pytest.mark.parametrize(
    "raw_ts",
    [
        "2026-11-22T08:00:00.250",  # naive
        "2026-11-22",  # naive date
        "yesterday",
        "",
        "2026-13-01T00:00:00Z",
        "1999-12-31T23:59:59.999Z",
        "2000-01-01T00:30:00+01:00",  # 1999 in UTC
        "2101-01-01T00:00:00Z",
        "9999-12-31T23:59:59-01:00",  # overflows when moved to UTC
        946684799,
        4133980800,
        50_000_000_000,  # neither plausible seconds nor milliseconds
        -1,
        0,
        99_999_999_999_999_999_999,
    ],
)
def test_bad_timestamps(raw_ts: object) -> None:
    assert reason_of(message(ts=raw_ts)) == "bad_timestamp"


def test_non_finite_timestamps() -> None:
    assert reason_of('{"ts": 1e400, "readings": {"a": 1}}') == "bad_timestamp"  # parses to inf
    assert reason_of('{"ts": NaN, "readings": {"a": 1}}') == "non_finite_value"


@pytest.mark.parametrize("raw_ts", [True, None, [1], {"s": 1}])
def test_timestamp_of_wrong_type(raw_ts: object) -> None:
    assert reason_of(message(ts=raw_ts)) == "wrong_type"


@pytest.mark.parametrize("seq", [-1, 1.0, "17", True, 2**63, [1]])
def test_bad_seq(seq: object) -> None:
    assert reason_of(message(seq=seq)) == "wrong_type"


def test_seq_bounds_and_null() -> None:
    assert decode(message(seq=0)).readings[0].seq == 0
    assert decode(message(seq=2**63 - 1)).readings[0].seq == 2**63 - 1
    assert decode(message(seq=None)).readings[0].seq is None
    assert decode(message()).readings[0].seq is None


def test_values() -> None:
    readings = decode(message({"a": 0, "b": -1.5e-300, "c": 1.7976931348623157e308, "d": 10**20})).readings
    assert [r.value for r in readings] == [0.0, -1.5e-300, 1.7976931348623157e308, 1e20]


@pytest.mark.parametrize(
    ("readings", "reason"),
    [
        ({"a": True}, "wrong_type"),
        ({"a": None}, "wrong_type"),
        ({"a": "3.2"}, "wrong_type"),
        ({"a": [1]}, "wrong_type"),
        ({"a": {"v": 1}}, "wrong_type"),
        ({"a": 10**400}, "non_finite_value"),
        ({"A": 1}, "bad_metric_name"),
        ({"1a": 1}, "bad_metric_name"),
        ({"_a": 1}, "bad_metric_name"),
        ({"a-b": 1}, "bad_metric_name"),
        ({"": 1}, "bad_metric_name"),
        ({"a" * 65: 1}, "bad_metric_name"),
        ({"témp": 1}, "bad_metric_name"),
        ({}, "empty_readings"),
        ([1, 2], "wrong_type"),
        ("x", "wrong_type"),
    ],
)
def test_bad_readings(readings: object, reason: str) -> None:
    assert reason_of(message(readings)) == reason


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_literals(literal: str) -> None:
    assert reason_of(f'{{"ts": 1795334400, "readings": {{"a": {literal}}}}}') == "non_finite_value"


def test_overflowing_float_literal_is_non_finite() -> None:
    assert reason_of('{"ts": 1795334400, "readings": {"a": 1e999}}') == "non_finite_value"


def test_metric_name_rules() -> None:
    assert is_metric_name("a")
    assert is_metric_name("a" * 64)
    assert is_metric_name("battery_v2")
    assert not is_metric_name("a" * 65)
    assert not is_metric_name("Battery")
    assert not is_metric_name("a\n")


# One payload per reason: the quarantine table relies on each reason being distinct and stable.
REASON_CORPUS: dict[str, tuple[bytes, dict[str, object]]] = {
    "payload_too_large": (b'{"ts": 1795334400, "readings": {"a": 1}}', {"max_bytes": 10}),
    "empty_payload": (b"", {}),
    "invalid_utf8": (b'{"ts": 1795334400, "readings": {"\xff": 1}}', {}),
    "invalid_json": (b'{"ts": 1795334400, "readings": {"a": 1}', {}),
    "not_an_object": (b"[1, 2]", {}),
    "missing_field": (b'{"readings": {"a": 1}}', {}),
    "wrong_type": (b'{"ts": 1795334400, "readings": {"a": "1"}}', {}),
    "non_finite_value": (b'{"ts": 1795334400, "readings": {"a": NaN}}', {}),
    "bad_metric_name": (b'{"ts": 1795334400, "readings": {"Temp": 1}}', {}),
    "bad_timestamp": (b'{"ts": "2026-11-22T08:00:00", "readings": {"a": 1}}', {}),
    "empty_readings": (b'{"ts": 1795334400, "readings": {}}', {}),
    "invalid_senml": (b'[{"n": "a"}]', {"content_type": CONTENT_TYPE_SENML_JSON}),
    "bad_senml_base_time": (b'[{"bt": "now", "n": "a", "v": 1}]', {"content_type": CONTENT_TYPE_SENML_JSON}),
    "invalid_cbor": (b"\x81\xa1", {"content_type": CONTENT_TYPE_SENML_CBOR}),
    "unsupported_content_type": (b'{"ts": 1795334400, "readings": {"a": 1}}', {"content_type": "text/plain"}),
    "too_many_readings": (
        json.dumps({"ts": 1795334400, "readings": {f"m{i}": i for i in range(10_001)}}).encode(),
        {},
    ),
}


def test_reason_corpus_covers_every_reason_once() -> None:
    assert set(REASON_CORPUS) == set(DECODE_REASONS)
    assert len(DECODE_REASONS) == len(set(DECODE_REASONS)) == 16
    seen = {reason_of(payload, **options) for payload, options in REASON_CORPUS.values()}
    assert seen == set(DECODE_REASONS)


@pytest.mark.parametrize("expected", sorted(REASON_CORPUS))
def test_reason_corpus(expected: str) -> None:
    payload, options = REASON_CORPUS[expected]
    with pytest.raises(DecodeError) as caught:
        decode(payload, **options)
    assert caught.value.reason == expected
    assert str(caught.value).startswith(expected)


def test_size_limit_is_inclusive() -> None:
    payload = message()
    assert decode(payload, max_bytes=len(payload)).readings[0].value == 31.2
    assert reason_of(payload, max_bytes=len(payload) - 1) == "payload_too_large"
    assert reason_of(b" " * (256 * 1024 + 1)) == "payload_too_large"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ("", "empty_payload"),
        ("   ", "invalid_json"),
        ("\ufeff" + message(), "invalid_json"),  # a BOM is not JSON
        ("{'ts': 1}", "invalid_json"),
        (message() + " x", "invalid_json"),
        ("[" * 100_000 + "]" * 100_000, "invalid_json"),  # nesting deeper than the recursion limit
        ('{"ts": 1795334400, "readings": {"a": ' + "1" * 5000 + "}}", "invalid_json"),  # int digit limit
        ("null", "not_an_object"),
        ("17", "not_an_object"),
        ('"text"', "not_an_object"),
        ('{"ts": 1795334400}', "missing_field"),
        ('{"readings": {"a": 1}, "seq": 1}', "missing_field"),
        ('{"batch": []}', "empty_readings"),
        ('{"batch": {}}', "wrong_type"),
        ('{"batch": [1]}', "not_an_object"),
        ('{"batch": [{"ts": 1795334400}]}', "missing_field"),
        ('{"batch": [{"ts": 1795334400, "readings": {"a": 1}}], "readings": {"a": 1}}', "wrong_type"),
    ],
)
def test_structure_errors(payload: str, reason: str) -> None:
    assert reason_of(payload) == reason


def test_invalid_utf8_reports_position() -> None:
    with pytest.raises(DecodeError) as caught:
        decode(b'{"ts": 1, "r": "\xc3\x28"}')
    assert caught.value.reason == "invalid_utf8"
    assert "16" in caught.value.detail


def test_unknown_fields_are_ignored() -> None:
    telemetry = decode(message(seq=3, fw="1.2.0", rssi=-70))
    assert telemetry.readings == (Reading(TS, "soil_moisture", 31.2, None, 3),)


def test_reading_limit() -> None:
    at_limit = {f"m{i}": float(i) for i in range(MAX_READINGS_PER_MESSAGE)}
    readings = decode(message(at_limit)).readings
    assert len(readings) == MAX_READINGS_PER_MESSAGE
    assert readings[-1] == Reading(TS, f"m{MAX_READINGS_PER_MESSAGE - 1}", MAX_READINGS_PER_MESSAGE - 1.0)
    half = {f"m{i}": 1 for i in range(MAX_READINGS_PER_MESSAGE // 2 + 1)}
    batch = json.dumps({"batch": [{"ts": 1795334400, "readings": half}] * 2})
    assert reason_of(batch) == "too_many_readings"


@pytest.mark.parametrize(
    "content_type",
    [CONTENT_TYPE_JSON, "application/json; charset=utf-8", "Application/JSON", " application/json ;x=1", ""],
)
def test_json_content_types(content_type: str) -> None:
    assert decode(message(), content_type=content_type).readings[0].value == 31.2


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/cbor", "application/senml+xml", "application/json+x", ";charset=x"]
)
def test_unsupported_content_types(content_type: str) -> None:
    assert reason_of(message(), content_type=content_type) == "unsupported_content_type"


def test_content_type_wins_over_topic_suffix() -> None:
    # A JSON-contract payload on a /senml topic labelled application/json is decoded as the JSON contract.
    assert decode(message(), content_type=CONTENT_TYPE_JSON, senml_topic=True).readings[0].value == 31.2
    # Without a content type, the same payload on a /senml topic is sniffed as CBOR and fails as such.
    assert reason_of(message(), senml_topic=True) == "invalid_cbor"


def test_garbage_never_escapes_as_another_exception() -> None:
    rng = random.Random(7)
    alphabet = '{}[]":,0123456789.eE+-tnulrsaNIfy \\'
    for _ in range(3000):
        if rng.random() < 0.5:
            payload = bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
        else:
            payload = "".join(rng.choices(alphabet, k=rng.randint(1, 40))).encode()
        for content_type in (CONTENT_TYPE_JSON, CONTENT_TYPE_SENML_JSON, CONTENT_TYPE_SENML_CBOR):
            try:
                decode(payload, content_type=content_type)
            except DecodeError as exc:
                assert exc.reason in DECODE_REASONS


def test_garbage_cbor_structures_never_escape() -> None:
    rng = random.Random(8)
    samples: list[object] = [None, True, 1.5, -7, 2**70, "x", b"\x00", [], {}, {0: "a"}, {2: "x"}, {6: []}]
    for _ in range(2000):
        record = {rng.choice([-6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, "v"]): rng.choice(samples)}
        payload = cbor2.dumps([record] if rng.random() < 0.9 else record)
        try:
            decode(payload, content_type=CONTENT_TYPE_SENML_CBOR)
        except DecodeError as exc:
            assert exc.reason in DECODE_REASONS


# --------------------------------------------------------------------------------------------- encoders


def test_format_timestamp() -> None:
    assert format_timestamp(TS) == "2026-11-22T08:00:00.250Z"
    assert format_timestamp(datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2026-01-02T03:04:05.000Z"
    assert format_timestamp(TS + timedelta(microseconds=7)) == "2026-11-22T08:00:00.250007Z"
    plus7 = timezone(timedelta(hours=7))
    assert format_timestamp(datetime(2026, 11, 22, 15, 0, 0, 250000, tzinfo=plus7)) == "2026-11-22T08:00:00.250Z"
    with pytest.raises(ValueError, match="aware"):
        format_timestamp(datetime(2026, 1, 1))


def test_encode_json_matches_contract() -> None:
    payload = encode_json({"soil_moisture": 31.2, "battery_v": 3.71}, seq=17, ts=TS)
    assert payload == b'{"seq":17,"ts":"2026-11-22T08:00:00.250Z","readings":{"soil_moisture":31.2,"battery_v":3.71}}'


def test_encode_json_batch_matches_contract() -> None:
    payload = encode_json_batch([(1, TS, {"a": 1.0}), (2, TS + timedelta(seconds=1), {"a": 2})])
    assert json.loads(payload) == {
        "batch": [
            {"seq": 1, "ts": "2026-11-22T08:00:00.250Z", "readings": {"a": 1.0}},
            {"seq": 2, "ts": "2026-11-22T08:00:01.250Z", "readings": {"a": 2}},
        ]
    }


@pytest.mark.parametrize(
    ("readings", "seq", "ts"),
    [
        ({}, 1, TS),
        ({"Bad": 1.0}, 1, TS),
        ({"a": math.nan}, 1, TS),
        ({"a": math.inf}, 1, TS),
        ({"a": True}, 1, TS),
        ({"a": 10**400}, 1, TS),
        ({"a": 1.0}, -1, TS),
        ({"a": 1.0}, 1, datetime(2026, 1, 1)),
        ({"a": 1.0}, 1, datetime(1999, 1, 1, tzinfo=UTC)),
    ],
)
def test_encode_json_rejects_what_decode_would_reject(readings: dict[str, float], seq: int, ts: datetime) -> None:
    with pytest.raises(ValueError):
        encode_json(readings, seq=seq, ts=ts)


def test_encode_json_batch_rejects_empty_and_oversized() -> None:
    with pytest.raises(ValueError, match="empty"):
        encode_json_batch([])
    half = {f"m{i}": 1.0 for i in range(MAX_READINGS_PER_MESSAGE // 2 + 1)}
    with pytest.raises(ValueError, match="more than"):
        encode_json_batch([(1, TS, half), (2, TS, half)])


def random_readings(rng: random.Random) -> dict[str, float]:
    readings: dict[str, float] = {}
    for _ in range(rng.randint(1, 12)):
        name = rng.choice(string.ascii_lowercase) + "".join(
            rng.choices(string.ascii_lowercase + string.digits + "_", k=rng.randint(0, 63))
        )
        kind = rng.random()
        if kind < 0.2:
            value: float = rng.randint(-(2**53), 2**53)
        elif kind < 0.3:
            value = rng.choice([0.0, -0.0, 5e-324, -1.7976931348623157e308, 1e-300])
        else:
            value = rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-12, 12)
        readings[name] = value
    return readings


def random_ts(rng: random.Random, *, whole_ms: bool) -> datetime:
    start = datetime(2000, 1, 1, tzinfo=UTC)
    span_us = int((datetime(2100, 12, 31, tzinfo=UTC) - start).total_seconds()) * 1_000_000
    offset = rng.randrange(span_us)
    if whole_ms:
        offset -= offset % 1000
    return start + timedelta(microseconds=offset)


def test_json_round_trip_random() -> None:
    rng = random.Random(1122)
    for _ in range(1500):
        readings = random_readings(rng)
        seq = rng.randrange(2**63)
        ts = random_ts(rng, whole_ms=rng.random() < 0.5)
        decoded = decode(encode_json(readings, seq=seq, ts=ts)).readings
        assert decoded == tuple(Reading(ts, name, float(value), None, seq) for name, value in readings.items())
        assert all(math.copysign(1, r.value) == math.copysign(1, readings[r.metric]) for r in decoded)


def test_json_batch_round_trip_random() -> None:
    rng = random.Random(2211)
    for _ in range(300):
        items = [(rng.randrange(10**9), random_ts(rng, whole_ms=True), random_readings(rng)) for _ in range(5)]
        decoded = decode(encode_json_batch(items), content_type=CONTENT_TYPE_JSON).readings
        expected = tuple(
            Reading(ts, name, float(value), None, seq)
            for seq, ts, readings in items
            for name, value in readings.items()
        )
        assert decoded == expected


def test_parse_iso_timestamp_directly() -> None:
    assert parse_iso_timestamp("2026-11-22T08:00:00.250Z") == TS
    with pytest.raises(DecodeError) as caught:
        parse_iso_timestamp("2026-11-22T08:00:00")
    assert caught.value.reason == "bad_timestamp"
