"""The device types' alarm rules (catalog `RuleSpec`s) given behaviour: pure streaming evaluation per series.

State lives per (device, metric) and per device (silence); readings go in with their reading time, events come
out: `hit` when a condition has held for the rule's duration, `ongoing` for each further reading while it
holds, `clear` when it ends. No database and no wall clock here: the silent check takes the job's clock.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from devices.catalog import Catalog, DeviceType, RuleSpec

EventState = Literal["hit", "ongoing", "clear"]

# Serialised rule state: plain JSON-able values, so a saved state survives a code change of the classes.
Dumped = list[object]


@dataclass(frozen=True, slots=True)
class RuleEvent:
    """One change (or continuation) of a rule's condition on one series or device."""

    device_id: str
    metric: str | None
    rule: RuleSpec
    cause: str
    state: EventState
    # Reading time (epoch seconds) of the reading that produced the event; for `silent`, the job's clock.
    ts: float
    value: float | None
    # Reading time at which the condition began: with `ts`, the range of readings that raised the alarm.
    since: float


def rule_cause(rule: RuleSpec) -> str:
    """The rule's name within its device and metric: one open alarm per cause. Two thresholds of one kind on
    one metric (wind above 17.2 and above 32.7 m/s) are different causes."""
    return rule.kind if rule.value is None else f"{rule.kind}@{rule.value:g}"


class _RuleState(Protocol):
    rule: RuleSpec
    cause: str

    def step(self, ts: float, x: float) -> tuple[EventState, float] | None: ...

    def dump(self) -> Dumped: ...

    def load(self, data: Dumped) -> None: ...

    def load_active(self, since: float) -> None: ...


class _Level:
    """threshold_above / threshold_below / low_battery: beyond `value` for at least `duration_s`."""

    __slots__ = ("above", "active", "cause", "duration_s", "level", "rule", "since")

    def __init__(self, rule: RuleSpec) -> None:
        assert rule.value is not None
        self.rule = rule
        self.cause = rule_cause(rule)
        self.above = rule.kind == "threshold_above"
        self.level = rule.value
        self.duration_s = rule.duration_s
        self.since: float | None = None
        self.active = False

    def step(self, ts: float, x: float) -> tuple[EventState, float] | None:
        violating = x > self.level if self.above else x < self.level
        if violating:
            if self.since is None:
                self.since = ts
            if self.active:
                return "ongoing", self.since
            if ts - self.since >= self.duration_s:
                self.active = True
                return "hit", self.since
            return None
        since = self.since
        self.since = None
        if self.active:
            self.active = False
            return "clear", ts if since is None else since
        return None

    def dump(self) -> Dumped:
        return [self.since, self.active]

    def load(self, data: Dumped) -> None:
        since, active = data
        self.since = None if since is None else float(since)  # type: ignore[arg-type]
        self.active = bool(active)

    def load_active(self, since: float) -> None:
        self.active = True
        if self.since is None:
            self.since = since


class _RateOfChange:
    """rate_of_change: the metric moved by more than `value` within the last `duration_s`.

    Monotonic deques keep the window's minimum and maximum in amortised O(1) per reading.
    """

    __slots__ = ("active", "cause", "maxq", "minq", "rule", "since", "value", "window_s")

    def __init__(self, rule: RuleSpec) -> None:
        assert rule.value is not None
        self.rule = rule
        self.cause = rule_cause(rule)
        self.value = rule.value
        self.window_s = rule.duration_s
        self.minq: deque[tuple[float, float]] = deque()
        self.maxq: deque[tuple[float, float]] = deque()
        self.active = False
        self.since = 0.0

    def step(self, ts: float, x: float) -> tuple[EventState, float] | None:
        minq, maxq = self.minq, self.maxq
        horizon = ts - self.window_s
        while minq and minq[0][0] < horizon:
            minq.popleft()
        while maxq and maxq[0][0] < horizon:
            maxq.popleft()
        rise = x - minq[0][1] if minq else 0.0
        fall = maxq[0][1] - x if maxq else 0.0
        while minq and minq[-1][1] >= x:
            minq.pop()
        minq.append((ts, x))
        while maxq and maxq[-1][1] <= x:
            maxq.pop()
        maxq.append((ts, x))
        if rise > self.value or fall > self.value:
            if self.active:
                return "ongoing", self.since
            self.active = True
            self.since = (minq[0] if rise >= fall else maxq[0])[0]
            return "hit", self.since
        if self.active:
            self.active = False
            return "clear", self.since
        return None

    def dump(self) -> Dumped:
        return [[list(p) for p in self.minq], [list(p) for p in self.maxq], self.active, self.since]

    def load(self, data: Dumped) -> None:
        minq, maxq, active, since = data
        self.minq = deque((float(t), float(v)) for t, v in minq)  # type: ignore[attr-defined]
        self.maxq = deque((float(t), float(v)) for t, v in maxq)  # type: ignore[attr-defined]
        self.active = bool(active)
        self.since = float(since)  # type: ignore[arg-type]

    def load_active(self, since: float) -> None:
        self.active = True
        self.since = since


