"""Drift engine: sliding-window feature drift vs a fixed reference, off the request path.

See :mod:`modelobs.drift.monitor` (window, thread, metrics) and :mod:`modelobs.drift.stats`
(the statistics, each checked against scipy in tests/test_drift_stats.py).
"""

from .monitor import (
    UNSEEN,
    DriftMonitor,
    DriftReport,
    DriftSettings,
    FeatureDrift,
    FeatureSpec,
    WindowInfo,
)

__all__ = [
    "UNSEEN",
    "DriftMonitor",
    "DriftReport",
    "DriftSettings",
    "FeatureDrift",
    "FeatureSpec",
    "WindowInfo",
]
