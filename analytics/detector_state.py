"""The production detectors (their factories and threshold) and the saved form of their state: a series' detector,
rule timers, alarm gate and reading times, and a device's joint detector, as the bytes the analytics job keeps in
`analytics_state` (a joint detector under the pseudo-metric `joint:<metrics>`)."""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, cast

from core.errors import IocError

if TYPE_CHECKING:
    from analytics.detectors.joint import JointDetector

# Bump when the saved form changes: state in another format is dropped and the series starts afresh.
STATE_FORMAT: Final = 1
JOINT_FORMAT: Final = 1
# The `analytics_state.metric` of a device's joint detector: this prefix and its metrics, comma-separated.
JOINT_KEY_PREFIX: Final = "joint:"
# What a saved state that cannot be read raises while it is read.
_UNREADABLE: Final = (pickle.UnpicklingError, AttributeError, TypeError, ValueError, KeyError, EOFError)


class Detector(Protocol):
    def update(self, t: float, x: float) -> float: ...


class SavedStateError(IocError):
    """Saved series state that cannot be read back (corrupt, or written by incompatible code)."""


def new_detector() -> Detector:
    from analytics.detectors.univariate import UnivariateDetector

    return UnivariateDetector()


def new_joint_detector(metrics: Sequence[str]) -> JointDetector:
    """The production joint detector for one device's metric set."""
    from analytics.detectors.joint import JointDetector

    return JointDetector(metrics)


def detector_threshold() -> float:
    """The production detector's alert threshold on its (0, 1) score."""
    from analytics.detectors.univariate import DetectorConfig

    return float(DetectorConfig().threshold)


def _dump_detector(detector: Detector) -> object:
    """The production detector saves its learned state as plain values; any other detector is pickled whole."""
    state_dict = getattr(detector, "state_dict", None)
    if callable(state_dict):
        return ("state_dict", state_dict())
    return ("object", detector)


def _load_detector(saved: object) -> Detector:
    if not isinstance(saved, tuple) or len(saved) != 2:
        raise TypeError("saved detector is not a (tag, payload) pair")
    tag: object = saved[0]
    payload: object = saved[1]
    if tag == "state_dict" and isinstance(payload, Mapping):
        from analytics.detectors.univariate import UnivariateDetector

        return UnivariateDetector.from_state(payload)
    if tag == "object" and callable(getattr(payload, "update", None)):
        return cast(Detector, payload)
    raise TypeError(f"unknown saved detector form {tag!r}")


@dataclass(frozen=True, slots=True)
class SeriesState:
    """What a (device, metric) series carries across a restart. `rules` and `gate` are their own `dump()`s (None:
    not saved); times are reading times in epoch seconds."""

    detector: Detector
    rules: Mapping[str, object] | None
    gate: Mapping[str, object] | None
    last_ts: float
    last_anomaly_ts: float


def dump_series_state(state: SeriesState) -> bytes:
    blob = {
        "format": STATE_FORMAT,
        "detector": _dump_detector(state.detector),
        "rules": state.rules,
        "last_ts": state.last_ts,
        "last_anomaly_ts": state.last_anomaly_ts,
        "gate": state.gate,
    }
    return pickle.dumps(blob, protocol=pickle.HIGHEST_PROTOCOL)


def load_series_state(saved: bytes) -> SeriesState | None:
    """The state `dump_series_state` wrote; None when it was saved in another format. Raises `SavedStateError`
    when `saved` cannot be read."""
    try:
        blob = pickle.loads(saved)  # noqa: S301 - written only by the analytics job into its own table
        if blob.get("format") != STATE_FORMAT:
            return None
        detector = _load_detector(blob["detector"])
    except _UNREADABLE as exc:
        raise SavedStateError(str(exc)) from exc
    rules = blob.get("rules")
    gate = blob.get("gate")
    return SeriesState(
        detector=detector,
        rules=rules if isinstance(rules, Mapping) else None,
        gate=gate if isinstance(gate, Mapping) else None,
        last_ts=float(blob.get("last_ts", float("-inf"))),
        last_anomaly_ts=float(blob.get("last_anomaly_ts", float("-inf"))),
    )


def joint_key(metrics: Sequence[str]) -> str:
    """The pseudo-metric a joint detector over `metrics` is saved under."""
    return JOINT_KEY_PREFIX + ",".join(metrics)


def dump_joint_state(joint: object) -> bytes:
    """A joint detector's learned state (its `state_dict()`), as saved bytes."""
    state_dict = getattr(joint, "state_dict", None)
    payload = state_dict() if callable(state_dict) else None
    return pickle.dumps({"format": JOINT_FORMAT, "state": payload}, protocol=pickle.HIGHEST_PROTOCOL)


def load_joint_state(saved: bytes) -> JointDetector | None:
    """The joint detector `dump_joint_state` saved; None when it was saved in another format or by another kind of
    joint detector. Raises `SavedStateError` when `saved` cannot be read."""
    from analytics.detectors.joint import JointDetector

    try:
        blob = pickle.loads(saved)  # noqa: S301 - written only by the analytics job into its own table
        if not isinstance(blob, dict) or blob.get("format") != JOINT_FORMAT or blob.get("state") is None:
            return None
        return JointDetector.from_state(blob["state"])
    except _UNREADABLE as exc:
        raise SavedStateError(str(exc)) from exc
