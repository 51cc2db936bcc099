"""Anomaly detectors: pure, causal, streaming; state in, scores out.

`UnivariateDetector` (plain Python floats) is the production detector for one series, with its anomalous state
in `analytics.detectors.fault_state`; `analytics.detectors.joint.JointDetector` watches a device's metrics jointly.
"""

from analytics.detectors.univariate import DetectorConfig, UnivariateDetector, squash

__all__ = ["DetectorConfig", "UnivariateDetector", "squash"]
