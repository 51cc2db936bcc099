"""Telemetry payloads of the wire contract: decoding JSON and SenML (RFC 8428, JSON and CBOR) into readings,
and the encoders the device simulator publishes with."""

from __future__ import annotations

import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Final, Literal, NamedTuple

import cbor2

from core.errors import DecodeError
from protocol.topics import is_valid_id

CONTENT_TYPE_JSON: Final = "application/json"
CONTENT_TYPE_SENML_JSON: Final = "application/senml+json"
CONTENT_TYPE_SENML_CBOR: Final = "application/senml+cbor"

MAX_PAYLOAD_BYTES: Final = 256 * 1024
MAX_READINGS_PER_MESSAGE: Final = 10_000
SEQ_MAX: Final = 2**63 - 1  # fits the store's bigint column
SENML_VERSION: Final = 10
# RFC 8428 4.5.3: a resolved SenML time below 2**28 s is relative to "now", above it is Unix time.
SENML_RELATIVE_TIME_LIMIT_S: Final = 2**28
# Epoch numbers above this are milliseconds (1e11 s would be the year 5138).
EPOCH_MS_THRESHOLD: Final = 1e11

TS_MIN: Final = datetime(2000, 1, 1, tzinfo=UTC)
TS_MAX_EXCLUSIVE: Final = datetime(2101, 1, 1, tzinfo=UTC)
_TS_MIN_S: Final = TS_MIN.timestamp()
_TS_MAX_S: Final = TS_MAX_EXCLUSIVE.timestamp()
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

Reason = Literal[
    "payload_too_large",
    "empty_payload",
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "non_finite_value",
    "bad_metric_name",
    "bad_timestamp",
    "empty_readings",
    "invalid_senml",
    "bad_senml_base_time",
    "invalid_cbor",
    "unsupported_content_type",
    "too_many_readings",
]
# Every reason decode_telemetry can raise; ingest stores them in its quarantine table.
DECODE_REASONS: Final[tuple[Reason, ...]] = (
    "payload_too_large",
    "empty_payload",
    "invalid_utf8",
    "invalid_json",
    "not_an_object",
    "missing_field",
    "wrong_type",
    "non_finite_value",
    "bad_metric_name",
    "bad_timestamp",
    "empty_readings",
    "invalid_senml",
    "bad_senml_base_time",
    "invalid_cbor",
    "unsupported_content_type",
    "too_many_readings",
)

_METRIC_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")

_Format = Literal["json", "senml_json", "senml_cbor"]
_FORMAT_OF_CONTENT_TYPE: Final[dict[str, _Format]] = {
    CONTENT_TYPE_JSON: "json",
    CONTENT_TYPE_SENML_JSON: "senml_json",
    CONTENT_TYPE_SENML_CBOR: "senml_cbor",
}

# RFC 8428 section 6: CBOR carries the SenML labels as these integers.
SENML_CBOR_LABELS: Final[Mapping[str, int]] = {
    "bver": -1,
    "bn": -2,
    "bt": -3,
    "bu": -4,
    "bv": -5,
    "bs": -6,
    "n": 0,
    "u": 1,
    "v": 2,
    "vs": 3,
    "vb": 4,
    "s": 5,
    "t": 6,
    "ut": 7,
    "vd": 8,
}
_SENML_LABEL_OF_CBOR: Final[dict[int, str]] = {number: label for label, number in SENML_CBOR_LABELS.items()}
_SENML_VALUE_LABELS: Final = ("v", "vs", "vb", "vd")
_SENML_REGULAR_LABELS: Final = frozenset(("n", "u", "v", "vs", "vb", "vd", "s", "t", "ut"))


class Reading(NamedTuple):
    """One numeric measurement: `ts` is tz-aware UTC.

    An immutable NamedTuple rather than a frozen dataclass: ingest builds tens of thousands per second, and a
    frozen dataclass's __init__ costs several times a tuple's.
    """

    ts: datetime
    metric: str
    value: float
    unit: str | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class TextReading:
    """One SenML string value (`vs`), kept apart from the numeric readings."""

    ts: datetime
    metric: str
    text: str


