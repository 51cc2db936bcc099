"""The production detector (its factory and threshold) and the saved form of a series' state: detector, rule
timers, alarm gate and reading times, as the bytes the analytics job keeps in `analytics_state`."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Protocol, cast

from core.errors import IocError

# Bump when the saved form changes: state in another format is dropped and the series starts afresh.
STATE_FORMAT: Final = 1
# What a saved state that cannot be read raises while it is read.
_UNREADABLE: Final = (pickle.UnpicklingError, AttributeError, TypeError, ValueError, KeyError, EOFError)


class Detector(Protocol):
    def update(self, t: float, x: float) -> float: ...


class SavedStateError(IocError):
    """Saved series state that cannot be read back (corrupt, or written by incompatible code)."""


def new_detector() -> Detector:
    from analytics.detectors.univariate import UnivariateDetector

    return UnivariateDetector()


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