class _Stuck:
    """stuck: the metric stayed within `value` (default: exactly equal) for at least `duration_s`."""

    __slots__ = ("active", "cause", "duration_s", "rule", "run_max", "run_min", "run_start", "tolerance")

    def __init__(self, rule: RuleSpec) -> None:
        self.rule = rule
        self.cause = rule_cause(rule)
        self.tolerance = rule.value or 0.0
        self.duration_s = rule.duration_s
        self.run_start: float | None = None
        self.run_min = 0.0
        self.run_max = 0.0
        self.active = False

    def step(self, ts: float, x: float) -> tuple[EventState, float] | None:
        if self.run_start is None:
            self.run_start, self.run_min, self.run_max = ts, x, x
            return None
        low = min(self.run_min, x)
        high = max(self.run_max, x)
        if high - low > self.tolerance:
            since = self.run_start
            self.run_start, self.run_min, self.run_max = ts, x, x
            if self.active:
                self.active = False
                return "clear", since
            return None
        self.run_min, self.run_max = low, high
        if self.active:
            return "ongoing", self.run_start
        if ts - self.run_start >= self.duration_s:
            self.active = True
            return "hit", self.run_start
        return None

    def dump(self) -> Dumped:
        return [self.run_start, self.run_min, self.run_max, self.active]

    def load(self, data: Dumped) -> None:
        start, low, high, active = data
        self.run_start = None if start is None else float(start)  # type: ignore[arg-type]
        self.run_min, self.run_max = float(low), float(high)  # type: ignore[arg-type]
        self.active = bool(active)

    def load_active(self, since: float) -> None:
        self.active = True


def _rule_state(rule: RuleSpec) -> _RuleState:
    if rule.kind in ("threshold_above", "threshold_below", "low_battery"):
        return _Level(rule)
    if rule.kind == "rate_of_change":
        return _RateOfChange(rule)
    if rule.kind == "stuck":
        return _Stuck(rule)
    raise ValueError(f"rule kind {rule.kind!r} does not watch a metric")


_NO_EVENTS: Final[tuple[RuleEvent, ...]] = ()


class SeriesRules:
    """The metric rules of one (device, metric) series, stepped reading by reading in reading-time order."""

    __slots__ = ("device_id", "last_ts", "metric", "states")

    def __init__(self, device_id: str, metric: str, rules: Iterable[RuleSpec]) -> None:
        self.device_id = device_id
        self.metric = metric
        self.states: tuple[_RuleState, ...] = tuple(_rule_state(r) for r in rules if r.metric == metric)
        self.last_ts = float("-inf")

    def step(self, ts: float, x: float) -> tuple[RuleEvent, ...]:
        """Events caused by one reading. A reading not newer than the last one is late: the series' state has
        moved past it, so it is ignored (the caller counts it)."""
        if ts <= self.last_ts:
            return _NO_EVENTS
        self.last_ts = ts
        events: list[RuleEvent] | None = None
        for state in self.states:
            outcome = state.step(ts, x)
            if outcome is not None:
                if events is None:
                    events = []
                kind, since = outcome
                events.append(
                    RuleEvent(
                        device_id=self.device_id,
                        metric=self.metric,
                        rule=state.rule,
                        cause=state.cause,
                        state=kind,
                        ts=ts,
                        value=x,
                        since=since,
                    )
                )
        return _NO_EVENTS if events is None else tuple(events)

    def dump(self) -> dict[str, object]:
        return {"last_ts": self.last_ts, "rules": {s.cause: s.dump() for s in self.states}}

    def load(self, data: Mapping[str, object]) -> None:
        """Restore what still matches the current rules (a rule changed in the catalog starts afresh)."""
        last_ts = data.get("last_ts")
        if isinstance(last_ts, int | float):
            self.last_ts = float(last_ts)
        saved = data.get("rules")
        if not isinstance(saved, Mapping):
            return
        for state in self.states:
            dumped = saved.get(state.cause)
            if isinstance(dumped, list):
                try:
                    state.load(dumped)
                except (TypeError, ValueError):
                    continue