@dataclass(frozen=True, slots=True)
class Telemetry:
    """A decoded telemetry message. `skipped_records` counts SenML records carrying only a sum or data value."""

    readings: tuple[Reading, ...]
    texts: tuple[TextReading, ...] = ()
    skipped_records: int = 0


_new_tuple = tuple.__new__


def _error(reason: Reason, detail: str = "") -> DecodeError:
    return DecodeError(reason, detail)


@lru_cache(maxsize=4096)
def is_metric_name(name: str) -> bool:
    """True when `name` is a valid metric name (`[a-z][a-z0-9_]{0,63}`); cached, names repeat endlessly."""
    return _METRIC_RE.fullmatch(name) is not None


# --------------------------------------------------------------------------------------------- decoding


def decode_telemetry(
    payload: bytes,
    *,
    content_type: str | None,
    senml_topic: bool = False,
    max_bytes: int = MAX_PAYLOAD_BYTES,
    now: datetime | None = None,
) -> Telemetry:
    """Decode one telemetry payload or raise DecodeError with a reason from DECODE_REASONS.

    The MQTT 5 content type chooses the format when present; otherwise a `/senml` topic means SenML
    (JSON when the payload starts with '[', else CBOR) and anything else is the JSON contract.
    `now` anchors SenML relative times; when None and a relative time occurs, the wall clock is read.
    """
    size = len(payload)
    if size > max_bytes:
        raise _error("payload_too_large", f"{size} bytes, limit {max_bytes}")
    if size == 0:
        raise _error("empty_payload")
    fmt = _choose_format(payload, content_type, senml_topic=senml_topic)
    if fmt == "json":
        return _decode_json_contract(_load_json(payload))
    if fmt == "senml_json":
        return _decode_senml_pack(_load_json(payload), now=now, cbor=False)
    return _decode_senml_pack(_load_cbor(payload), now=now, cbor=True)


def _choose_format(payload: bytes, content_type: str | None, *, senml_topic: bool) -> _Format:
    if content_type is not None:
        fmt = _FORMAT_OF_CONTENT_TYPE.get(content_type)
        if fmt is not None:
            return fmt
        if content_type.strip():  # an empty content type property counts as absent
            fmt = _FORMAT_OF_CONTENT_TYPE.get(content_type.partition(";")[0].strip().lower())
            if fmt is None:
                raise _error("unsupported_content_type", repr(content_type[:100]))
            return fmt
    if senml_topic:
        return "senml_json" if payload.lstrip()[:1] == b"[" else "senml_cbor"
    return "json"


def _reject_constant(name: str) -> object:
    # Python's json accepts NaN/Infinity literals, which are not JSON; refuse them with a precise reason.
    raise _error("non_finite_value", f"{name} literal")


_JSON_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)


