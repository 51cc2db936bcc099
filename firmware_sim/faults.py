"""Fault injection with ground truth: which faults may happen (`FaultSpec`), how they alter one device's samples
(`FaultInjector`), and the labels that say exactly what was injected where (`FaultLabel`, written as JSONL).

Faults draw from their own random stream, so a device's physics is the same with and without faults: the clean
twin of a faulty device (same seed, no faults) gives the true values under every labelled window.

Value faults hit one metric on its own; joint faults (`correlation_break`, `slow_leak`, `neighbour_drift`) hit a
metric against the partner its physics ties it to (`DeviceModel.related`), sized by how tightly the pair moves
together, so that they stay inside the metric's own normal range. Windows are in samples by default; a
`TypeFaults` entry gives a device type windows in seconds (a stuck probe outlasting its type's stuck rule, a
dropout outlasting its silent rule) and its own per-report probabilities.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Literal

from core.errors import IocError
from protocol.telemetry import format_timestamp

FaultKind = Literal[
    "spike",
    "level_shift",
    "drift",
    "stuck",
    "noise",
    "dropout",
    "offline",
    "clock_skew",
    "duplicate",
    "out_of_order",
    "malformed",
    "correlation_break",
    "slow_leak",
    "neighbour_drift",
]
VALUE_FAULTS: Final[tuple[FaultKind, ...]] = ("spike", "level_shift", "drift", "stuck", "noise")
# Faults of one metric against the partner it physically follows (`DeviceModel.related`).
JOINT_FAULTS: Final[tuple[FaultKind, ...]] = ("correlation_break", "slow_leak", "neighbour_drift")
MESSAGE_FAULTS: Final[tuple[FaultKind, ...]] = (
    "dropout",
    "offline",
    "clock_skew",
    "duplicate",
    "out_of_order",
    "malformed",
)
FAULT_KINDS: Final[tuple[FaultKind, ...]] = VALUE_FAULTS + MESSAGE_FAULTS + JOINT_FAULTS
# Faults that alter a metric's values (labelled with that metric); the others alter whole messages ("*").
METRIC_FAULTS: Final[frozenset[FaultKind]] = frozenset(VALUE_FAULTS + JOINT_FAULTS)
# Window length in samples (inclusive range) of the faults that last; the others hit a single sample.
DEFAULT_SAMPLES: Final[Mapping[FaultKind, tuple[int, int]]] = {
    "level_shift": (10, 40),
    "drift": (20, 60),
    "stuck": (10, 40),
    "noise": (5, 20),
    "dropout": (3, 10),
    "offline": (3, 12),
    "clock_skew": (10, 30),
    "correlation_break": (10, 40),
    "slow_leak": (20, 60),
    "neighbour_drift": (20, 60),
}
ALIASES: Final[Mapping[str, FaultKind]] = {
    "noise_burst": "noise",
    "stuck_at": "stuck",
    "shift": "level_shift",
    "relation_break": "correlation_break",
    "leak": "slow_leak",
    "drift_vs_neighbour": "neighbour_drift",
}
# The center refuses timestamps more than 300 s ahead of its clock; a skewed device stays within it.
MAX_FORWARD_SKEW_MS: Final = 240_000
MIN_SKEW_MS: Final = 20_000
# What a malformed payload looks like, and the decode reason the center's quarantine must give it.
MALFORMED_REASONS: Final = (
    "invalid_json",
    "non_finite_value",
    "wrong_type",
    "missing_field",
    "bad_timestamp",
    "invalid_utf8",
    "bad_metric_name",
)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


class FaultSpecError(IocError):
    """A fault specification that cannot be used."""


@dataclass(frozen=True, slots=True)
class TypeFaults:
    """One device type's own fault settings: per-report probabilities (replacing the spec's for the kinds named)
    and window lengths in seconds (turned into samples with the device's report interval)."""

    probabilities: Mapping[FaultKind, float] = field(default_factory=dict)
    durations_s: Mapping[FaultKind, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """Per-device, per-report probability of starting each fault kind, window lengths in samples, per-type
    overrides (`per_type`), and the reading time before which no fault starts (`start_after_ms`: the detectors'
    learning period in a benchmark; a device in the field has run for a while before it fails)."""

    probabilities: Mapping[FaultKind, float] = field(default_factory=dict)
    samples: Mapping[FaultKind, tuple[int, int]] = field(default_factory=lambda: dict(DEFAULT_SAMPLES))
    per_type: Mapping[str, TypeFaults] = field(default_factory=dict)
    start_after_ms: int = 0

    @property
    def enabled(self) -> bool:
        return any(p > 0 for p in self.probabilities.values()) or any(
            p > 0 for t in self.per_type.values() for p in t.probabilities.values()
        )

    def probability(self, kind: FaultKind, type_code: str | None = None) -> float:
        own = self.per_type.get(type_code) if type_code is not None else None
        if own is not None and kind in own.probabilities:
            return own.probabilities[kind]
        return self.probabilities.get(kind, 0.0)

    def window(self, kind: FaultKind, type_code: str | None = None, *, interval_ms: int = 0) -> tuple[int, int]:
        """Window length in samples: the type's duration in seconds over its report interval when it has one."""
        own = self.per_type.get(type_code) if type_code is not None else None
        if own is not None and kind in own.durations_s and interval_ms > 0:
            lo_s, hi_s = own.durations_s[kind]
            lo = max(1, math.ceil(lo_s * 1000 / interval_ms))
            return lo, max(lo, math.ceil(hi_s * 1000 / interval_ms))
        return self.samples.get(kind, (1, 1))


NO_FAULTS: Final = FaultSpec()


def _kind(name: str) -> FaultKind:
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    for kind in FAULT_KINDS:
        if kind == key:
            return kind
    raise FaultSpecError(f"unknown fault kind {name!r}; known: {', '.join(FAULT_KINDS)}")


def _probability(kind: str, raw: object) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0.0 <= float(raw) <= 1.0:
        raise FaultSpecError(f"probability of {kind} must be a number in 0..1, got {raw!r}")
    return float(raw)


def parse_fault_spec(text: str) -> FaultSpec:
    """`"spike:0.01,stuck:0.005"`, or a JSON file path / JSON text mapping kind to a probability or to
    `{"probability": p, "samples": [min, max]}`. Empty text means no faults."""
    text = text.strip()
    if not text:
        return NO_FAULTS
    if text.startswith("{"):
        return _spec_from_json(text)
    if text.endswith(".json"):
        try:
            return _spec_from_json(Path(text).read_text(encoding="utf-8"))
        except OSError as exc:
            raise FaultSpecError(f"cannot read fault spec {text}: {exc}") from exc
    probabilities: dict[FaultKind, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition(":")
        if not sep:
            raise FaultSpecError(f"fault spec entries are kind:probability, got {part!r}")
        try:
            number = float(value)
        except ValueError:
            raise FaultSpecError(f"probability of {name} is not a number: {value!r}") from None
        probabilities[_kind(name)] = _probability(name, number)
    return FaultSpec(probabilities=probabilities)


def _spec_from_json(text: str) -> FaultSpec:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise FaultSpecError(f"fault spec is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise FaultSpecError("fault spec JSON must be an object of kind -> probability")
    probabilities: dict[FaultKind, float] = {}
    samples = dict(DEFAULT_SAMPLES)
    for name, raw in doc.items():
        kind = _kind(str(name))
        if isinstance(raw, dict):
            probabilities[kind] = _probability(kind, raw.get("probability", 0.0))
            window = raw.get("samples")
            if window is not None:
                if (
                    not isinstance(window, list)
                    or len(window) != 2
                    or not all(isinstance(n, int) and n >= 1 for n in window)
                    or window[0] > window[1]
                ):
                    raise FaultSpecError(f"samples of {kind} must be [min, max] with 1 <= min <= max")
                samples[kind] = (window[0], window[1])
        else:
            probabilities[kind] = _probability(kind, raw)
    return FaultSpec(probabilities=probabilities, samples=samples)


def ms_to_datetime(ts_ms: int) -> datetime:
    """Exact conversion of epoch milliseconds to an aware UTC datetime."""
    return _EPOCH + timedelta(milliseconds=ts_ms)


@dataclass(frozen=True, slots=True)
class FaultLabel:
    """Ground truth for one injected fault: `metric` is "*" for faults of whole messages; `start` and `end` are the
    true sample times of the first and last affected samples (inclusive)."""

    device_id: str
    metric: str
    kind: FaultKind
    start_ms: int
    end_ms: int
    params: Mapping[str, object] = field(default_factory=dict)

    @property
    def start(self) -> datetime:
        return ms_to_datetime(self.start_ms)

    @property
    def end(self) -> datetime:
        return ms_to_datetime(self.end_ms)

    def to_json(self) -> str:
        return json.dumps(
            {
                "device_id": self.device_id,
                "metric": self.metric,
                "kind": self.kind,
                "start": format_timestamp(self.start),
                "end": format_timestamp(self.end),
                "params": dict(self.params),
            },
            separators=(",", ":"),
            sort_keys=False,
        )


def read_labels(path: Path) -> list[FaultLabel]:
    """Labels written by a run (one JSON object a line)."""
    labels = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        doc = json.loads(line)
        start = datetime.fromisoformat(doc["start"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(doc["end"].replace("Z", "+00:00"))
        labels.append(
            FaultLabel(
                device_id=doc["device_id"],
                metric=doc["metric"],
                kind=_kind(doc["kind"]),
                start_ms=round((start - _EPOCH).total_seconds() * 1000),
                end_ms=round((end - _EPOCH).total_seconds() * 1000),
                params=doc.get("params", {}),
            )
        )
    return labels


@dataclass(slots=True)
class _Window:
    """An active fault: `left` samples still to affect."""

    kind: FaultKind
    metric: str
    left: int
    start_ms: int
    last_ms: int
    affected: int = 0
    # offset (level_shift), slope per s (drift, neighbour_drift), frozen value (stuck), sigma (noise), final
    # relative loss (slow_leak), factor (correlation_break)
    value: float = 0.0
    length: int = 1
    params: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class _Stats:
    """Running mean and variance of a clean metric (exponentially weighted) to size faults to the signal, and
    whether it has been moving lately (a fault on a reading that is not moving cannot be seen in its data)."""

    mean: float = 0.0
    var: float = 0.0
    n: int = 0
    last: float = math.nan
    unchanged: int = 0  # consecutive samples equal to the one before

    def update(self, x: float, alpha: float = 0.1) -> None:
        if self.n == 0:
            self.mean = x
        else:
            d = x - self.mean
            self.mean += alpha * d
            self.var = (1 - alpha) * (self.var + alpha * d * d)
        self.unchanged = self.unchanged + 1 if x == self.last else 0
        self.last = x
        self.n += 1

    def scale(self, span: float) -> float:
        """A typical size of variation: the running std, but never below a sliver of the level or range."""
        return max(math.sqrt(self.var), 0.05 * abs(self.mean), 0.002 * span, 1e-3)

    @property
    def moving(self) -> bool:
        return self.n >= MIN_SAMPLES_SEEN and self.unchanged == 0 and self.var > 0


# A metric must have been sampled this often before a fault may start on it (its size is learned from them).
MIN_SAMPLES_SEEN: Final = 10


@dataclass(slots=True)
class _Relation:
    """Running least-squares fit of a metric on its partner (exponentially weighted): how tightly they move
    together, which sizes the joint faults."""

    mx: float = 0.0
    my: float = 0.0
    vx: float = 0.0
    vy: float = 0.0
    cxy: float = 0.0
    n: int = 0

    def update(self, x: float, y: float, alpha: float = 0.05) -> None:
        if self.n == 0:
            self.mx, self.my = x, y
        else:
            dx, dy = x - self.mx, y - self.my
            self.mx += alpha * dx
            self.my += alpha * dy
            self.vx = (1 - alpha) * (self.vx + alpha * dx * dx)
            self.vy = (1 - alpha) * (self.vy + alpha * dy * dy)
            self.cxy = (1 - alpha) * (self.cxy + alpha * dx * dy)
        self.n += 1

    def residual_std(self) -> float:
        """Standard deviation of the metric around its fit on the partner."""
        explained = self.cxy * self.cxy / self.vx if self.vx > 0 else 0.0
        return math.sqrt(max(self.vy - explained, 0.0))


@dataclass(frozen=True, slots=True)
class Effect:
    """What faults do to one sample: the readings to send (None: the sample is lost), the timestamp to send it
    with, and how it travels."""

    readings: dict[str, float] | None
    sent_ms: int
    offline: bool = False
    duplicate: bool = False
    hold: bool = False  # out of order: send after the next message
    malformed: str | None = None  # the decode reason the broken payload must earn


class FaultInjector:
    """Decides, per sample, which faults start, applies the active ones and records their labels."""

    def __init__(
        self,
        *,
        device_id: str,
        spec: FaultSpec,
        rng: random.Random,
        analog: Mapping[str, tuple[float, int]],
        interval_ms: int,
        type_code: str | None = None,
        related: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.device_id = device_id
        self.spec = spec
        self.rng = rng
        self.analog = analog  # metric -> (span of its range, decimals)
        self.interval_ms = interval_ms
        self.type_code = type_code
        self.related = tuple((y, x) for y, x in related if y in analog and x in analog)
        self.stats = {m: _Stats() for m in analog}
        self.relations = {pair: _Relation() for pair in self.related}
        self.values: dict[str, _Window] = {}
        self.windows: dict[FaultKind, _Window] = {}
        self.labels: list[FaultLabel] = []
        self.opened: list[FaultLabel] = []  # as each fault starts, with its planned end (a live labels file)
        self.started: list[FaultKind] = []
        self._skews = 0

    def _starts(self, kind: FaultKind, ts_ms: int) -> bool:
        if ts_ms < self.spec.start_after_ms:
            return False
        p = self.spec.probability(kind, self.type_code)
        return p > 0 and self.rng.random() < p

    def _length(self, kind: FaultKind) -> int:
        lo, hi = self.spec.window(kind, self.type_code, interval_ms=self.interval_ms)
        return self.rng.randint(lo, hi)

    def _count(self, kind: FaultKind) -> None:
        self.started.append(kind)

    def apply(self, ts_ms: int, clean: dict[str, float]) -> Effect:
        for metric, value in clean.items():
            if metric in self.stats:
                self.stats[metric].update(value)
        for (y, x), relation in self.relations.items():
            if y in clean and x in clean:
                relation.update(clean[x], clean[y])
        if not self.spec.enabled:
            return Effect(readings=clean, sent_ms=ts_ms)
        dropout = self.windows.get("dropout")
        if dropout is None and self._starts("dropout", ts_ms):
            dropout = self._open("dropout", "*", ts_ms, self._length("dropout"))
        if dropout is not None:
            self._touch(dropout, ts_ms)
            return Effect(readings=None, sent_ms=ts_ms)

        # Decided first: a value fault never starts on a sample whose message will be unreadable.
        malformed: str | None = None
        if self._starts("malformed", ts_ms):
            malformed = MALFORMED_REASONS[self.rng.randrange(len(MALFORMED_REASONS))]
        readings = dict(clean)
        if malformed is None:
            self._start_value_faults(ts_ms, readings)
            self._start_joint_faults(ts_ms, readings)
        for window in list(self.values.values()):
            self._apply_value(window, ts_ms, readings)

        offline = self.windows.get("offline")
        if offline is None and self._starts("offline", ts_ms):
            offline = self._open("offline", "*", ts_ms, self._length("offline"))
        if offline is not None:
            self._touch(offline, ts_ms)

        sent_ms = ts_ms
        skew = self.windows.get("clock_skew")
        if skew is None and self._starts("clock_skew", ts_ms):
            skew = self._open("clock_skew", "*", ts_ms, self._length("clock_skew"))
            skew.value = self._skew_ms()
            skew.params["skew_s"] = skew.value / 1000
        if skew is not None:
            sent_ms = ts_ms + int(skew.value)
            self._touch(skew, ts_ms)

        duplicate = malformed is None and self._starts("duplicate", ts_ms)
        hold = malformed is None and self._starts("out_of_order", ts_ms)
        return Effect(
            readings=readings,
            sent_ms=sent_ms,
            offline=offline is not None,
            duplicate=duplicate,
            hold=hold,
            malformed=malformed,
        )

    def _skew_ms(self) -> int:
        interval = max(self.interval_ms, 2)
        # Off the sampling grid by about half an interval, and by a different amount for each skew window of the
        # device, so a skewed timestamp never lands on another sample's (the center would drop it as a duplicate).
        off_grid = interval // 2 + self._skews % max(1, interval // 2 - 1)
        self._skews += 1
        lo = max(0, math.ceil((MIN_SKEW_MS - off_grid) / interval))
        hi = max(lo, (MAX_FORWARD_SKEW_MS - off_grid) // interval)
        skew = self.rng.randint(lo, hi) * interval + off_grid
        if self.rng.random() < 0.5 and skew <= MAX_FORWARD_SKEW_MS:
            return skew
        return -(skew + interval - 2 * off_grid) if skew + interval - 2 * off_grid > 0 else -skew

    def _start_value_faults(self, ts_ms: int, readings: dict[str, float]) -> None:
        if not self.analog:
            return
        metrics = list(self.analog)
        for kind in VALUE_FAULTS:
            if not self._starts(kind, ts_ms):
                continue
            metric = metrics[self.rng.randrange(len(metrics))]
            stats = self.stats[metric]
            if metric in self.values or metric not in readings or not stats.moving:
                continue  # one fault per metric at a time, and only on a signal that moves
            span, _ = self.analog[metric]
            scale = stats.scale(span)
            sign = 1.0 if self.rng.random() < 0.5 else -1.0
            length = 1 if kind == "spike" else self._length(kind)
            window = self._open(kind, metric, ts_ms, length)
            if kind == "spike":
                window.value = sign * self.rng.uniform(6.0, 10.0) * scale
            elif kind == "level_shift":
                window.value = sign * self.rng.uniform(3.0, 6.0) * scale
                window.params["offset"] = window.value
            elif kind == "drift":
                total = sign * self.rng.uniform(4.0, 8.0) * scale
                window.value = total / max(1, length * self.interval_ms / 1000)
                window.params["slope_per_s"] = window.value
            elif kind == "stuck":
                window.value = readings[metric]
                window.params["value"] = window.value
            else:  # noise
                window.value = self.rng.uniform(3.0, 5.0) * scale
                window.params["sigma"] = window.value
            self.values[metric] = window

    def _start_joint_faults(self, ts_ms: int, readings: dict[str, float]) -> None:
        """A metric leaves the relation to its partner while staying inside its own usual range.

        - `correlation_break`: it stops following its partner: scaled by a factor for the window (flow drops
          while the pressure holds);
        - `slow_leak`: it loses a growing share of its value over the window (a leaking tank, a fouling pump);
        - `neighbour_drift`: it drifts away from its partner by a growing offset (one of two redundant sensors
          ageing).
        Sizes are multiples of how far the metric usually strays from its fit on the partner.
        """
        if not self.related:
            return
        for kind in JOINT_FAULTS:
            if not self._starts(kind, ts_ms):
                continue
            y, x = self.related[self.rng.randrange(len(self.related))]
            stats = self.stats[y]
            relation = self.relations[(y, x)]
            if y in self.values or y not in readings or not stats.moving or relation.n < MIN_SAMPLES_SEEN:
                continue
            span, _ = self.analog[y]
            # How far the metric strays from its partner's fit, with a floor: sensor resolution and range.
            stray = max(relation.residual_std(), 0.002 * span, 1e-3)
            level = abs(readings[y])
            sign = 1.0 if self.rng.random() < 0.5 else -1.0
            length = self._length(kind)
            if kind in ("correlation_break", "slow_leak"):
                if level < 4.0 * stray:
                    continue  # a metric near zero has nothing to lose
                share = min(self.rng.uniform(6.0, 10.0) * stray / level, 0.6)
                window = self._open(kind, y, ts_ms, length)
                if kind == "correlation_break":
                    window.value = 1.0 + sign * share
                    window.params["factor"] = window.value
                else:
                    window.value = share
                    window.params["final_loss"] = share
            else:
                total = sign * self.rng.uniform(6.0, 10.0) * stray
                window = self._open(kind, y, ts_ms, length)
                window.value = total / max(1, length * self.interval_ms / 1000)
                window.params["slope_per_s"] = window.value
            window.params["partner"] = x
            self.values[y] = window

    def _apply_value(self, window: _Window, ts_ms: int, readings: dict[str, float]) -> None:
        metric = window.metric
        _, decimals = self.analog[metric]
        x = readings[metric]
        kind = window.kind
        if kind == "spike":
            x = round(x + window.value, decimals)
            window.params.update({"value": x, "original": readings[metric]})
        elif kind == "level_shift":
            x += window.value
        elif kind in ("drift", "neighbour_drift"):
            # One interval's worth already at the first sample (the label's start), the whole offset at the last.
            x += window.value * (ts_ms - window.start_ms + self.interval_ms) / 1000
        elif kind == "stuck":
            x = window.value
        elif kind == "correlation_break":
            x *= window.value
        elif kind == "slow_leak":
            x *= 1.0 - window.value * (window.affected + 1) / window.length
        else:
            x += self.rng.gauss(0.0, window.value)
        readings[metric] = round(x, decimals)
        self._touch(window, ts_ms)

    def _open(self, kind: FaultKind, metric: str, ts_ms: int, length: int) -> _Window:
        window = _Window(kind=kind, metric=metric, left=length, start_ms=ts_ms, last_ms=ts_ms, length=length)
        if metric == "*":
            self.windows[kind] = window
        self._count(kind)
        return window

    def _touch(self, window: _Window, ts_ms: int) -> None:
        window.last_ms = ts_ms
        window.affected += 1
        window.left -= 1
        if window.affected == 1:  # its first sample: every parameter is known, the end is planned
            end_ms = window.start_ms + (window.length - 1) * self.interval_ms
            params = {"samples": window.length, **window.params}
            self.opened.append(FaultLabel(self.device_id, window.metric, window.kind, window.start_ms, end_ms, params))
        if window.left <= 0:
            self._close(window)

    def _close(self, window: _Window) -> None:
        if window.metric == "*":
            self.windows.pop(window.kind, None)
        else:
            self.values.pop(window.metric, None)
        params = {"samples": window.affected, **window.params}
        self.labels.append(
            FaultLabel(self.device_id, window.metric, window.kind, window.start_ms, window.last_ms, params)
        )

    def label_message(self, kind: FaultKind, start_ms: int, end_ms: int, params: dict[str, object]) -> None:
        """Label a fault of single messages (malformed, duplicate, out of order) once its seq is known."""
        self._count(kind)
        label = FaultLabel(self.device_id, "*", kind, start_ms, end_ms, params)
        self.labels.append(label)
        self.opened.append(label)

    def finish(self) -> None:
        """Close every open window (a run ends): their labels end at the last affected sample."""
        for window in [*self.values.values(), *self.windows.values()]:
            if window.affected:
                self._close(window)
        self.values.clear()
        self.windows.clear()

    def take_labels(self) -> list[FaultLabel]:
        labels, self.labels = self.labels, []
        return labels

    def take_opened(self) -> list[FaultLabel]:
        """Labels of the faults that started since the last call, each with its planned end: the end of a window
        that a dropout interrupts or the run cuts short differs from the final label's (`take_labels`)."""
        opened, self.opened = self.opened, []
        return opened

    def take_started(self) -> list[FaultKind]:
        started, self.started = self.started, []
        return started
