"""One device's firmware without the network: sampling on its clock grid, sequence numbers, fault injection,
the messages it wants to send. Pure and deterministic for a seed and a start time; the fleet does the I/O.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from firmware_sim.faults import NO_FAULTS, FaultInjector, FaultKind, FaultLabel, FaultSpec, ms_to_datetime
from firmware_sim.models import DeviceModel, model_for
from protocol.telemetry import encode_json, format_timestamp

MIN_INTERVAL_MS: Final = 2


@dataclass(frozen=True, slots=True)
class SimDevice:
    """A simulated device: who it is, what type of firmware it runs, where it publishes, its broker password."""

    device_id: str
    type_code: str
    province: str
    sector: str
    password: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """A telemetry message: readings at `ts_ms` (as sent, a skewed clock included), or a raw malformed payload."""

    seq: int
    ts_ms: int
    readings: Mapping[str, float]
    raw: bytes | None = None

    def payload(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return encode_json(self.readings, seq=self.seq, ts=ms_to_datetime(self.ts_ms))


@dataclass(frozen=True, slots=True)
class Sample:
    """What one sampling instant produced: messages to send in order, whether the device is cut off the network,
    the accounting deltas, fault labels completed (exact) and opened (as the faults start, with planned ends)."""

    messages: tuple[Message, ...]
    offline: bool = False
    generated: int = 0  # new messages (a duplicate is not new)
    readings: int = 0  # readings in new well-formed messages
    malformed: int = 0
    labels: tuple[FaultLabel, ...] = ()
    started: tuple[FaultKind, ...] = ()
    opened: tuple[FaultLabel, ...] = ()


class Firmware(Protocol):
    """What the fleet drives: a device that knows when its next sample is due and produces it."""

    device: SimDevice
    next_ms: int

    def step(self) -> Sample: ...

    def finish(self) -> Sample: ...

    def set_interval(self, interval_ms: int) -> None: ...


def _malformed_payload(reason: str, seq: int, ts_ms: int, readings: Mapping[str, float]) -> bytes:
    """A broken payload that the center must quarantine with `reason`."""
    ts = format_timestamp(ms_to_datetime(ts_ms))
    metric, value = next(iter(readings.items()))
    good = encode_json(readings, seq=seq, ts=ms_to_datetime(ts_ms))
    if reason == "invalid_json":
        return good[: max(1, len(good) // 2)]
    if reason == "invalid_utf8":
        return b"\xff\xfe" + good
    if reason == "non_finite_value":
        return f'{{"seq":{seq},"ts":"{ts}","readings":{{"{metric}":NaN}}}}'.encode()
    doc: dict[str, object] = {"seq": seq, "ts": ts, "readings": dict(readings)}
    if reason == "wrong_type":
        doc["readings"] = {**readings, metric: str(value)}
    elif reason == "missing_field":
        del doc["ts"]
    elif reason == "bad_timestamp":
        doc["ts"] = ts[:5] + "13-45T25:61:00Z"
    elif reason == "bad_metric_name":
        doc["readings"] = {**readings, "Bad Metric!": value}
    else:
        raise ValueError(f"no malformed payload for {reason!r}")
    return json.dumps(doc, separators=(",", ":")).encode()


def device_rng(seed: int, device_id: str, stream: str) -> random.Random:
    """An independent, reproducible random stream per device and purpose (str seeds hash with SHA-512)."""
    return random.Random(f"{seed}:{device_id}:{stream}")


@dataclass
class FirmwareDevice:
    """A device type's firmware: samples its model every `interval_ms` from a phase in [start_ms, start_ms +
    interval_ms), numbers its messages, lets faults alter them, and labels every fault."""

    device: SimDevice
    seed: int
    start_ms: int
    interval_ms: int | None = None
    faults: FaultSpec = NO_FAULTS
    model: DeviceModel = field(init=False)
    next_ms: int = field(init=False)
    seq: int = field(init=False, default=0)
    _held: Message | None = field(init=False, default=None)
    _held_true_ms: int = field(init=False, default=0)
    _physics: random.Random = field(init=False)
    _injector: FaultInjector = field(init=False)

    def __post_init__(self) -> None:
        model_type = model_for(self.device.type_code)
        self._physics = device_rng(self.seed, self.device.device_id, "physics")
        self.model = model_type(self._physics)
        if self.interval_ms is None:
            self.interval_ms = round(model_type.report_interval_s * 1000)
        self.interval_ms = max(MIN_INTERVAL_MS, self.interval_ms)
        self.next_ms = self.start_ms + device_rng(self.seed, self.device.device_id, "phase").randrange(self.interval_ms)
        analog = {m.name: (m.high - m.low, m.decimals) for m in model_type.metrics if m.kind == "analog"}
        self._injector = FaultInjector(
            device_id=self.device.device_id,
            spec=self.faults,
            rng=device_rng(self.seed, self.device.device_id, "faults"),
            analog=analog,
            interval_ms=self.interval_ms,
            type_code=self.device.type_code,
            related=model_type.related,
        )

    def set_interval(self, interval_ms: int) -> None:
        """A `set_interval` command: the next sample keeps its time, the ones after follow the new interval."""
        self.interval_ms = max(MIN_INTERVAL_MS, interval_ms)

    def step(self) -> Sample:
        ts_ms = self.next_ms
        self.next_ms += self.interval_ms or MIN_INTERVAL_MS
        clean = self.model.sample(ts_ms / 1000, self._physics)
        effect = self._injector.apply(ts_ms, clean)
        if effect.readings is None:  # dropout: sampled but never sent
            return self._sample((), offline=effect.offline)
        self.seq += 1
        seq = self.seq
        readings = effect.readings
        if effect.malformed is not None:
            raw = _malformed_payload(effect.malformed, seq, effect.sent_ms, readings)
            self._injector.label_message("malformed", ts_ms, ts_ms, {"reason": effect.malformed, "seq": seq})
            message = Message(seq, effect.sent_ms, {}, raw)
            return self._sample(self._release((message,), ts_ms), offline=effect.offline, generated=1, malformed=1)
        message = Message(seq, effect.sent_ms, readings)
        messages: tuple[Message, ...] = (message,)
        if effect.duplicate:
            self._injector.label_message("duplicate", ts_ms, ts_ms, {"seq": seq})
            messages = (message, message)
        if effect.hold and self._held is None:
            self._held = message
            self._held_true_ms = ts_ms
            messages = messages[1:]
        else:
            messages = self._release(messages, ts_ms)
        return self._sample(messages, offline=effect.offline, generated=1, readings=len(readings))

    def _release(self, messages: tuple[Message, ...], ts_ms: int) -> tuple[Message, ...]:
        """Send a held (out-of-order) message right after the messages of this sample (taken at `ts_ms`)."""
        held, self._held = self._held, None
        if held is None:
            return messages
        self._injector.label_message(
            "out_of_order", self._held_true_ms, ts_ms, {"seq": held.seq, "sent_after_seq": messages[0].seq}
        )
        return (*messages, held)

    def finish(self) -> Sample:
        """The run ends: send a held message, close the fault windows."""
        held, self._held = self._held, None
        if held is not None:
            self._injector.label_message(
                "out_of_order", self._held_true_ms, self._held_true_ms, {"seq": held.seq, "sent_after_seq": None}
            )
        self._injector.finish()
        return self._sample((held,) if held is not None else ())

    def _sample(
        self,
        messages: Sequence[Message],
        *,
        offline: bool = False,
        generated: int = 0,
        readings: int = 0,
        malformed: int = 0,
    ) -> Sample:
        return Sample(
            messages=tuple(messages),
            offline=offline,
            generated=generated,
            readings=readings,
            malformed=malformed,
            labels=tuple(self._injector.take_labels()),
            started=tuple(self._injector.take_started()),
            opened=tuple(self._injector.take_opened()),
        )


@dataclass
class ReplayDevice:
    """Replays a recorded series (e.g. a NAB CSV) as one metric of a device: point i is sent at
    start_ms + (t_i - t_0) / speed, keeping the series' own spacing, compressed by `speed`."""

    device: SimDevice
    metric: str
    points: Sequence[tuple[float, float]]  # (epoch seconds in the recording, value)
    start_ms: int
    speed: float = 1.0
    next_ms: int = field(init=False)
    seq: int = field(init=False, default=0)
    _index: int = field(init=False, default=0)
    _last_ms: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if not self.points:
            raise ValueError("nothing to replay")
        if self.speed <= 0:
            raise ValueError("speed must be positive")
        self.next_ms = self._time_of(0)

    def _time_of(self, index: int) -> int:
        # Strictly increasing even when a high speed squeezes two points into one millisecond.
        at = self.start_ms + round((self.points[index][0] - self.points[0][0]) * 1000 / self.speed)
        return max(at, self.start_ms + index) if index == 0 else max(at, self._last_ms + 1)

    @property
    def done(self) -> bool:
        return self._index >= len(self.points)

    def set_interval(self, interval_ms: int) -> None:
        """A recording keeps its own timing."""

    def step(self) -> Sample:
        if self.done:
            self.next_ms = 2**62  # never due again
            return Sample(())
        ts_ms = self._last_ms = self.next_ms
        value = self.points[self._index][1]
        self._index += 1
        self.next_ms = self._time_of(self._index) if not self.done else 2**62
        self.seq += 1
        return Sample((Message(self.seq, ts_ms, {self.metric: value}),), generated=1, readings=1)

    def finish(self) -> Sample:
        return Sample(())