def _load_json(payload: bytes) -> object:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _error("invalid_utf8", f"at byte {exc.start}") from exc
    try:
        return _JSON_DECODER.decode(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, int digit limit, deep nesting
        raise _error("invalid_json", str(exc)[:200]) from exc


def _load_cbor(payload: bytes) -> object:
    stream = io.BytesIO(payload)
    try:
        pack = cbor2.CBORDecoder(stream).decode()
    # cbor2 decodes semantic tags (decimal fractions, rationals, shared references, ...) itself, so
    # their errors surface too; RuntimeError covers RecursionError and self-referencing tags.
    except (
        cbor2.CBORError,
        ValueError,
        TypeError,
        ArithmeticError,
        LookupError,
        RuntimeError,
        EOFError,
    ) as exc:
        raise _error("invalid_cbor", str(exc)[:200]) from exc
    if stream.tell() != len(payload):
        raise _error("invalid_cbor", f"{len(payload) - stream.tell()} trailing bytes")
    return pack


def _where(index: int | None, field: str) -> str:
    return field if index is None else f"batch[{index}].{field}"


def _decode_json_contract(doc: object) -> Telemetry:
    if not isinstance(doc, dict):
        raise _error("not_an_object", f"top level is {type(doc).__name__}")
    out: list[Reading] = []
    if "batch" not in doc:
        _decode_json_message(doc, out=out, index=None)
        return Telemetry(tuple(out))
    batch = doc["batch"]
    if "readings" in doc:
        raise _error("wrong_type", "both 'batch' and 'readings' at top level")
    if not isinstance(batch, list):
        raise _error("wrong_type", f"batch is {type(batch).__name__}")
    if not batch:
        raise _error("empty_readings", "empty batch")
    for index, message in enumerate(batch):
        if not isinstance(message, dict):
            raise _error("not_an_object", f"batch[{index}] is {type(message).__name__}")
        _decode_json_message(message, out=out, index=index)
    return Telemetry(tuple(out))


def _decode_json_message(message: dict[str, object], *, out: list[Reading], index: int | None) -> None:
    try:
        raw_ts = message["ts"]
        readings = message["readings"]
    except KeyError as exc:
        raise _error("missing_field", _where(index, str(exc.args[0]))) from None
    if not isinstance(readings, dict):
        raise _error("wrong_type", f"{_where(index, 'readings')} is {type(readings).__name__}")
    if not readings:
        raise _error("empty_readings", _where(index, "readings"))
    if len(out) + len(readings) > MAX_READINGS_PER_MESSAGE:
        raise _error("too_many_readings", f"more than {MAX_READINGS_PER_MESSAGE}")
    raw_seq = message.get("seq")
    seq: int | None = None
    if raw_seq is not None:
        if not isinstance(raw_seq, int) or isinstance(raw_seq, bool) or not 0 <= raw_seq <= SEQ_MAX:
            raise _error("wrong_type", f"{_where(index, 'seq')} must be an integer 0..2**63-1")
        seq = raw_seq
    if isinstance(raw_ts, str):
        ts = parse_iso_timestamp(raw_ts)
    elif isinstance(raw_ts, int | float) and not isinstance(raw_ts, bool):
        ts = _from_epoch(raw_ts, allow_ms=True)
    else:
        raise _error("wrong_type", f"{_where(index, 'ts')} is {type(raw_ts).__name__}")
    append = out.append
    for metric, raw_value in readings.items():
        if not is_metric_name(metric):
            raise _error("bad_metric_name", repr(metric[:80]))
        # tuple.__new__ directly: the NamedTuple constructor is a Python-level function, and this runs per reading.
        append(_new_tuple(Reading, (ts, metric, _finite_float(raw_value, metric), None, seq)))


def _finite_float(raw: object, field: str) -> float:
    if isinstance(raw, float):
        if math.isfinite(raw):
            return raw
        raise _error("non_finite_value", field)
    if isinstance(raw, int) and not isinstance(raw, bool):
        try:
            return float(raw)
        except OverflowError:
            raise _error("non_finite_value", f"{field} overflows a double") from None
    raise _error("wrong_type", f"{field} is {type(raw).__name__}, not a number")


def parse_iso_timestamp(text: str) -> datetime:
    """ISO 8601 with 'Z' or an offset -> aware UTC datetime; naive or out of 2000..2100 -> bad_timestamp."""
    if text[-1:] == "z":
        text = text[:-1] + "Z"
    try:
        ts = datetime.fromisoformat(text)
    except ValueError:
        raise _error("bad_timestamp", f"not ISO 8601: {text[:64]!r}") from None
    if ts.tzinfo is None:
        raise _error("bad_timestamp", f"no UTC offset: {text[:64]!r}")
    if ts.tzinfo is not UTC:
        try:
            ts = ts.astimezone(UTC)
        except OverflowError:
            raise _error("bad_timestamp", f"out of range: {text[:64]!r}") from None
    if not TS_MIN <= ts < TS_MAX_EXCLUSIVE:
        raise _error("bad_timestamp", f"outside 2000..2100: {text[:64]!r}")
    return ts


def _from_epoch(number: float, *, allow_ms: bool, reason: Reason = "bad_timestamp") -> datetime:
    if allow_ms and number > EPOCH_MS_THRESHOLD:
        if isinstance(number, int):
            # Exact integer milliseconds, no float rounding.
            if not _TS_MIN_S * 1000 <= number < _TS_MAX_S * 1000:
                raise _error(reason, f"epoch ms {number} outside 2000..2100")
            return _EPOCH + timedelta(milliseconds=number)
        number = number / 1000
    if not _TS_MIN_S <= number < _TS_MAX_S:  # also false for NaN
        raise _error(reason, f"epoch {number} outside 2000..2100")
    return datetime.fromtimestamp(number, UTC)


# --------------------------------------------------------------------------------------------- SenML


def _senml_records(pack: object, *, cbor: bool) -> list[dict[str, object]]:
    if not isinstance(pack, list):
        raise _error("invalid_senml", f"pack is {type(pack).__name__}, not an array")
    if not pack:
        raise _error("empty_readings", "empty SenML pack")
    if len(pack) > MAX_READINGS_PER_MESSAGE:
        raise _error("too_many_readings", f"{len(pack)} records, limit {MAX_READINGS_PER_MESSAGE}")
    records: list[dict[str, object]] = []
    for index, raw in enumerate(pack):
        if not isinstance(raw, dict):
            raise _error("invalid_senml", f"record {index} is {type(raw).__name__}, not a map")
        record: dict[str, object] = {}
        for key, value in raw.items():
            if cbor and isinstance(key, int) and not isinstance(key, bool):
                label = _SENML_LABEL_OF_CBOR.get(key)
                if label is not None:
                    record[label] = value
            elif isinstance(key, str):
                # RFC 8428 4.4: labels ending in '_' must be understood; we understand none of them.
                if key.endswith("_"):
                    raise _error("invalid_senml", f"record {index} has must-understand label {key[:40]!r}")
                if not cbor and key in SENML_CBOR_LABELS:
                    record[key] = value
            # Other keys are extensions we may ignore (RFC 8428 4.4).
        if not record:
            # Likely labels of the wrong kind (strings in CBOR): say so rather than skip the record.
            raise _error("invalid_senml", f"record {index} has no SenML field")
        records.append(record)
    return records


def _decode_senml_pack(pack: object, *, now: datetime | None, cbor: bool) -> Telemetry:
    records = _senml_records(pack, cbor=cbor)
    base_name = ""
    base_time = 0.0
    has_base_time = False
    base_unit: str | None = None
    base_value = 0.0
    readings: list[Reading] = []
    texts: list[TextReading] = []
    skipped = 0
    for index, record in enumerate(records):
        # Base fields apply to this record and every later one until overridden (RFC 8428 4.1).
        if "bver" in record:
            bver = record["bver"]
            if not isinstance(bver, int) or isinstance(bver, bool) or not 1 <= bver <= SENML_VERSION:
                raise _error("invalid_senml", f"record {index}: unsupported bver {bver!r:.40}")
        if "bn" in record:
            base_name = _senml_text(record["bn"], index=index, label="bn")
        if "bt" in record:
            base_time = _senml_seconds(record["bt"], index=index, label="bt", reason="bad_senml_base_time")
            has_base_time = True
        if "bu" in record:
            base_unit = _senml_text(record["bu"], index=index, label="bu")
        if "bv" in record:
            base_value = _finite_float(record["bv"], f"record {index} bv")

        if _SENML_REGULAR_LABELS.isdisjoint(record):
            continue  # a record of base fields only, as in RFC 8428 5.1.9
        value_labels = [label for label in _SENML_VALUE_LABELS if label in record]
        if len(value_labels) > 1:
            raise _error("invalid_senml", f"record {index} has several values {value_labels}")
        # Sums ("s") and data values ("vd") have no place in the numeric store: such records are
        # counted in `skipped_records` rather than failing the whole pack or vanishing unnoticed.
        if not value_labels:
            if "s" in record:
                skipped += 1
                continue
            raise _error("invalid_senml", f"record {index} has no value")
        if value_labels[0] == "vd":
            skipped += 1
            continue

        name = base_name + _senml_text(record["n"], index=index, label="n") if "n" in record else base_name
        if not name:
            raise _error("invalid_senml", f"record {index} has an empty name")
        # "urn:dev:ow:10e2073a01080063:temp" or "{device}/temp": the metric is the last segment.
        metric = name[max(name.rfind(":"), name.rfind("/")) + 1 :]
        if not is_metric_name(metric):
            raise _error("bad_metric_name", f"record {index}: {name[:120]!r}")

        offset = _senml_seconds(record["t"], index=index, label="t", reason="bad_timestamp") if "t" in record else 0.0
        time_reason: Reason = "bad_senml_base_time" if has_base_time else "bad_timestamp"
        ts, now = _senml_time(base_time + offset, now, reason=time_reason)

        if "v" in record:
            value = _finite_float(record["v"], f"record {index} v") + base_value
            if not math.isfinite(value):
                raise _error("non_finite_value", f"record {index}: v + bv overflows")
        elif "vb" in record:
            flag = record["vb"]
            if not isinstance(flag, bool):
                raise _error("wrong_type", f"record {index}: vb is {type(flag).__name__}")
            value = 1.0 if flag else 0.0
        else:
            texts.append(TextReading(ts, metric, _senml_text(record["vs"], index=index, label="vs")))
            continue
        unit = _senml_text(record["u"], index=index, label="u") if "u" in record else base_unit
        readings.append(Reading(ts, metric, value, unit))
    if not readings and not texts:
        raise _error("empty_readings", f"no usable record, {skipped} skipped")
    return Telemetry(tuple(readings), tuple(texts), skipped)


def _senml_text(raw: object, *, index: int, label: str) -> str:
    if not isinstance(raw, str):
        raise _error("wrong_type", f"record {index}: {label} is {type(raw).__name__}")
    return raw


def _senml_seconds(raw: object, *, index: int, label: str, reason: Reason) -> float:
    # A bt that is not a number is a bad base time; a t that is not a number is a type error.
    if not isinstance(raw, int | float) or isinstance(raw, bool):
        raise _error(reason if label == "bt" else "wrong_type", f"record {index}: {label} is {type(raw).__name__}")
    try:
        seconds = float(raw)
    except OverflowError:
        raise _error(reason, f"record {index}: {label} out of range") from None
    if not math.isfinite(seconds):
        raise _error(reason, f"record {index}: {label} is {seconds}")
    return seconds


def _senml_time(seconds: float, now: datetime | None, *, reason: Reason) -> tuple[datetime, datetime | None]:
    """Resolve bt + t; returns the timestamp and the (possibly now read) anchor for relative times."""
    if not math.isfinite(seconds):
        raise _error(reason, f"time {seconds}")
    if seconds >= SENML_RELATIVE_TIME_LIMIT_S:
        return _from_epoch(seconds, allow_ms=False, reason=reason), now
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    try:
        ts = (now + timedelta(seconds=seconds)).astimezone(UTC)
    except OverflowError:
        raise _error(reason, f"relative time {seconds} s out of range") from None
    if not TS_MIN <= ts < TS_MAX_EXCLUSIVE:
        raise _error(reason, f"relative time {seconds} s lands outside 2000..2100")
    return ts, now


# --------------------------------------------------------------------------------------------- encoding


def format_timestamp(ts: datetime) -> str:
    """ISO 8601 UTC with milliseconds and 'Z'; microseconds only when the value has sub-millisecond digits."""
    if ts.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    utc = ts.astimezone(UTC).replace(tzinfo=None)
    spec = "milliseconds" if utc.microsecond % 1000 == 0 else "microseconds"
    return utc.isoformat(timespec=spec) + "Z"


def _checked_readings(readings: Mapping[str, float]) -> dict[str, float]:
    if not readings:
        raise ValueError("no readings")
    if len(readings) > MAX_READINGS_PER_MESSAGE:
        raise ValueError(f"more than {MAX_READINGS_PER_MESSAGE} readings")
    for metric, value in readings.items():
        if not is_metric_name(metric):
            raise ValueError(f"bad metric name {metric!r}")
        try:
            _finite_float(value, metric)
        except DecodeError as exc:
            raise ValueError(f"{metric}: {value!r} is not a finite number") from exc
    return dict(readings)


def _checked_ts(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    if not TS_MIN <= ts < TS_MAX_EXCLUSIVE:
        raise ValueError(f"timestamp {ts} outside 2000..2100")
    return ts


def _json_message(seq: int, ts: datetime, readings: Mapping[str, float]) -> dict[str, object]:
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= SEQ_MAX:
        raise ValueError(f"seq {seq!r} must be an integer 0..2**63-1")
    return {"seq": seq, "ts": format_timestamp(_checked_ts(ts)), "readings": _checked_readings(readings)}


def _dump_json(doc: object) -> bytes:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()


def encode_json(readings: Mapping[str, float], *, seq: int, ts: datetime) -> bytes:
    """`{"seq":…,"ts":"…Z","readings":{…}}`, the plain JSON contract."""
    return _dump_json(_json_message(seq, ts, readings))


def encode_json_batch(items: Sequence[tuple[int, datetime, Mapping[str, float]]]) -> bytes:
    """`{"batch":[{seq, ts, readings}, …]}`, a store-and-forward backfill of (seq, ts, readings) items."""
    if not items:
        raise ValueError("empty batch")
    if sum(len(readings) for _, _, readings in items) > MAX_READINGS_PER_MESSAGE:
        raise ValueError(f"more than {MAX_READINGS_PER_MESSAGE} readings in one batch")
    return _dump_json({"batch": [_json_message(seq, ts, readings) for seq, ts, readings in items]})


def _senml_pack(
    device_id: str, *, ts: datetime, readings: Mapping[str, float], units: Mapping[str, str] | None
) -> list[dict[str, object]]:
    if not is_valid_id(device_id):
        raise ValueError(f"bad device id {device_id!r}")
    checked = _checked_readings(readings)
    units = units or {}
    pack: list[dict[str, object]] = []
    for metric, value in checked.items():
        record: dict[str, object] = {}
        if not pack:
            record["bn"] = f"{device_id}/"
            record["bt"] = _checked_ts(ts).timestamp()
        record["n"] = metric
        unit = units.get(metric)
        if unit is not None:
            record["u"] = unit
        record["v"] = value
        pack.append(record)
    return pack


def encode_senml_json(
    device_id: str, ts: datetime, readings: Mapping[str, float], units: Mapping[str, str] | None = None
) -> bytes:
    """A SenML JSON pack: base name `{device_id}/`, base time `ts`, one record per reading."""
    return _dump_json(_senml_pack(device_id, ts=ts, readings=readings, units=units))


def encode_senml_cbor(
    device_id: str, ts: datetime, readings: Mapping[str, float], units: Mapping[str, str] | None = None
) -> bytes:
    """The same pack as `encode_senml_json`, in CBOR with the integer labels of RFC 8428 section 6."""
    pack = _senml_pack(device_id, ts=ts, readings=readings, units=units)
    return cbor2.dumps([{SENML_CBOR_LABELS[label]: value for label, value in r.items()} for r in pack])