class DeviceSilence:
    """silent: no reading from the device for `after_s`, judged against the job's clock.

    `after_s` is the rule's `duration_s`, or sooner: `overdue_reports` report intervals of the device, so a device
    that reports every 15 minutes is silent after two missed reports rather than after its rule's hour. The
    alarm is raised while the device is silent and cleared by its next reading.
    """

    __slots__ = ("active", "after_s", "cause", "device_id", "last_seen", "rule")

    def __init__(self, device_id: str, rule: RuleSpec, *, after_s: float | None = None) -> None:
        self.device_id = device_id
        self.rule = rule
        self.cause = rule_cause(rule)
        self.after_s = rule.duration_s if after_s is None else min(after_s, rule.duration_s)
        self.last_seen: float | None = None
        self.active = False

    def seen(self, ts: float) -> RuleEvent | None:
        """A reading with reading time `ts` arrived: the silence (if any) is over."""
        if self.last_seen is None or ts > self.last_seen:
            self.last_seen = ts
        if self.active:
            self.active = False
            return RuleEvent(
                device_id=self.device_id,
                metric=None,
                rule=self.rule,
                cause=self.cause,
                state="clear",
                ts=ts,
                value=None,
                since=ts,
            )
        return None

    def check(self, now: float) -> RuleEvent | None:
        if self.active or self.last_seen is None or now - self.last_seen <= self.after_s:
            return None
        self.active = True
        return RuleEvent(
            device_id=self.device_id,
            metric=None,
            rule=self.rule,
            cause=self.cause,
            state="hit",
            ts=now,
            value=None,
            since=self.last_seen,
        )


class RuleEngine:
    """All rule state of a fleet: series rules created on first sight from the device's type."""

    __slots__ = ("_catalog", "_series", "_silence", "overdue_reports")

    def __init__(self, catalog: Catalog, *, overdue_reports: float | None = None) -> None:
        """`overdue_reports`: a device is silent after this many of its report intervals without a reading, when
        that comes before its silent rule's duration (None: the rule's duration only)."""
        self._catalog = catalog
        self._series: dict[tuple[str, str], SeriesRules] = {}
        self._silence: dict[str, DeviceSilence] = {}
        self.overdue_reports = overdue_reports

    def device_type(self, type_code: str) -> DeviceType | None:
        return self._catalog.get(type_code)

    def series(self, device_id: str, type_code: str, metric: str) -> SeriesRules:
        key = (device_id, metric)
        found = self._series.get(key)
        if found is None:
            dtype = self._catalog.get(type_code)
            found = SeriesRules(device_id, metric, dtype.rules if dtype is not None else ())
            self._series[key] = found
        return found

    def silence(
        self, device_id: str, type_code: str, *, report_interval_s: float | None = None
    ) -> DeviceSilence | None:
        """The device's silence watch (None when its type has no silent rule); `report_interval_s`: the device's
        own interval when it was set apart from its type's."""
        found = self._silence.get(device_id)
        if found is None:
            dtype = self._catalog.get(type_code)
            rule = next((r for r in dtype.rules if r.kind == "silent"), None) if dtype is not None else None
            if rule is None or dtype is None:
                return None
            after_s = None
            if self.overdue_reports is not None:
                after_s = self.overdue_reports * (report_interval_s or dtype.report_interval_s)
            found = self._silence[device_id] = DeviceSilence(device_id, rule, after_s=after_s)
        return found

    def observe(self, *, device_id: str, type_code: str, metric: str, ts: float, value: float) -> list[RuleEvent]:
        """One reading through the device's rules (metric rules and the silence watch)."""
        events = list(self.series(device_id, type_code, metric).step(ts, value))
        silence = self.silence(device_id, type_code)
        if silence is not None:
            cleared = silence.seen(ts)
            if cleared is not None:
                events.append(cleared)
        return events

    def check_silent(self, now: float) -> list[RuleEvent]:
        """Silent-device hits at the job's clock `now` (epoch seconds)."""
        events = []
        for silence in self._silence.values():
            event = silence.check(now)
            if event is not None:
                events.append(event)
        return events

    def silences(self) -> Iterable[DeviceSilence]:
        return self._silence.values()
