"""Anomaly detectors: pure, causal, streaming; state in, scores out.

`UnivariateDetector` (plain Python floats, no imports beyond the standard library) is the production
detector for one series; `analytics.detectors.multivariate.DeviceDetector` scores a device's metrics jointly.
"""

from analytics.detectors.univariate import DetectorConfig, UnivariateDetector, squash

__all__ = ["DetectorConfig", "UnivariateDetector", "squash"]
